"""The helpers the conntrack/mark/addrtype/... match tests share: parse a
rule with the kernel's checks, its -S and -L texts, the refusals, and the
lines of a .t file that iptables-legacy 1.8.9 passes."""

from __future__ import annotations

import shlex
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
