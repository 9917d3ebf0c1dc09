"""addrtype (revision 1): libxt_addrtype.t, the kernel's hook rules for
--limit-iface-in/out and iptables-legacy 1.8.9's texts and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from checks import kernel_refused, listed, refused, rule_text, run_t, t_cases

from pyfw.errors import KernelError
from pyfw.ruleset.argparse import parse_command


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_addrtype.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--src-type LOCAL,unicast ! --dst-type b,m --limit-iface-in",
     "--src-type UNICAST,LOCAL ! --dst-type BROADCAST,MULTICAST --limit-iface-in",
     " ADDRTYPE match src-type UNICAST,LOCAL dst-type !BROADCAST,MULTICAST limit-in"),
    ("! --src-type UNSPEC", "! --src-type UNSPEC", " ADDRTYPE match src-type !UNSPEC"),
    ("--src-type THROW,NAT,XRESOLVE,BLACKHOLE,UNREACHABLE,PROHIBIT,ANYCAST",
     "--src-type ANYCAST,BLACKHOLE,UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE",
     " ADDRTYPE match src-type ANYCAST,BLACKHOLE,UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m addrtype " + args) == "-m addrtype " + save
    assert listed("-m addrtype " + args, False) == text


@pytest.mark.parametrize("chain,option", [
    ("FORWARD", "--limit-iface-out"), ("FORWARD", "--limit-iface-in"),
    ("OUTPUT", "--limit-iface-out"), ("INPUT", "--limit-iface-in"),
])
def test_limit_allowed(chain: str, option: str) -> None:
    text = rule_text("-m addrtype --src-type LOCAL " + option, "filter", chain)
    assert text == "-m addrtype --src-type LOCAL " + option
    listed_text = listed("-m addrtype --src-type LOCAL " + option, chain=chain)
    assert listed_text == " ADDRTYPE match src-type LOCAL " + option[2:].replace("iface-", "")


@pytest.mark.parametrize("table,chain,option", [
    ("filter", "OUTPUT", "--limit-iface-in"), ("filter", "INPUT", "--limit-iface-out"),
    ("nat", "POSTROUTING", "--limit-iface-in"), ("nat", "PREROUTING", "--limit-iface-out"),
])
def test_limit_kernel_refused(table: str, chain: str, option: str) -> None:
    kernel_refused("-m addrtype --src-type LOCAL " + option, table, chain)


def test_limit_in_user_chain() -> None:
    """The hooks a user chain is reached from decide (-j foo from INPUT is refused)."""
    from pyfw.ext.base import CheckContext
    from pyfw.ext.match_addrtype import EXTENSIONS

    p = parse_command(["iptables", "-A", "foo", "-m", "addrtype", "--src-type", "LOCAL", "--limit-iface-out"])
    ext, data = p.matches[0].ext, p.matches[0].data
    ext.check(data, CheckContext("filter", "foo", frozenset(), p.base.ip))
    ext.check(data, CheckContext("filter", "foo", frozenset({"OUTPUT"}), p.base.ip))
    with pytest.raises(KernelError):
        ext.check(data, CheckContext("filter", "foo", frozenset({"OUTPUT", "INPUT"}), p.base.ip))
    assert ext is EXTENSIONS[0]


@pytest.mark.parametrize("args,message", [
    ("", "addrtype: you must specify --src-type or --dst-type"),
    ("--limit-iface-in", "addrtype: you must specify --src-type or --dst-type"),
    ("--src-type LOCAL,foo,bar", "addrtype: bad type `foo,bar'"),
    ("--src-type LOCAL,", 'addrtype: bad type ""'),
    ("--dst-type foo", 'addrtype: bad type "foo"'),
    ("--limit-iface-in --limit-iface-out --src-type LOCAL",
     'addrtype: option "--limit-iface-in" cannot be used together with "--limit-iface-out".\n'),
    ("! --limit-iface-in --src-type LOCAL", 'addrtype: option "--limit-iface-in" cannot be inverted.\n'),
    ("--src-type LOCAL --src-type LOCAL", 'addrtype: option "--src-type" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m addrtype " + args) == message


def test_end_to_end_user_chain(tmp_path: Path) -> None:
    """A --limit-iface-out rule in a user chain may not be reached from INPUT."""
    from pyfw.cli.main import run

    path = str(tmp_path / "rules")
    for args in (["-N", "foo"], ["-A", "foo", "-m", "addrtype", "--src-type", "LOCAL", "--limit-iface-out"],
                 ["-A", "OUTPUT", "-j", "foo"]):
        assert run(["pyfw", "--file", path, *args]).rc == 0
    r = run(["pyfw", "--file", path, "-A", "INPUT", "-j", "foo"])
    assert (r.rc, r.err) == (1, "pyfw: Invalid argument. Run `dmesg' for more information.\n")
    assert "-A foo -m addrtype --src-type LOCAL --limit-iface-out\n" in run(["pyfw", "--file", path, "-S"]).out
