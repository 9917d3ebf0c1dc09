"""NOTRACK: an alias of CT revision 2 (libxt_NOTRACK.t): saved as
`-j NOTRACK`, listed as CT in the target column and NOTRACK in the
options, raw table only."""

from __future__ import annotations

import pytest
from targetkit import check, parse, refused, texts

from pyfw.errors import KernelError


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
