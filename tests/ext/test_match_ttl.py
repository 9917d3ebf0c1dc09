"""ttl: libipt_ttl.t, the `--ttl` alias of `--ttl-eq` (invertible, reported
as "--ttl-eq"), the mutual exclusion of the modes in iptables' order, and
the -S / -L texts, checked against iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libipt_ttl.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-m ttl --ttl 5', '-A INPUT -m ttl --ttl-eq 5', ' TTL match TTL == 5', ' TTL match TTL == 5'),
    ('-m ttl ! --ttl 5', '-A INPUT -m ttl ! --ttl-eq 5', ' TTL match TTL != 5', ' TTL match TTL != 5'),
    ('-m ttl --ttl-lt 5', '-A INPUT -m ttl --ttl-lt 5', ' TTL match TTL < 5', ' TTL match TTL < 5'),
    ('-m ttl --ttl-gt 0x10', '-A INPUT -m ttl --ttl-gt 16', ' TTL match TTL > 16', ' TTL match TTL > 16'),
    ('-m ttl ! --ttl-eq 255', '-A INPUT -m ttl ! --ttl-eq 255', ' TTL match TTL != 255', ' TTL match TTL != 255'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-m ttl ! --ttl-lt 5', 2, 'ttl: option "--ttl-lt" cannot be inverted.\n'),
    ('-m ttl ! --ttl-gt 5', 2, 'ttl: option "--ttl-gt" cannot be inverted.\n'),
    ('-m ttl --ttl-gt 5 --ttl-lt 3', 2, 'ttl: option "--ttl-lt" cannot be used together with "--ttl-gt".\n'),
    ('-m ttl --ttl-lt 3 --ttl-gt 5', 2, 'ttl: option "--ttl-lt" cannot be used together with "--ttl-gt".\n'),
    ('-m ttl --ttl-eq 3 --ttl 4', 2, 'ttl: option "--ttl-eq" can only be used once.\n'),
    ('-m ttl --ttl 3 --ttl-eq 4', 2, 'ttl: option "--ttl-eq" can only be used once.\n'),
    ('-m ttl --ttl 3 --ttl 4', 2, 'ttl: option "--ttl-eq" can only be used once.\n'),
    ('-m ttl --ttl 3 --ttl-lt 4', 2, 'ttl: option "--ttl-lt" cannot be used together with "--ttl-eq".\n'),
    ('-m ttl --ttl-gt 3 --ttl-eq 4', 2, 'ttl: option "--ttl-gt" cannot be used together with "--ttl-eq".\n'),
    ('-m ttl --ttl-gt 3 --ttl 4', 2, 'ttl: option "--ttl-gt" cannot be used together with "--ttl-eq".\n'),
    ('-m ttl --ttl-eq 256', 2, 'ttl: bad value for option "--ttl-eq", or out of range (0-255).\n'),
    ('-m ttl --ttl-eq ""', 2, 'ttl: bad value for option "--ttl-eq", or out of range (0-255).\n'),
    ('-m ttl --ttl x', 2, 'ttl: bad value for option "--ttl-eq", or out of range (0-255).\n'),
    ('-m ttl --ttl-lt x', 2, 'ttl: bad value for option "--ttl-lt", or out of range (0-255).\n'),
    ('-m ttl', 2, "TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt"),
    ('-m ttl --ttl-lt 1 --ttl-lt 2', 2, 'ttl: option "--ttl-lt" can only be used once.\n'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case
