"""CONNMARK (revision 2): libxt_CONNMARK.t, the reductions to --set-xmark,
the masks and shifts, -L wording, and the kernel's refusal of 32-bit shifts,
as iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import pytest
from targetkit import check, parse, refused, texts

from pyfw.errors import EINVAL, KernelError


@pytest.mark.parametrize("args,expected", [
    ("-j CONNMARK --restore-mark", " --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
    ("-j CONNMARK --save-mark", " --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"),
    ("-j CONNMARK --save-mark --nfmask 0xfffffff --ctmask 0xffffffff",
     " --save-mark --nfmask 0xfffffff --ctmask 0xffffffff"),
    ("-j CONNMARK --restore-mark --nfmask 0xfffffff --ctmask 0xffffffff",
     " --restore-mark --nfmask 0xfffffff --ctmask 0xffffffff"),
])
def test_t_ok(args: str, expected: str) -> None:
    """libxt_CONNMARK.t:3-6 (mangle)."""
    for chain in ("PREROUTING", "FORWARD", "OUTPUT", "POSTROUTING"):
        assert texts(args, "mangle", chain)[0] == expected
        check(args, "mangle", chain)


def test_t_fail() -> None:
    """libxt_CONNMARK.t:7."""
    assert refused("-j CONNMARK") == "CONNMARK target: No operation specified"


@pytest.mark.parametrize("args,save,listed", [
    ("--save-mark --left-shift-mark 3",
     " --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 3",
     " CONNMARK save left-shift-mark 3"),
    ("--set-mark 5 --right-shift-mark 2", " --set-xmark 0x5/0xffffffff --right-shift-mark 2",
     " CONNMARK set 0x5 right-shift-mark 2"),
    ("--set-mark 5/0xf", " --set-xmark 0x5/0xf", " CONNMARK xset 0x5/0xf"),
    ("--and-mark 5", " --set-xmark 0x0/0xfffffffa", " CONNMARK and 0x5"),
    ("--or-mark 5", " --set-xmark 0x5/0x5", " CONNMARK or 0x5"),
    ("--xor-mark 5", " --set-xmark 0x5/0x0", " CONNMARK xor 0x5"),
    ("--set-xmark 5/7", " --set-xmark 0x5/0x7", " CONNMARK xset 0x5/0x7"),
    ("--set-xmark 5", " --set-xmark 0x5/0xffffffff", " CONNMARK set 0x5"),
    ("--save-mark --nfmask 1 --ctmask 2", " --save-mark --nfmask 0x1 --ctmask 0x2",
     " CONNMARK save nfmask 0x1 ctmask ~0x2"),
    ("--restore-mark --nfmask 1 --ctmask 2", " --restore-mark --nfmask 0x1 --ctmask 0x2",
     " CONNMARK restore ctmask 0x2 nfmask ~0x1"),
    ("--save-mark --nfmask 1 --ctmask 1", " --save-mark --nfmask 0x1 --ctmask 0x1",
     " CONNMARK save mask 0x1"),
    ("--restore-mark --mask 0xff", " --restore-mark --nfmask 0xff --ctmask 0xff",
     " CONNMARK restore mask 0xff"),
    # No exclusion between the shifts: the later one wins.
    ("--right-shift-mark 2 --left-shift-mark 3 --save-mark",
     " --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 3",
     " CONNMARK save left-shift-mark 3"),
    ("--restore-mark --right-shift-mark 0", " --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
     " CONNMARK restore"),
    ("--restore-mark --left-shift-mark 0x1f",
     " --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 31",
     " CONNMARK restore left-shift-mark 31"),
    ("--set-mark 0", " --set-xmark 0x0/0xffffffff", " CONNMARK and 0x0"),
    ("--set-xmark 0/0", " --set-xmark 0x0/0x0", " CONNMARK and 0xffffffff"),
    # --mask after --set-mark overrides ctmask.
    ("--set-mark 1 --mask 3", " --set-xmark 0x1/0x3", " CONNMARK xset 0x1/0x3"),
])
def test_options(args: str, save: str, listed: str) -> None:
    """Checked against iptables-legacy 1.8.9 (filter table: allowed anywhere)."""
    assert texts("-j CONNMARK " + args, "filter") == (save, listed, listed)
    check("-j CONNMARK " + args, "filter")


def test_shift_direction_kept() -> None:
    """A zero right shift is not printed but still differs from no shift."""
    a = parse("-j CONNMARK --restore-mark --right-shift-mark 0").target_ext.data
    b = parse("-j CONNMARK --restore-mark").target_ext.data
    assert a != b


@pytest.mark.parametrize("args", [
    "--restore-mark --right-shift-mark 32",
    "--save-mark --left-shift-mark 32",
    "--set-mark 1 --left-shift-mark 32",
    "--restore-mark --right-shift-mark 32 --mask 0xff",
])
def test_kernel_refuses_32_bit_shift(args: str) -> None:
    with pytest.raises(KernelError) as info:
        check("-j CONNMARK " + args, "filter")
    assert info.value.message == EINVAL


@pytest.mark.parametrize("args,message", [
    ("--left-shift-mark 33 --save-mark",
     'CONNMARK: bad value for option "--left-shift-mark", or out of range (0-32).\n'),
    ("--left-shift-mark 1", "CONNMARK target: No operation specified"),
    ("--save-mark --mask 3 --ctmask 3", 'CONNMARK: option "--ctmask" cannot be used together with "--mask".\n'),
    ("--ctmask 3 --mask 3 --save-mark", 'CONNMARK: option "--ctmask" cannot be used together with "--mask".\n'),
    ("--save-mark --restore-mark",
     'CONNMARK: option "--save-mark" cannot be used together with "--restore-mark".\n'),
    # Used options in table order, each against the others in id order.
    ("--set-mark 1 --and-mark 2 --save-mark",
     'CONNMARK: option "--set-mark" cannot be used together with "--save-mark".\n'),
    ("--and-mark 1 --save-mark --set-xmark 2",
     'CONNMARK: option "--set-xmark" cannot be used together with "--save-mark".\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-j CONNMARK " + args, "filter") == message
