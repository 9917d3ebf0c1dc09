"""DSCP: libxt_DSCP.t, class names (matched by prefix, case-blind) and
the mangle-only kernel registration, as iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from pyfw.errors import KernelError, ParameterProblem
from pyfw.ext.base import CheckContext
from pyfw.ruleset.argparse import parse_command


def parse(args: str, table: str = "mangle", chain: str = "INPUT") -> Any:
    """Parse `-A chain ARGS` with the core's parser; the target's use."""
    return parse_command(["iptables", "-t", table, "-A", chain, *shlex.split(args)])


def texts(args: str, table: str = "mangle", chain: str = "INPUT") -> tuple[str, str, str]:
    """(save, print, print numeric) of the rule's target."""
    p = parse(args, table, chain)
    t = p.target_ext
    ip = p.base.ip
    return t.ext.save(t.data, ip), t.ext.print(t.data, ip, False), t.ext.print(t.data, ip, True)


def check(args: str, table: str = "mangle", chain: str = "INPUT",
          hooks: frozenset[str] | None = None) -> None:
    """Run the target's kernel check (the generic table/proto part too)."""
    p = parse(args, table, chain)
    t = p.target_ext
    ext = t.ext
    ip = p.base.ip
    if ext.table is not None and ext.table != table:
        raise KernelError("table")
    if ext.proto and (ip.proto != ext.proto or ip.invflags & 0x40):
        raise KernelError("proto")
    ctx = CheckContext(table, chain, frozenset({chain}) if hooks is None else hooks, ip,
                       matches=tuple((m.ext.name, m.data) for m in p.matches), target=ext.name)
    ext.check(t.data, ctx)


def refused(args: str, table: str = "mangle", chain: str = "INPUT") -> str:
    with pytest.raises(ParameterProblem) as info:
        parse(args, table, chain)
    return info.value.message


CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


@pytest.mark.parametrize("args,expected", [
    ("-j DSCP --set-dscp 0x00", " --set-dscp 0x00"),
    ("-j DSCP --set-dscp 0x3f", " --set-dscp 0x3f"),
    ("-j DSCP --set-dscp-class CS0", " --set-dscp 0x00"),
    ("-j DSCP --set-dscp-class BE", " --set-dscp 0x00"),
    ("-j DSCP --set-dscp-class EF", " --set-dscp 0x2e"),
])
def test_t_ok(args: str, expected: str) -> None:
    """libxt_DSCP.t:3,4,8-10."""
    for chain in CHAINS:
        assert texts(args, "mangle", chain)[0] == expected
        check(args, "mangle", chain)


@pytest.mark.parametrize("args,message", [
    ("-j DSCP --set-dscp -1", 'DSCP: bad value for option "--set-dscp", or out of range (0-63).\n'),
    ("-j DSCP --set-dscp 0x40", 'DSCP: bad value for option "--set-dscp", or out of range (0-63).\n'),
    ("-j DSCP --set-dscp 0x3f --set-dscp-class CS0",
     'DSCP: option "--set-dscp" cannot be used together with "--set-dscp-class".\n'),
    ("-j DSCP", "DSCP target: Parameter --set-dscp is required"),
])
def test_t_fail(args: str, message: str) -> None:
    """libxt_DSCP.t:5-7,11."""
    assert refused(args) == message


@pytest.mark.parametrize("arg,value", [
    ("ef", 0x2E), ("AF41", 0x22), ("CS7foo", 0x38), ("af111", 0x0A), ("cs3", 0x18),
])
def test_classes(arg: str, value: int) -> None:
    assert texts(f"-j DSCP --set-dscp-class {arg}") == (
        f" --set-dscp 0x{value:02x}", f" DSCP set 0x{value:02x}", f" DSCP set 0x{value:02x}")


@pytest.mark.parametrize("arg", ["AF1", "foo", "''", "cs"])
def test_bad_class(arg: str) -> None:
    shown = "" if arg == "''" else arg
    assert refused(f"-j DSCP --set-dscp-class {arg}") == f"Invalid DSCP value `{shown}'"


@pytest.mark.parametrize("args,message", [
    ("--set-dscp-class EF --set-dscp 1",
     'DSCP: option "--set-dscp" cannot be used together with "--set-dscp-class".\n'),
    ("--set-dscp-class EF --set-dscp-class CS1", 'DSCP: option "--set-dscp-class" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-j DSCP " + args) == message


def test_mangle_only() -> None:
    with pytest.raises(KernelError):
        check("-j DSCP --set-dscp 1", "filter", "INPUT")
