"""tcp: libxt_tcp.t, implicit loading by `-p tcp`, the old-style messages,
port/flag/option parsing and the -S / -L texts, checked against
iptables-legacy 1.8.9 (expected values were taken from it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

from pyfw.errors import KernelError
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.model import Ruleset

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_tcp.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-p tcp --dport 22', '-A INPUT -p tcp -m tcp --dport 22', ' tcp dpt:ssh', ' tcp dpt:22'),
    ('-p tcp --tcp-option 5 --syn', '-A INPUT -p tcp -m tcp --tcp-option 5 --tcp-flags FIN,SYN,RST,ACK SYN', ' tcp option=5 flags:FIN,SYN,RST,ACK/SYN', ' tcp option=5 flags:0x17/0x02'),
    ('-p tcp ! --syn', '-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN', ' tcp flags:!FIN,SYN,RST,ACK/SYN', ' tcp flags:!0x17/0x02'),
    ('-p tcp ! --sport :', '-A INPUT -p tcp -m tcp', ' tcp spts:!0:65535', ' tcp spts:!0:65535'),
    ('-p tcp --sport ftp-data:ftp', '-A INPUT -p tcp -m tcp --sport 20:21', ' tcp spts:ftp-data:ftp', ' tcp spts:20:21'),
    ('-p tcp --sport 5: --dport :5', '-A INPUT -p tcp -m tcp --sport 5:65535 --dport 0:5', ' tcp spts:5:65535 dpts:0:5', ' tcp spts:5:65535 dpts:0:5'),
    ('-p tcp ! --dport 20:ssh ! --sport 80 ! --tcp-flags ALL NONE ! --tcp-option 2', '-A INPUT -p tcp -m tcp ! --sport 80 ! --dport 20:22 ! --tcp-option 2 ! --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE', ' tcp spt:!http dpts:!ftp-data:ssh option=!2 flags:!FIN,SYN,RST,PSH,ACK,URG/NONE', ' tcp spt:!80 dpts:!20:22 option=!2 flags:!0x3F/0x00'),
    ('-p tcp --tcp-flags SYN,ACK ALL', '-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK FIN,SYN,RST,PSH,ACK,URG', ' tcp flags:SYN,ACK/FIN,SYN,RST,PSH,ACK,URG', ' tcp flags:0x12/0x3F'),
    ('-p tcp --tcp-flags ,SYN,,ACK, NONE', '-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK NONE', ' tcp flags:SYN,ACK/NONE', ' tcp flags:0x12/0x00'),
    ('-p tcp ! --tcp-flags NONE NONE', '-A INPUT -p tcp -m tcp ! --tcp-flags NONE NONE', ' tcp flags:!NONE/NONE', ' tcp flags:!0x00/0x00'),
    ('-p tcp --tcp-flags NONE NONE', '-A INPUT -p tcp -m tcp', ' tcp', ' tcp'),
    ('-p 6 --dport 1', '-A INPUT -p tcp -m tcp --dport 1', ' tcp dpt:tcpmux', ' tcp dpt:1'),
    ('-p tcp -m tcp --sport 0x10:0x20', '-A INPUT -p tcp -m tcp --sport 16:32', ' tcp spts:16:32', ' tcp spts:16:32'),
    ('-p tcp -m tcp --sport 010', '-A INPUT -p tcp -m tcp --sport 8', ' tcp spt:8', ' tcp spt:8'),
    ('-m tcp --dport 1 -p tcp', '-A INPUT -p tcp -m tcp --dport 1', ' tcp dpt:tcpmux', ' tcp dpt:1'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-p tcp --tcp-flags syn,ack,fin,rst,urg,psh SYN,FOO', 2, "Unknown TCP flag `FOO'"),
    ('-p tcp --tcp-flags SYN', 2, '--tcp-flags requires two args.'),
    ('-p tcp --tcp-flags SYN !', 2, '--tcp-flags requires two args.'),
    ('-p tcp --tcp-option 0', 2, 'Bad TCP option "0"'),
    ('-p tcp --tcp-option 256', 2, 'Bad TCP option "256"'),
    ('-p tcp --dport 1 --dport 2', 2, "Only one `--destination-port' allowed"),
    ('-p tcp --source-port 1 --sport 2', 2, "Only one `--source-port' allowed"),
    ('-p tcp --syn --syn', 2, "Only one of `--syn' or `--tcp-flags'  allowed"),
    ('-p tcp --syn --tcp-flags ALL ALL', 2, "Only one of `--syn' or `--tcp-flags'  allowed"),
    ('-p tcp --tcp-option 1 --tcp-option 2', 2, "Only one `--tcp-option' allowed"),
    ('-p tcp --sport 1:2:3', 2, "invalid port/service `2:3' specified"),
    ('-p tcp --sport foo', 2, "invalid port/service `foo' specified"),
    ('-p tcp --sport ""', 2, "invalid port/service `' specified"),
    ('-p tcp --sport 4:3', 2, 'invalid portrange (min > max)'),
    ('-p tcp --sport 65536', 2, "invalid port/service `65536' specified"),
    ('-p tcp --dport -1', 2, "invalid port/service `-1' specified"),
    ('-m tcp --dport 1', 1, 'EINVAL'),
    ('! -p tcp -m tcp --dport 1', 1, 'EINVAL'),
    ('-p udp -m tcp --dport 1', 1, 'EINVAL'),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case


def test_delete_by_equivalent_spelling() -> None:
    """`--sport :` leaves the data at its defaults: `-D -p tcp` finds it."""
    rs = Ruleset()
    _run(rs, ["-A", "INPUT", "-p", "tcp", "--sport", ":"])
    _run(rs, ["-D", "INPUT", "-p", "tcp", "-m", "tcp"])
    assert "-A " not in _run(rs, ["-S", "INPUT"])


def test_data_is_numeric() -> None:
    p = parse_command(["iptables", "-A", "INPUT", "-p", "tcp", "!", "--dport", "1:2", "--syn"])
    data = p.matches[0].data
    assert (data.dpts, data.flg_mask, data.flg_cmp, data.invflags) == ((1, 2), 0x17, 0x02, 0x02)


def test_kernel_refuses_unknown_invflags() -> None:
    from pyfw.ext.base import CheckContext, RuleIp
    from pyfw.ext.match_tcp import EXTENSIONS, TcpData

    ip = RuleIp(6, 0)
    with pytest.raises(KernelError):
        EXTENSIONS[0].check(TcpData(invflags=0x10), CheckContext("filter", "INPUT", frozenset({"INPUT"}), ip))


def test_cli_end_to_end(tmp_path: Path) -> None:
    """Through the CLI and its file store: implicit `-p tcp` loading, -S, -L."""
    from pyfw.cli.main import run

    state = str(tmp_path / "state")
    assert run(["pyfw", "--file", state, "-A", "INPUT", "-p", "tcp", "--dport", "22"]).rc == 0
    res = run(["pyfw", "--file", state, "-A", "INPUT", "-m", "tcp", "--dport", "22"])
    assert (res.rc, res.err) == (1, "pyfw: Invalid argument. Run `dmesg' for more information.\n")
    assert run(["pyfw", "--file", state, "-S", "INPUT"]).out.endswith("\n-A INPUT -p tcp -m tcp --dport 22\n")
    assert run(["pyfw", "--file", state, "-L", "INPUT"]).out.endswith(" tcp dpt:ssh\n")
    assert run(["pyfw", "--file", state, "-D", "INPUT", "-p", "tcp", "--dport", "ssh"]).rc == 0
