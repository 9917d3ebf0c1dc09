"""conntrack (revision 3): libxt_conntrack.t, libipt_conntrack.t and what
iptables-legacy 1.8.9 prints and refuses for the corner cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from checks import listed, refused, rule_text, run_t, t_cases

from pyfw.ruleset.argparse import parse_command


@pytest.mark.parametrize("table,chains,rule,expected,result",
                         t_cases("libxt_conntrack.t") + t_cases("libipt_conntrack.t"))
def test_t_files(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


ALL_OPTS = ("--ctstate NEW,established --ctproto tcp --ctorigsrc 1.1.1.1/24 ! --ctorigdst 2.2.2.2/255.0.255.0"
            " --ctreplsrc 0.0.0.0/0 --ctorigsrcport 4: --ctstatus NONE --ctexpire 3:10 --ctdir REPLY")


@pytest.mark.parametrize("args,save", [
    ("--ctstate n,e,r,i,u,s,d", "--ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT"),
    (ALL_OPTS,
     ("--ctstate NEW,ESTABLISHED --ctproto 6 --ctorigsrc 1.1.1.1/24 ! --ctorigdst 2.2.2.2"
      " --ctreplsrc 0.0.0.0/0 --ctorigsrcport 4:65535 --ctstatus NONE --ctexpire 3:10 --ctdir REPLY")),
    ("! --ctstatus assured,expected ! --ctexpire 5 --ctdir original ! --ctrepldstport 22",
     "! --ctrepldstport 22 ! --ctstatus EXPECTED,ASSURED ! --ctexpire 5 --ctdir ORIGINAL"),
    ("--ctproto 0", "--ctproto 0"),  # refused only from 1.8.10 on
    ("! --ctproto 0", "! --ctproto 0"),
    ("! --ctstatus NONE --ctproto 1", "--ctproto 1 ! --ctstatus NONE"),
    ("--ctexpire 4:3", "--ctexpire 4:3"),
    ("--ctexpire :", "--ctexpire 0:4294967295"),
    ("--ctexpire :5", "--ctexpire 0:5"),
    ("--ctexpire 5:5", "--ctexpire 5"),
    ("--ctorigsrcport 4:3", "--ctorigsrcport 4:3"),
    ("--ctorigsrcport 0:0", "--ctorigsrcport 0"),
    ("--ctorigsrcport 5:0", "--ctorigsrcport 5"),
    ("--ctorigsrcport 010:65536", "--ctorigsrcport 10"),
    ("--ctorigsrcport 70000", "--ctorigsrcport 4464"),
    ("--ctorigsrcport ssh:http", "--ctorigsrcport 22:80"),
    ("--ctorigsrc 1.2.3.4/33", "--ctorigsrc 1.2.3.4"),
    ("--ctorigsrc 1.2.3.4/255.255.255.0", "--ctorigsrc 1.2.3.4/24"),
    ("--ctorigsrc 1.2.3.4/0x18", "--ctorigsrc 1.2.3.4/24"),
    ("--ctorigsrc 1.2.3.4/0", "--ctorigsrc 1.2.3.4/0"),
    ("--ctorigsrc 1.2.3.4/0.0.0.0", "--ctorigsrc 1.2.3.4/0"),
    ("--ctorigsrc 10/8", "--ctorigsrc 0.0.0.10/8"),
    ("--ctorigsrc 10.1/255.255.0.0", "--ctorigsrc 10.0.0.1/16"),
    ("--ctorigsrc 0x0a000001", "--ctorigsrc 10.0.0.1"),
    ("--ctstate NEW --ctstatus CONFIRMED,SEEN_REPLY,ASSURED,EXPECTED,NONE",
     "--ctstate NEW --ctstatus EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED"),
])
def test_save(args: str, save: str) -> None:
    """What iptables-legacy 1.8.9 -S printed for these."""
    assert rule_text("-m conntrack " + args) == "-m conntrack " + save


BAD_MASK = 'conntrack: bad value for option "--{}", neither a valid network mask nor valid CIDR (0-32).\n'


@pytest.mark.parametrize("args,message", [
    ("", "conntrack: At least one option is required"),
    ("--ctstate wrong", 'Bad ctstate "wrong"'),
    ("--ctstate NEW,", 'Bad ctstate ""'),
    ("--ctstate ,NEW", 'Bad ctstate ",NEW"'),
    ("--ctstate NEW,foo,ESTABLISHED", 'Bad ctstate "foo,ESTABLISHED"'),
    ("--ctstatus NONE,foo", 'Bad ctstatus "foo"'),
    ("--ctstatus ''", 'Bad ctstatus ""'),
    ("! --ctstatus NONE --ctproto 0", "conntrack: rule would never match protocol"),
    ("! --ctproto tcp --ctproto 0", 'conntrack: option "--ctproto" can only be used once.\n'),
    ("--ctproto foo", 'unknown protocol "foo" specified'),
    ("--ctdir foo", 'conntrack: Bad value for "--ctdir" option: "foo"'),
    ("! --ctdir REPLY", 'conntrack: option "--ctdir" cannot be inverted.\n'),
    ("--ctexpire 1:2:3", 'conntrack: Too many components for option "--ctexpire" (max: 2)\n'),
    ("--ctexpire -1",
     'conntrack: bad value for option "--ctexpire" near "-1", or out of range (0-4294967295).\n'),
    ("--ctorigsrcport foo", 'Port "foo" does not resolve to anything.\n'),
    ("--ctorigsrcport 0x10", 'Port "0x10" does not resolve to anything.\n'),
    ("--ctorigsrcport -1", 'Port "-1" does not resolve to anything.\n'),
    ("--ctorigsrcport 1:2:3", 'conntrack: Too many components for option "--ctorigsrcport" (max: 2)\n'),
    ("--ctorigsrc 1.2.3.4/-1", BAD_MASK.format("ctorigsrc")),
    ("--ctorigsrc 1.2.3.4/24x", BAD_MASK.format("ctorigsrc")),
    ("--ctorigsrc 1.2.3.4/", BAD_MASK.format("ctorigsrc")),
    ("--ctrepldst 1.2.3.4/1.2.3.4/5", BAD_MASK.format("ctrepldst")),
    ("--ctorigsrc /24", "getaddrinfo: Name or service not known\n"),
    ("--ctstate NEW --ctstate INVALID", 'conntrack: option "--ctstate" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m conntrack " + args) == message


@pytest.mark.parametrize("args,numeric,text", [
    (ALL_OPTS, True,
     (" ctstate NEW,ESTABLISHED ctproto 6 ctorigsrc 1.1.1.1/24 ! ctorigdst 2.2.2.2 ctreplsrc 0.0.0.0/0"
      " ctorigsrcport 4:65535 ctstatus NONE ctexpire 3:10 ctdir REPLY")),
    ("--ctreplsrc 0.0.0.0/0 --ctrepldst 127.0.0.1/8 --ctorigdst 0.0.0.0/8", False,
     " ctorigdst anywhere ctreplsrc anywhere ctrepldst localhost/8"),
    ("! --ctstatus assured,expected ! --ctexpire 5 --ctdir original ! --ctrepldstport 22", False,
     " ! ctrepldstport 22 ! ctstatus EXPECTED,ASSURED ! ctexpire 5 ctdir ORIGINAL"),
    ("--ctrepldst 1.2.3.4/255.0.255.0", True, " ctrepldst 1.2.3.4"),
])
def test_listed(args: str, numeric: bool, text: str) -> None:
    """-L / -L -n as iptables-legacy 1.8.9 printed them (no lookups here:
    only 0.0.0.0 and 127.0.0.1 are listed without -n)."""
    assert listed("-m conntrack " + args, numeric) == text


def test_data_is_numeric() -> None:
    p = parse_command(["iptables", "-A", "INPUT", "-m", "conntrack", "--ctorigsrc", "1.2.3.4/24",
                       "--ctstate", "NEW", "--ctorigdstport", "22:80"])
    d = p.matches[0].data
    assert (d.origsrc_addr, d.origsrc_mask) == (0x01020304, 0xFFFFFF00)
    assert (d.origdst_port, d.origdst_port_high) == (22, 80)
    assert d.state_mask == 1 << 3


def test_end_to_end(tmp_path: Path) -> None:
    from pyfw.cli.main import run

    path = str(tmp_path / "rules")
    r = run(["pyfw", "--file", path, "-A", "INPUT", "-m", "conntrack", "!", "--ctstatus", "NONE",
             "--ctorigsrc", "127.0.0.1/8", "--ctorigdstport", "22:80"])
    assert r.rc == 0
    save = "-A INPUT -m conntrack --ctorigsrc 127.0.0.1/8 --ctorigdstport 22:80 ! --ctstatus NONE\n"
    assert save in run(["pyfw", "--file", path, "-S"]).out
    line = run(["pyfw", "--file", path, "-L", "INPUT"]).out.splitlines()[2]
    assert line.endswith("anywhere             ctorigsrc localhost/8 ctorigdstport 22:80 ! ctstatus NONE")
