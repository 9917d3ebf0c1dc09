"""icmp: libipt_icmp.t, name prefixes (and their ambiguity), type/code
numbers, the "any" special case and the -S / -L texts ("icmptype 3 codes
0-4"), checked against iptables-legacy 1.8.9."""

from __future__ import annotations

from paths import SHARED

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest

from pyfw.errors import EINVAL, KernelError, PyfwError
from pyfw.ruleset import commands as ops
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.execute import execute
from pyfw.ruleset.model import Ruleset

# ---------------------------------------------------------------- harness
# (the same few helpers head each tests/ext/test_match_*.py of this group)

T_DIR = (SHARED / "conformance/iptables-t")


def _run(rs: Ruleset, args: list[str]) -> str:
    """One iptables command on `rs`, kept only when the kernel accepts it."""
    p = parse_command(["iptables", *args])
    work = copy.deepcopy(rs)
    out = execute(work, p)
    if out.changed:
        ops.commit_check(work.table(p.table))
    rs.tables = work.tables
    return out.output


def outcome(args: str, chain: str = "INPUT") -> tuple[Any, ...]:
    """Like the oracle: (args, -S line) when added, else (args, rc, message);
    a kernel refusal's message is "EINVAL"."""
    rs = Ruleset()
    try:
        _run(rs, ["-A", chain, *shlex.split(args)])
    except KernelError as e:
        return (args, 1, "EINVAL" if e.message == EINVAL else e.message)
    except PyfwError as e:
        return (args, e.exit_code, e.message)
    return (args, _run(rs, ["-S", chain]).rstrip("\n").split("\n")[-1])


def texts(args: str, chain: str = "INPUT") -> tuple[str, str, str, str]:
    """(args, -S line, -L text, -L -n text) of the rule's last match."""
    p = parse_command(["iptables", "-A", chain, *shlex.split(args)])
    m = p.matches[-1]
    ip = p.base.ip
    line = outcome(args, chain)
    return (args, line[1], m.ext.print(m.data, ip, False), m.ext.print(m.data, ip, True))


def t_lines(name: str) -> list[Any]:
    """The lines of a .t file that iptables-legacy 1.8.9 passes."""
    passed = set()
    for row in (T_DIR / "legacy-1.8.9-results.txt").read_text().splitlines():
        words = row.split()
        if len(words) >= 2 and words[1] == "PASS" and words[0].startswith(name + ":"):
            passed.add(int(words[0].split(":")[1]))
    out = []
    chains: list[str] = []
    table = "filter"
    for no, line in enumerate((T_DIR / name).read_text().split("\n"), 1):
        if not line or line[0] == "#":
            continue
        if line[0] == ":":
            chains = line[1:].split(",")
        elif line[0] == "*":
            table = line[1:]
        elif line[0] not in "@%" and no in passed:
            out.append(pytest.param(chains, table, line, id=f"{name}:{no}"))
    return out


def judge(chains: list[str], table: str, line: str) -> None:
    """iptables-test.py's verdict on one line, for every chain."""
    fields = line.split(";")
    rule, expected, result = fields[0], fields[1], fields[2].rstrip()
    tflag = ["-t", table] if table != "filter" else []
    for chain in chains:
        rs = Ruleset()
        args = ["-A", chain, *shlex.split(rule), *tflag]
        if result == "FAIL":
            with pytest.raises(PyfwError):
                _run(rs, args)
            continue
        _run(rs, args)
        want = f"-A {chain} " + (rule if expected == "=" else expected)
        assert want in _run(rs, ["-S", chain, *tflag]).split("\n")
        _run(rs, ["-D", chain, *shlex.split(rule), *tflag])
        assert _run(rs, ["-S", chain, *tflag]).count("\n-A ") == 0


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
