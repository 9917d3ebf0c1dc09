"""The helpers the match tests share: run commands as the oracle tests do,
read the lines of a .t file that iptables-legacy 1.8.9 passes, judge a line
as iptables-test.py does."""

from __future__ import annotations

import copy
import shlex
from typing import Any

import pytest
from paths import SHARED

from pyfw.errors import EINVAL, KernelError, PyfwError
from pyfw.ruleset import commands as ops
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.execute import execute
from pyfw.ruleset.model import Ruleset

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


