"""udp: libxt_udp.t, implicit loading by `-p udp`, XTTYPE_PORTRC ports as
getaddrinfo reads them (decimal, cut to 16 bits, names of any protocol),
the id-based messages of the --sport/--source-port aliases, -S and -L;
expected values come from iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

from pyfw.ruleset.model import Ruleset

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_udp.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-p udp --sport domain ! --dport 1000:2000', '-A INPUT -p udp -m udp --sport 53 ! --dport 1000:2000', ' udp spt:domain dpts:!1000:2000', ' udp spt:53 dpts:!1000:2000'),
    ('-p udp ! --sport :', '-A INPUT -p udp -m udp', ' udp spts:!0:65535', ' udp spts:!0:65535'),
    ('-p udp --sport 4:3', '-A INPUT -p udp -m udp --sport 4:3', ' udp spts:4:3', ' udp spts:4:3'),
    ('-p udp --sport ""', '-A INPUT -p udp -m udp --sport 0', ' udp spt:0', ' udp spt:0'),
    ('-p udp --sport 65536', '-A INPUT -p udp -m udp --sport 0', ' udp spt:0', ' udp spt:0'),
    ('-p udp --sport 010', '-A INPUT -p udp -m udp --sport 10', ' udp spt:10', ' udp spt:10'),
    ('-p udp --sport " 5"', '-A INPUT -p udp -m udp --sport 5', ' udp spt:5', ' udp spt:5'),
    ('-p udp --sport 4294967297', '-A INPUT -p udp -m udp --sport 1', ' udp spt:1', ' udp spt:1'),
    ('-p udp --sport -4294967295', '-A INPUT -p udp -m udp --sport 1', ' udp spt:1', ' udp spt:1'),
    ('-p udp --sport ssh', '-A INPUT -p udp -m udp --sport 22', ' udp spt:22', ' udp spt:22'),
    ('-p udp ! --sport 1:', '-A INPUT -p udp -m udp ! --sport 1:65535', ' udp spts:!1:65535', ' udp spts:!1:65535'),
    ('-p udp --dport :53', '-A INPUT -p udp -m udp --dport 0:53', ' udp dpts:0:domain', ' udp dpts:0:53'),
    ('-m udp --dport 1 -p udp', '-A INPUT -p udp -m udp --dport 1', ' udp dpt:1', ' udp dpt:1'),
    ('-p 17 --dport 1', '-A INPUT -p udp -m udp --dport 1', ' udp dpt:1', ' udp dpt:1'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-p udp --sport 1:2:3', 2, 'udp: Too many components for option "--source-port" (max: 2)\n'),
    ('-p udp --sport x:2:3', 2, 'Port "x" does not resolve to anything.\n'),
    ('-p udp --source-port 1 --sport 2', 2, 'udp: option "--source-port" can only be used once.\n'),
    ('-p udp --sport 1 --source-port 2', 2, 'udp: option "--source-port" can only be used once.\n'),
    ('-p udp --dport 5 --destination-port 2', 2, 'udp: option "--destination-port" can only be used once.\n'),
    ('-p udp --sport foo', 2, 'Port "foo" does not resolve to anything.\n'),
    ('-p udp --sport SSH', 2, 'Port "SSH" does not resolve to anything.\n'),
    ('-p udp --sport 0x10', 2, 'Port "0x10" does not resolve to anything.\n'),
    ('-p udp --sport 4294967295', 2, 'Port "4294967295" does not resolve to anything.\n'),
    ('-p udp --sport 18446744073709551617', 2, 'Port "18446744073709551617" does not resolve to anything.\n'),
    ('-p udp --sport -', 2, 'Port "-" does not resolve to anything.\n'),
    ('-p udp --dport -1', 2, 'Port "-1" does not resolve to anything.\n'),
    ('-m udp --dport 1', 1, 'EINVAL'),
    ('! -p udp -m udp --dport 1', 1, 'EINVAL'),
    ('-p tcp -m udp --dport 1', 1, 'EINVAL'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case


def test_delete_by_equivalent_spelling() -> None:
    rs = Ruleset()
    _run(rs, ["-A", "INPUT", "-p", "udp", "--dport", "53:53"])
    _run(rs, ["-D", "INPUT", "-p", "udp", "-m", "udp", "--destination-port", "domain"])
    assert "-A " not in _run(rs, ["-S", "INPUT"])
