"""icmp: libipt_icmp.t, name prefixes (and their ambiguity), type/code
numbers, the "any" special case and the -S / -L texts ("icmptype 3 codes
0-4"), checked against iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libipt_icmp.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-p icmp --icmp-type any', '-A INPUT -p icmp -m icmp --icmp-type any', ' icmp any', ' icmptype 255'),
    ('-p icmp ! --icmp-type any', '-A INPUT -p icmp -m icmp ! --icmp-type any', ' icmp !any', ' icmp !type 255'),
    ('-p icmp ! --icmp-type echo-request', '-A INPUT -p icmp -m icmp ! --icmp-type 8', ' icmp !echo-request', ' icmp !type 8'),
    ('-p icmp --icmp-type 3/0:4', '-A INPUT -p icmp -m icmp --icmp-type 3/0', ' icmptype 3 codes 0-4', ' icmptype 3 codes 0-4'),
    ('-p icmp --icmp-type 3/4', '-A INPUT -p icmp -m icmp --icmp-type 3/4', ' icmp fragmentation-needed', ' icmptype 3 code 4'),
    ('-p icmp --icmp-type port-unr', '-A INPUT -p icmp -m icmp --icmp-type 3/3', ' icmp port-unreachable', ' icmptype 3 code 3'),
    ('-p icmp --icmp-type 0x3/0x4:010', '-A INPUT -p icmp -m icmp --icmp-type 3/4', ' icmptype 3 codes 4-8', ' icmptype 3 codes 4-8'),
    ('-p icmp --icmp-type 8/0', '-A INPUT -p icmp -m icmp --icmp-type 8/0', ' icmptype 8 code 0', ' icmptype 8 code 0'),
    ('-p icmp ! --icmp-type 8/0', '-A INPUT -p icmp -m icmp ! --icmp-type 8/0', ' icmp !type 8 code 0', ' icmp !type 8 code 0'),
    ('-p icmp ! --icmp-type 3/1:1', '-A INPUT -p icmp -m icmp ! --icmp-type 3/1', ' icmp !host-unreachable', ' icmp !type 3 code 1'),
    ('-p icmp --icmp-type 3/5:2', '-A INPUT -p icmp -m icmp --icmp-type 3/5', ' icmptype 3 codes 5-2', ' icmptype 3 codes 5-2'),
    ('-p icmp --icmp-type PING', '-A INPUT -p icmp -m icmp --icmp-type 8', ' icmp echo-request', ' icmptype 8'),
    ('-p icmp --icmp-type " 3"', '-A INPUT -p icmp -m icmp --icmp-type 3', ' icmp destination-unreachable', ' icmptype 3'),
    ('-p icmp --icmp-type tos-host-r', '-A INPUT -p icmp -m icmp --icmp-type 5/3', ' icmp TOS-host-redirect', ' icmptype 5 code 3'),
    ('-p icmp --icmp-type 3/0:255', '-A INPUT -p icmp -m icmp --icmp-type 3', ' icmp destination-unreachable', ' icmptype 3'),
    ('-p icmp --icmp-type 200', '-A INPUT -p icmp -m icmp --icmp-type 200', ' icmptype 200', ' icmptype 200'),
    ('-p icmp --icmp-type 255/255', '-A INPUT -p icmp -m icmp --icmp-type any', ' icmptype 255 code 255', ' icmptype 255 code 255'),
    ('-p icmp --icmp-type 11/1', '-A INPUT -p icmp -m icmp --icmp-type 11/1', ' icmp ttl-zero-during-reassembly', ' icmptype 11 code 1'),
    ('-p icmp --icmp-type ttl-exceeded', '-A INPUT -p icmp -m icmp --icmp-type 11', ' icmp time-exceeded', ' icmptype 11'),
    ('-p 1 --icmp-type 0', '-A INPUT -p icmp -m icmp --icmp-type 0', ' icmp echo-reply', ' icmptype 0'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-p icmp --icmp-type 3/1:', 2, "Unknown ICMP code `3/1:'"),
    ('-p icmp --icmp-type echo', 2, "Ambiguous ICMP type `echo': `echo-reply' or `echo-request'?"),
    ('-p icmp --icmp-type ""', 2, "Ambiguous ICMP type `': `any' or `echo-reply'?"),
    ('-p icmp --icmp-type 3:4', 2, 'ICMP type range not supported'),
    ('-p icmp --icmp-type 3:', 2, "Unknown ICMP type `3:'"),
    ('-p icmp --icmp-type 3/', 2, "Unknown ICMP code `3/'"),
    ('-p icmp --icmp-type 3x', 2, 'unknown character x'),
    ('-p icmp --icmp-type 256', 2, "Unknown ICMP type `256'"),
    ('-p icmp --icmp-type 3/256', 2, "Unknown ICMP code `3/256'"),
    ('-p icmp --icmp-type 3/1:256', 2, "Unknown ICMP code `3/1:256'"),
    ('-p icmp --icmp-type 3/4x', 2, 'unknown character x'),
    ('-p icmp --icmp-type ttl', 2, "Ambiguous ICMP type `ttl': `ttl-exceeded' or `ttl-zero-during-transit'?"),
    ('-p icmp -m icmp', 2, 'icmp: option "--icmp-type" must be specified\n'),
    ('-p icmp --icmp-type 1 --icmp-type 2', 2, 'icmp: option "--icmp-type" can only be used once.\n'),
    ('-m icmp --icmp-type 8', 1, 'EINVAL'),
    ('-p tcp -m icmp --icmp-type 8', 1, 'EINVAL'),
    ('! -p icmp -m icmp --icmp-type 8', 1, 'EINVAL'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case
