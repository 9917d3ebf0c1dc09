"""MARK (revision 2): libxt_MARK.t, every option's reduction to
--set-xmark, the -L wording and the generic option errors, as
iptables-legacy 1.8.9 prints them."""

from __future__ import annotations

import pytest
from targetkit import check, parse, refused, texts


@pytest.mark.parametrize("args,expected", [
    ("-j MARK --set-xmark 0xfeedcafe/0xfeedcafe", " --set-xmark 0xfeedcafe/0xfeedcafe"),
    ("-j MARK --set-xmark 0x0", " --set-xmark 0x0/0xffffffff"),
    ("-j MARK --set-xmark 4294967295", " --set-xmark 0xffffffff/0xffffffff"),
])
def test_t_ok(args: str, expected: str) -> None:
    """libxt_MARK.t:2-4 (filter table)."""
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        assert texts(args, "filter", chain)[0] == expected
        check(args, "filter", chain)


@pytest.mark.parametrize("args,message", [
    ("-j MARK --set-xmark 4294967296", 'MARK: bad integer value for option "--set-xmark", or out of range.\n'),
    ("-j MARK --set-xmark -1", 'MARK: bad integer value for option "--set-xmark", or out of range.\n'),
    ("-j MARK", "MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required"),
])
def test_t_fail(args: str, message: str) -> None:
    """libxt_MARK.t:5-7."""
    assert refused(args, "filter") == message


@pytest.mark.parametrize("args,save,listed", [
    ("--set-mark 5", " --set-xmark 0x5/0xffffffff", " MARK set 0x5"),
    ("--set-mark 5/0xf", " --set-xmark 0x5/0xf", " MARK xset 0x5/0xf"),
    ("--set-xmark 5/0xf", " --set-xmark 0x5/0xf", " MARK xset 0x5/0xf"),
    ("--and-mark 5", " --set-xmark 0x0/0xfffffffa", " MARK and 0x5"),
    ("--or-mark 5", " --set-xmark 0x5/0x5", " MARK or 0x5"),
    ("--xor-mark 5", " --set-xmark 0x5/0x0", " MARK xor 0x5"),
    ("--set-xmark 0", " --set-xmark 0x0/0xffffffff", " MARK and 0x0"),
    ("--set-xmark 0/0", " --set-xmark 0x0/0x0", " MARK and 0xffffffff"),
    ("--set-mark 0x10/0x0", " --set-xmark 0x10/0x10", " MARK or 0x10"),
    ("--and-mark 0xffffffff", " --set-xmark 0x0/0x0", " MARK and 0xffffffff"),
])
def test_options(args: str, save: str, listed: str) -> None:
    """Checked against iptables-legacy 1.8.9 -S and -L (same with -n)."""
    assert texts("-j MARK " + args, "nat", "PREROUTING") == (save, listed, listed)


@pytest.mark.parametrize("args,message", [
    ("--set-mark 1 --and-mark 2 --or-mark 3", 'MARK: option "--set-mark" cannot be used together with "--and-mark".\n'),
    ("--set-xmark 5/0x", 'MARK: trailing garbage after value for option "--set-xmark".\n'),
    ("--set-xmark 5x", 'MARK: trailing garbage after value for option "--set-xmark".\n'),
    ("--set-xmark 0x", 'MARK: trailing garbage after value for option "--set-xmark".\n'),
    ("--set-xmark 5/", 'MARK: bad integer value for option "--set-xmark", or out of range.\n'),
    ("--set-xmark /5", 'MARK: bad integer value for option "--set-xmark", or out of range.\n'),
    ("--set-xmark ''", 'MARK: bad integer value for option "--set-xmark", or out of range.\n'),
    ("--and-mark 1/2", 'MARK: bad value for option "--and-mark", or out of range (0-4294967295).\n'),
    ("--and-mark 0x100000000", 'MARK: bad value for option "--and-mark", or out of range (0-4294967295).\n'),
    ("--set-mark 1 --set-mark 2", 'MARK: option "--set-mark" can only be used once.\n'),
    ("! --set-mark 2", 'MARK: option "--set-mark" cannot be inverted.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-j MARK " + args, "filter") == message


def test_data_is_numeric() -> None:
    p = parse("-j MARK --set-mark 0x10/0xff", "filter")
    assert (p.target_ext.data.mark, p.target_ext.data.mask) == (0x10, 0xFF)
