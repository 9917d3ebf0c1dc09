"""mac: libxt_mac.t, the lenient strtoul-based address parser of
xtopt_parse_ethermac, the PREROUTING/INPUT/FORWARD restriction and the
-S / -L texts, checked against iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

from pyfw.errors import KernelError
from pyfw.ruleset.model import Ruleset

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_mac.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-m mac --mac-source 0:1:2:3:4:5', '-A INPUT -m mac --mac-source 00:01:02:03:04:05', ' MAC 00:01:02:03:04:05', ' MAC 00:01:02:03:04:05'),
    ('-m mac ! --mac-source AA:bb:cc:dd:ee:ff', '-A INPUT -m mac ! --mac-source aa:bb:cc:dd:ee:ff', ' MAC ! aa:bb:cc:dd:ee:ff', ' MAC ! aa:bb:cc:dd:ee:ff'),
    ('-m mac --mac-source :::::', '-A INPUT -m mac --mac-source 00:00:00:00:00:00', ' MAC 00:00:00:00:00:00', ' MAC 00:00:00:00:00:00'),
    ('-m mac --mac-source " 1:-1:+2:3:4:5"', '-A INPUT -m mac --mac-source 01:ff:02:03:04:05', ' MAC 01:ff:02:03:04:05', ' MAC 01:ff:02:03:04:05'),
    ('-m mac --mac-source -f:0:0:0:0:-0', '-A INPUT -m mac --mac-source f1:00:00:00:00:00', ' MAC f1:00:00:00:00:00', ' MAC f1:00:00:00:00:00'),
    ('-m mac --mac-source 1:2:3:4:5:', '-A INPUT -m mac --mac-source 01:02:03:04:05:00', ' MAC 01:02:03:04:05:00', ' MAC 01:02:03:04:05:00'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-m mac --mac-source 001:1:2:3:4:5', 2, 'Invalid MAC address specified.'),
    ('-m mac --mac-source 0x:1:2:3:4:5', 2, 'Invalid MAC address specified.'),
    ('-m mac --mac-source 0x1:1:2:3:4:5', 2, 'Invalid MAC address specified.'),
    ('-m mac --mac-source 1:2:3:4:5:6 --mac-source 1:2:3:4:5:6', 2, 'mac: option "--mac-source" can only be used once.\n'),
    ('-m mac', 2, 'mac: option "--mac-source" must be specified\n'),
    ('-m mac --mac-source 1:2:3:4:5:g', 2, 'Invalid MAC address specified.'),
    ('-m mac --mac-source 1:2:3:4:5', 2, 'Invalid MAC address specified.'),
    ('-m mac --mac-source "1:2:3:4:5:6 "', 2, 'Invalid MAC address specified.'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case


@pytest.mark.parametrize("chain,ok", [("INPUT", True), ("FORWARD", True), ("OUTPUT", False)])
def test_hooks(chain: str, ok: bool) -> None:
    result = outcome("-m mac --mac-source 0:1:2:3:4:5", chain)
    assert (len(result) == 2) == ok
    if not ok:
        assert result[1:] == (1, "EINVAL")


def test_user_chain_reached_from_output() -> None:
    rs = Ruleset()
    _run(rs, ["-N", "FOO"])
    _run(rs, ["-A", "FOO", "-m", "mac", "--mac-source", "0:1:2:3:4:5"])
    with pytest.raises(KernelError):
        _run(rs, ["-A", "OUTPUT", "-j", "FOO"])
