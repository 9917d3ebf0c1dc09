"""state (the conntrack alias of iptables 1.8.9): libxt_state.t and the
texts and messages of iptables-legacy 1.8.9."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from paths import SHARED

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.commands import check_rule

T_DIR = (SHARED / "conformance/iptables-t")


def t_cases(name: str) -> list[Any]:
    """The lines of a .t file that iptables-legacy 1.8.9 passes, as params
    (table, chains, rule, expected, result)."""
    results = (T_DIR / "legacy-1.8.9-results.txt").read_text().splitlines()
    passing = {r.split()[0] for r in results if r.split()[1:2] == ["PASS"]}
    table, chains, out = "filter", [""], []
    for n, line in enumerate((T_DIR / name).read_text().splitlines(), 1):
        if not line or line[0] in "#@%":
            continue
        if line[0] == ":":
            chains = line[1:].split(",")
        elif line[0] == "*":
            table = line[1:]
        elif f"{name}:{n}" in passing:
            rule, expected, result = line.split(";")[:3]
            out.append(pytest.param(table, chains, rule, expected, result.rstrip(), id=f"{name}:{n}"))
    return out


def rule_text(args: str, table: str = "filter", chain: str = "INPUT") -> str:
    """Parse `-A CHAIN ARGS`, run the kernel checks; the save text after
    `-A CHAIN ` (matches only)."""
    p = parse_command(["iptables", "-t", table, "-A", chain, *shlex.split(args)])
    for r in p.rules():
        check_rule(table, chain, frozenset({chain}), r)
    return " ".join(f"-m {m.ext.name}{m.ext.save(m.data, p.base.ip)}" for m in p.matches)


def listed(args: str, numeric: bool = True, table: str = "filter", chain: str = "INPUT") -> str:
    """The -L text of the rule's matches."""
    p = parse_command(["iptables", "-t", table, "-A", chain, *shlex.split(args)])
    return "".join(m.ext.print(m.data, p.base.ip, numeric) for m in p.matches)


def refused(args: str, table: str = "filter", chain: str = "INPUT") -> str:
    """The message of a parameter problem (exit 2)."""
    with pytest.raises(ParameterProblem) as info:
        rule_text(args, table, chain)
    return info.value.message


def kernel_refused(args: str, table: str = "filter", chain: str = "INPUT") -> None:
    """The kernel's EINVAL (exit 1)."""
    with pytest.raises(KernelError) as info:
        rule_text(args, table, chain)
    assert info.value.message == EINVAL


def run_t(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    for chain in chains:
        if result == "FAIL":
            with pytest.raises((ParameterProblem, KernelError)):
                rule_text(rule, table, chain)
        else:
            assert rule_text(rule, table, chain) == (rule if expected == "=" else expected)


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
