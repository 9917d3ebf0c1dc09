"""owner (revision 1): libxt_owner.t, the kernel's OUTPUT/POSTROUTING rule
and range check, and iptables-legacy 1.8.9's texts and messages."""

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


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_owner.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text,numeric_text", [
    ("--uid-owner root", "--uid-owner 0", " owner UID match root", " owner UID match 0"),
    ("! --uid-owner 0-10 ! --gid-owner 5:7 --suppl-groups",
     "! --uid-owner 0-10 ! --gid-owner 5-7 --suppl-groups",
     " ! owner UID match 0-10 ! owner GID match 5-7 incl. suppl. groups",
     " ! owner UID match 0-10 ! owner GID match 5-7 incl. suppl. groups"),
    ("! --socket-exists --gid-owner root", "! --socket-exists --gid-owner 0",
     " ! owner socket exists owner GID match root", " ! owner socket exists owner GID match 0"),
    ("--uid-owner 4294967294", "--uid-owner 4294967294", " owner UID match 4294967294",
     " owner UID match 4294967294"),
    ("--uid-owner 0x10", "--uid-owner 16", None, " owner UID match 16"),
])
def test_texts(args: str, save: str, text: str | None, numeric_text: str) -> None:
    assert rule_text("-m owner " + args, "mangle", "OUTPUT") == "-m owner " + save
    if text is not None:
        assert listed("-m owner " + args, False, "mangle", "OUTPUT") == text
    assert listed("-m owner " + args, True, "mangle", "OUTPUT") == numeric_text


@pytest.mark.parametrize("table,chain", [
    ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"), ("nat", "OUTPUT"), ("raw", "OUTPUT"),
    ("filter", "OUTPUT"),
])
def test_output_hooks(table: str, chain: str) -> None:
    assert rule_text("-m owner --socket-exists", table, chain) == "-m owner --socket-exists"


@pytest.mark.parametrize("args,table,chain", [
    ("--uid-owner 1", "mangle", "INPUT"),
    ("--uid-owner 1", "mangle", "PREROUTING"),
    ("--uid-owner 1", "filter", "FORWARD"),
    ("--uid-owner 10-5", "mangle", "OUTPUT"),
    ("--gid-owner 10-5", "mangle", "OUTPUT"),
    ("--uid-owner 3 --gid-owner 10-5 --suppl-groups", "mangle", "OUTPUT"),
])
def test_kernel_refused(args: str, table: str, chain: str) -> None:
    kernel_refused("-m owner " + args, table, chain)


@pytest.mark.parametrize("args,message", [
    ("--uid-owner 4294967295", 'owner: Bad value for "--uid-owner" option: "4294967295"'),
    ("--uid-owner 5-", 'owner: Bad value for "--uid-owner" option: "5-"'),
    ("--uid-owner foo-no-such-user", 'owner: Bad value for "--uid-owner" option: "foo-no-such-user"'),
    ("--gid-owner 1,2", 'owner: Bad value for "--gid-owner" option: "1,2"'),
    ("--gid-owner 0-10 ! --suppl-groups", 'owner: option "--suppl-groups" cannot be inverted.\n'),
    ("--suppl-groups --gid-owner 0-10",
     'owner: Bad value for "--suppl-groups" option: "you need to use --gid-owner first"'),
    ("", "owner: At least one of --uid-owner, --gid-owner or --socket-exists is required"),
    ("--uid-owner 1 --uid-owner 2", 'owner: option "--uid-owner" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m owner " + args, "mangle", "OUTPUT") == message
