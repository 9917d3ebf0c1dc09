"""TTL: libipt_TTL.t, -L wording and mangle-only registration, as
iptables-legacy 1.8.9 does them."""

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
