"""pyfw lint on small rulesets: what it finds and what it leaves alone."""

from __future__ import annotations

from pyfw.lint import lint
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

HEAD = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"


def kinds(body: str) -> list[tuple[str, str, int | None]]:
    rs = restore(Ruleset(), HEAD + body + "COMMIT\n", RestoreOptions()).ruleset
    return [(f.kind, f.chain, f.rule) for f in lint(rs)]


def test_union_of_earlier_rules_shadows() -> None:
    body = ("-A INPUT -p tcp -m tcp --dport 1:1000 -j ACCEPT\n"
            "-A INPUT -p tcp -m tcp --dport 1001:65535 -j DROP\n"
            "-A INPUT -p tcp -m tcp --dport 22 -j DROP\n"
            "-A INPUT -p tcp -m tcp --dport 0 -j DROP\n")
    assert kinds(body) == [("shadowed", "INPUT", 3)]


def test_fragments_are_not_covered_by_port_rules() -> None:
    body = "-A INPUT -p tcp -m tcp --dport 0:65535 -j ACCEPT\n-A INPUT -p tcp -j DROP\n"
    assert kinds(body) == []


def test_inverted_and_interfaces() -> None:
    body = ("-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT -s 10.0.0.0/8 -j ACCEPT\n-A INPUT -j DROP\n"
            "-A FORWARD -i eth+ -j ACCEPT\n-A FORWARD -i eth1 -p udp -j DROP\n-A FORWARD -i wlan0 -j DROP\n")
    # rule 1 is also redundant: the final DROP would drop those packets too
    assert kinds(body) == [("redundant", "INPUT", 1), ("shadowed", "INPUT", 3), ("shadowed", "FORWARD", 2)]


def test_unknown_matches_are_not_guessed() -> None:
    body = "-A INPUT -m limit --limit 1/s -j ACCEPT\n-A INPUT -p udp -j ACCEPT\n"
    assert kinds(body) == [("unknown", "INPUT", 2)]


def test_ctstate_and_marks() -> None:
    body = ("-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
            "-A INPUT -m conntrack --ctstate NEW,INVALID,UNTRACKED -j DROP\n"
            "-A INPUT -m mark --mark 0x1 -j ACCEPT\n")
    assert kinds(body) == [("shadowed", "INPUT", 3)]


def test_redundant_unused_and_no_return() -> None:
    body = (":sink - [0:0]\n:unused - [0:0]\n"
            "-A INPUT -s 1.2.3.4 -j ACCEPT\n-A INPUT -s 1.2.3.0/24 -j ACCEPT\n"
            "-A INPUT -i eth0 -j sink\n-A INPUT -i eth0 -p icmp -j ACCEPT\n-A sink -j DROP\n")
    got = kinds(body)
    assert ("redundant", "INPUT", 1) in got
    assert ("no-return", "INPUT", 3) in got
    assert ("shadowed", "INPUT", 4) in got
    assert ("unused-chain", "unused", None) in got
    assert ("unused-chain", "sink", None) not in got


def test_between_rule_with_other_verdict_keeps_it() -> None:
    body = "-A INPUT -s 1.2.3.4 -j ACCEPT\n-A INPUT -s 1.2.3.0/24 -j DROP\n-A INPUT -s 1.2.3.0/24 -j ACCEPT\n"
    assert kinds(body) == [("shadowed", "INPUT", 3)]


def test_state_match_alias() -> None:
    body = "-A INPUT -m state --state NEW -j DROP\n-A INPUT -m conntrack --ctstate NEW -p tcp -j ACCEPT\n"
    assert kinds(body) == [("shadowed", "INPUT", 2)]
