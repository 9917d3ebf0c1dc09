"""NFQUEUE revision 3: libxt_NFQUEUE.t (as 1.8.9 behaves: no 65534 limit
on --queue-balance, so the kernel refuses 0:65535 and ":"), and -L texts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import CheckContext, RuleIp
from pyfw.ext.match_limit import ERANGE
from pyfw.ext.target_nfqueue import EXTENSIONS, NfqueueData

EXT = EXTENSIONS[0]
T_FILE = (SHARED / "conformance/iptables-t/libxt_NFQUEUE.t")
# Lines 1.8.9 fails (legacy-1.8.9-results.txt): newer iptables completes to 65534.
NOT_IN_189 = {12, 14}


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


def t_lines() -> list[tuple[int, str, str, str]]:
    out = []
    if T_FILE.exists():
        for n, line in enumerate(T_FILE.read_text().splitlines(), 1):
            if line and line[0] not in "#:" and n not in NOT_IN_189:
                rule, expected, result = line.split(";")[:3]
                out.append((n, rule, rule if expected == "=" else expected, result))
    return out


@pytest.mark.parametrize("n,rule,expected,result", t_lines())
def test_t_file(tmp_path: Path, n: int, rule: str, expected: str, result: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", *shlex.split(rule))
    if result == "FAIL":
        assert rc != 0
        return
    assert rc == 0, err
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1:] == [f"-A INPUT {expected}"]
    assert cli(tmp_path, "-D", "INPUT", *shlex.split(rule))[0] == 0


@pytest.mark.parametrize("rule,saved,listed", [
    ("--queue-balance 4:", "--queue-balance 4:65535", "NFQUEUE balance 4:65535"),
    ("--queue-balance 1:3 --queue-cpu-fanout", "--queue-balance 1:3 --queue-cpu-fanout",
     "NFQUEUE balance 1:3 cpu-fanout"),
    ("--queue-num 7 --queue-bypass", "--queue-num 7 --queue-bypass", "NFQUEUE num 7 bypass"),
    ("--queue-num 0x10", "--queue-num 16", "NFQUEUE num 16"),
])
def test_texts(tmp_path: Path, rule: str, saved: str, listed: str) -> None:
    assert cli(tmp_path, "-A", "INPUT", "-j", "NFQUEUE", *shlex.split(rule))[0] == 0
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1] == f"-A INPUT -j NFQUEUE {saved}"
    assert cli(tmp_path, "-L", "INPUT")[1].splitlines()[2] == (
        f"NFQUEUE    all  --  anywhere             anywhere             {listed}")


@pytest.mark.parametrize("rule,message", [
    ("--queue-balance 4", 'Bad range "4"'),
    ("--queue-balance ''", 'Bad range ""'),
    ("--queue-balance 4:4", "4 should be less than 4"),
    ("--queue-balance 0:65536",
     'NFQUEUE: bad value for option "--queue-balance" near "65536", or out of range (0-65535).\n'),
    ("--queue-balance 1:2:3", 'NFQUEUE: Too many components for option "--queue-balance" (max: 2)\n'),
    ("--queue-cpu-fanout", 'NFQUEUE: option "--queue-cpu-fanout" also requires "--queue-balance".\n'),
    ("--queue-balance 1:2 --queue-num 3",
     'NFQUEUE: option "--queue-num" cannot be used together with "--queue-balance".\n'),
    ("! --queue-num 7", 'NFQUEUE: option "--queue-num" cannot be inverted.\n'),
])
def test_parameter_problems(tmp_path: Path, rule: str, message: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-j", "NFQUEUE", *shlex.split(rule))
    assert rc == 2
    assert err.startswith(f"pyfw v1.8.9 (legacy): {message}\n")


def test_kernel_check() -> None:
    ctx = CheckContext("filter", "INPUT", frozenset({"INPUT"}), RuleIp())
    EXT.check(NfqueueData(4, 65532), ctx)
    for data, text in ((NfqueueData(0, 0), EINVAL), (NfqueueData(5, 65532), ERANGE)):
        with pytest.raises(KernelError) as exc:
            EXT.check(data, ctx)
        assert exc.value.message == text
