"""TTL: libipt_TTL.t, -L wording and mangle-only registration, as
iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import pytest
from targetkit import check, refused, texts

from pyfw.errors import KernelError

CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


@pytest.mark.parametrize("args", ["-j TTL --ttl-set 42", "-j TTL --ttl-inc 1", "-j TTL --ttl-dec 1"])
def test_t_ok(args: str) -> None:
    """libipt_TTL.t:3-5."""
    for chain in CHAINS:
        assert texts(args, "mangle", chain)[0] == args[len("-j TTL"):]
        check(args, "mangle", chain)


@pytest.mark.parametrize("args,message", [
    ("-j TTL --ttl-set 256", 'TTL: bad value for option "--ttl-set", or out of range (0-255).\n'),
    ("-j TTL --ttl-inc 0", 'TTL: bad value for option "--ttl-inc", or out of range (1-255).\n'),
    ("-j TTL --ttl-dec 0", 'TTL: bad value for option "--ttl-dec", or out of range (1-255).\n'),
    ("-j TTL --ttl-dec 1 --ttl-inc 1", 'TTL: option "--ttl-dec" cannot be used together with "--ttl-inc".\n'),
    ("-j TTL --ttl-set 1 --ttl-dec 1 --ttl-inc 1",
     'TTL: option "--ttl-set" cannot be used together with "--ttl-inc".\n'),
    ("-j TTL --ttl-set --ttl-inc 1", 'TTL: bad value for option "--ttl-set", or out of range (0-255).\n'),
    ("-j TTL", "TTL: You must specify an action"),
])
def test_t_fail(args: str, message: str) -> None:
    """libipt_TTL.t:6-10 and no option."""
    assert refused(args) == message


@pytest.mark.parametrize("args,save,listed", [
    ("--ttl-set 0", " --ttl-set 0", " TTL set to 0"),
    ("--ttl-set 255", " --ttl-set 255", " TTL set to 255"),
    ("--ttl-inc 255", " --ttl-inc 255", " TTL increment by 255"),
    ("--ttl-dec 3", " --ttl-dec 3", " TTL decrement by 3"),
    ("--ttl-set 0x10", " --ttl-set 16", " TTL set to 16"),
])
def test_options(args: str, save: str, listed: str) -> None:
    assert texts("-j TTL " + args) == (save, listed, listed)


@pytest.mark.parametrize("table", ["filter", "raw"])
def test_mangle_only(table: str) -> None:
    with pytest.raises(KernelError):
        check("-j TTL --ttl-set 1", table, "OUTPUT")
