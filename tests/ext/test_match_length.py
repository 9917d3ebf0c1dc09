"""length: libxt_length.t, XTTYPE_UINT16RC ranges (no min <= max check in
1.8.9), messages and the -S / -L texts, checked against iptables-legacy
1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_length.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-m length --length 4:3', '-A INPUT -m length --length 4:3', ' length 4:3', ' length 4:3'),
    ('-m length ! --length 10:20', '-A INPUT -m length ! --length 10:20', ' length !10:20', ' length !10:20'),
    ('-m length --length 0x10', '-A INPUT -m length --length 16', ' length 16', ' length 16'),
    ('-m length --length ""', '-A INPUT -m length --length 0', ' length 0', ' length 0'),
    ('-m length --length :', '-A INPUT -m length --length 0:65535', ' length 0:65535', ' length 0:65535'),
    ('-m length --length " 5: 6"', '-A INPUT -m length --length 5:6', ' length 5:6', ' length 5:6'),
    ('-m length --length 5:', '-A INPUT -m length --length 5:65535', ' length 5:65535', ' length 5:65535'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-m length --length 1:2:3', 2, 'length: Too many components for option "--length" (max: 2)\n'),
    ('-m length --length a', 2, 'length: bad value for option "--length" near "a", or out of range (0-65535).\n'),
    ('-m length --length 5a', 2, 'length: Argument to "--length" has unexpected characters near "a".\n'),
    ('-m length --length 5 --length 6', 2, 'length: option "--length" can only be used once.\n'),
    ('-m length --length 70000', 2, 'length: bad value for option "--length" near "70000", or out of range (0-65535).\n'),
    ('-m length --length 5:70000', 2, 'length: bad value for option "--length" near "70000", or out of range (0-65535).\n'),
    ('-m length --length -1', 2, 'length: bad value for option "--length" near "-1", or out of range (0-65535).\n'),
    ('-m length', 2, 'length: option "--length" must be specified\n'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case
