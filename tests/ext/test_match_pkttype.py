"""pkttype: libxt_pkttype.t, case-insensitive names and aliases, messages
and the -S / -L texts, checked against iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_pkttype.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-m pkttype --pkt-type host', '-A INPUT -m pkttype --pkt-type unicast', ' PKTTYPE = unicast', ' PKTTYPE = unicast'),
    ('-m pkttype ! --pkt-type BCAST', '-A INPUT -m pkttype ! --pkt-type broadcast', ' PKTTYPE != broadcast', ' PKTTYPE != broadcast'),
    ('-m pkttype --pkt-type otherhost', '-A INPUT -m pkttype --pkt-type otherhost', ' PKTTYPE = otherhost', ' PKTTYPE = otherhost'),
    ('-m pkttype --pkt-type Mcast', '-A INPUT -m pkttype --pkt-type multicast', ' PKTTYPE = multicast', ' PKTTYPE = multicast'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-m pkttype --pkt-type x', 2, "Bad packet type 'x'"),
    ('-m pkttype --pkt-type ""', 2, "Bad packet type ''"),
    ('-m pkttype', 2, 'pkttype: option "--pkt-type" must be specified\n'),
    ('-m pkttype --pkt-type unicast --pkt-type host', 2, 'pkttype: option "--pkt-type" can only be used once.\n'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case
