"""TOS (revision 1): libxt_TOS.t, the value/mask reductions, the -L
wording (symbolic names, with iptables' odd spacing, unless -n), mangle only,
as iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import pytest
from targetkit import check, refused, texts

from pyfw.errors import KernelError

CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


@pytest.mark.parametrize("args,expected", [
    ("-j TOS --set-tos 0x1f", " --set-tos 0x1f/0xff"),
    ("-j TOS --set-tos 0x1f/0x1f", " --set-tos 0x1f/0x1f"),
    ("-j TOS --set-tos Minimize-Delay", " --set-tos 0x10/0x3f"),
    ("-j TOS --set-tos Maximize-Throughput", " --set-tos 0x08/0x3f"),
    ("-j TOS --set-tos Maximize-Reliability", " --set-tos 0x04/0x3f"),
    ("-j TOS --set-tos Minimize-Cost", " --set-tos 0x02/0x3f"),
    ("-j TOS --set-tos Normal-Service", " --set-tos 0x00/0x3f"),
    ("-j TOS --and-tos 0x12", " --set-tos 0x00/0xed"),
    ("-j TOS --or-tos 0x12", " --set-tos 0x12/0x12"),
    ("-j TOS --xor-tos 0x12", " --set-tos 0x12/0x00"),
])
def test_t_ok(args: str, expected: str) -> None:
    """libxt_TOS.t:3,4,8-15."""
    for chain in CHAINS:
        assert texts(args, "mangle", chain)[0] == expected
        check(args, "mangle", chain)


def test_t_fail() -> None:
    """libxt_TOS.t:16."""
    assert refused("-j TOS") == "TOS: An action is required"


@pytest.mark.parametrize("args,listed,numeric", [
    ("--set-tos 0x1f", " TOS set 0x1f/0xff", " TOS set 0x1f/0xff"),
    ("--set-tos 0x10/0x3f", "  TOS setMinimize-Delay", " TOS set 0x10/0x3f"),
    ("--set-tos minimize-cost", "  TOS setMinimize-Cost", " TOS set 0x02/0x3f"),
    ("--set-tos 0/0x3f", "  TOS setNormal-Service", " TOS set 0x00/0x3f"),
    ("--set-tos 0x4/0x3f", "  TOS setMaximize-Reliability", " TOS set 0x04/0x3f"),
    ("--set-tos 0x5/0x3f", " TOS set 0x05/0x3f", " TOS set 0x05/0x3f"),
    ("--set-tos 0x12/0x00", " TOS xor 0x12", " TOS set 0x12/0x00"),
    ("--set-tos 0x12/0x12", " TOS or 0x12", " TOS set 0x12/0x12"),
    ("--set-tos 0/0xed", " TOS and 0x12", " TOS set 0x00/0xed"),
    ("--set-tos 0xff", " TOS or 0xff", " TOS set 0xff/0xff"),
])
def test_print(args: str, listed: str, numeric: str) -> None:
    """Checked against iptables-legacy 1.8.9 -L and -L -n."""
    _, got_listed, got_numeric = texts("-j TOS " + args)
    assert (got_listed, got_numeric) == (listed, numeric)


@pytest.mark.parametrize("args,message", [
    ("--set-tos 0x100", 'Symbolic name "0x100" is unknown'),
    ("--set-tos 1/0x100", 'Illegal value: "1/0x100"'),
    ("--set-tos foo", 'Symbolic name "foo" is unknown'),
    ("--set-tos 1x", 'Illegal value: "1x"'),
    ("--set-tos 1/", 'Illegal value: "1/"'),
    ("--set-tos ''", 'Symbolic name "" is unknown'),
    ("--set-tos 0x", 'Illegal value: "0x"'),
    ("--set-tos 0x/4", 'Illegal value: "0x/4"'),
    ("--and-tos 256", 'TOS: bad value for option "--and-tos", or out of range (0-255).\n'),
    ("--set-tos 1 --and-tos 1", 'TOS: option "--set-tos" cannot be used together with "--and-tos".\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-j TOS " + args) == message


def test_mangle_only() -> None:
    with pytest.raises(KernelError):
        check("-j TOS --set-tos 1", "filter", "INPUT")
