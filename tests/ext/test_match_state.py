"""state (the conntrack alias of iptables 1.8.9): libxt_state.t and the
texts and messages of iptables-legacy 1.8.9."""

from __future__ import annotations

from pathlib import Path

import pytest
from checks import listed, refused, rule_text, run_t, t_cases

from pyfw.ruleset.argparse import parse_command


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_state.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--state NEW,RELATED", "--state NEW,RELATED", " state NEW,RELATED"),
    ("! --state INVALID", "! --state INVALID", " ! state INVALID"),
    ("--state n,e,r,i,u", "--state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED",
     " state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m state " + args) == "-m state " + save
    assert listed("-m state " + args, False) == text


@pytest.mark.parametrize("args,message", [
    ("", 'state: option "--state" must be specified\n'),
    ("--state wrong", 'Bad state "wrong"'),
    ("--state NEW,", '"--state" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED'),
    ("--state ,NEW", 'Bad state ",NEW"'),
    ("--state NEW,foo,RELATED", 'Bad state "foo,RELATED"'),
    ("--state SNAT", 'Bad state "SNAT"'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m state " + args) == message


def test_is_the_conntrack_alias() -> None:
    """The kernel gets conntrack rev 3 data: state bit plus STATE_ALIAS, so a
    -m state rule is not the same rule as its -m conntrack spelling."""
    from pyfw.ext.match_conntrack import F_STATE, F_STATE_ALIAS, ConntrackInfo

    p = parse_command(["iptables", "-A", "INPUT", "-m", "state", "--state", "NEW"])
    q = parse_command(["iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW"])
    d = p.matches[0].data
    assert isinstance(d, ConntrackInfo)
    assert d.match_flags == F_STATE | F_STATE_ALIAS and d.state_mask == 1 << 3
    assert d != q.matches[0].data


def test_end_to_end(tmp_path: Path) -> None:
    """-S prints -m state back; -D with the -m conntrack spelling finds no rule."""
    from pyfw.cli.main import run

    path = str(tmp_path / "rules")
    assert run(["pyfw", "--file", path, "-A", "INPUT", "-m", "state", "!", "--state", "NEW,est"]).rc == 0
    assert "-A INPUT -m state ! --state NEW,ESTABLISHED\n" in run(["pyfw", "--file", path, "-S"]).out
    listing = run(["pyfw", "--file", path, "-L", "INPUT", "-n"]).out
    assert listing.splitlines()[2].endswith(" ! state NEW,ESTABLISHED")
    gone = run(["pyfw", "--file", path, "-D", "INPUT", "-m", "conntrack", "!", "--ctstate", "NEW,ESTABLISHED"])
    assert gone.rc == 1
    assert run(["pyfw", "--file", path, "-D", "INPUT", "-m", "state", "!", "--state", "NEW,ESTABLISHED"]).rc == 0
