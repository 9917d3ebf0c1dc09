"""NOTRACK: an alias of CT revision 2 (libxt_NOTRACK.t): saved as
`-j NOTRACK`, listed as CT in the target column and NOTRACK in the
options, raw table only."""

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


def test_t_line() -> None:
    """libxt_NOTRACK.t:3: `-j NOTRACK` prints back as itself."""
    for chain in ("PREROUTING", "OUTPUT"):
        p = parse("-j NOTRACK", "raw", chain)
        t = p.target_ext
        assert t.ext.name == "NOTRACK"
        assert t.ext.save_name(t.data) == "NOTRACK"
        assert texts("-j NOTRACK", "raw", chain) == ("", " NOTRACK", " NOTRACK")
        check("-j NOTRACK", "raw", chain)


def test_listed_as_ct() -> None:
    """iptables -L shows the kernel target's name, CT, in the target column."""
    ext = parse("-j NOTRACK", "raw").target_ext.ext
    assert ext.real_name == "CT" and ext.display_name == "CT"


def test_flags() -> None:
    from pyfw.ext.target_ct import CT_NOTRACK, CT_NOTRACK_ALIAS

    assert parse("-j NOTRACK", "raw").target_ext.data.flags == CT_NOTRACK | CT_NOTRACK_ALIAS


@pytest.mark.parametrize("table", ["filter", "mangle"])
def test_raw_only(table: str) -> None:
    with pytest.raises(KernelError):
        check("-j NOTRACK", table, "OUTPUT")


def test_no_options() -> None:
    assert refused("-j NOTRACK --notrack", "raw") == 'unknown option "--notrack"'
