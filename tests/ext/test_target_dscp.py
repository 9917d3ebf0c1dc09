"""DSCP: libxt_DSCP.t, class names (matched by prefix, case-blind) and
the mangle-only kernel registration, as iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import pytest
from targetkit import check, refused, texts

from pyfw.errors import KernelError

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
