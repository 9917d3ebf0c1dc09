"""NFLOG: libxt_NFLOG.t, the --nflog-range warning, prefix cutting and
the texts of iptables-legacy 1.8.9."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.ext.target_nflog import RANGE_WARNING

T_FILE = (SHARED / "conformance/iptables-t/libxt_NFLOG.t")


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


def t_lines() -> list[tuple[str, str, str]]:
    out = []
    if T_FILE.exists():
        for line in T_FILE.read_text().splitlines():
            if line and line[0] not in "#:":
                rule, expected, result = line.split(";")[:3]
                out.append((rule, rule if expected == "=" else expected, result))
    return out


@pytest.mark.parametrize("rule,expected,result", t_lines())
def test_t_file(tmp_path: Path, rule: str, expected: str, result: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", *shlex.split(rule))
    if result == "FAIL":
        assert rc == 2
        return
    assert rc == 0, err
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1:] == [f"-A INPUT {expected}"]
    assert cli(tmp_path, "-D", "INPUT", *shlex.split(rule))[0] == 0


def test_texts(tmp_path: Path) -> None:
    rule = "--nflog-size 0 --nflog-group 3 --nflog-threshold 2 --nflog-prefix 'x y'"
    assert cli(tmp_path, "-A", "INPUT", "-j", "NFLOG", *shlex.split(rule))[0] == 0
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1] == (
        '-A INPUT -j NFLOG --nflog-prefix "x y" --nflog-group 3 --nflog-size 0 --nflog-threshold 2')
    assert cli(tmp_path, "-L", "INPUT", "-n")[1].splitlines()[2].endswith(
        '0.0.0.0/0            nflog-prefix "x y" nflog-group 3 nflog-size 0 nflog-threshold 2')


def test_range_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-j", "NFLOG", "--nflog-range", "5")
    assert rc == 0
    assert RANGE_WARNING in err + capsys.readouterr().err
    assert cli(tmp_path, "-L", "INPUT", "-n")[1].splitlines()[2].endswith("0.0.0.0/0            nflog-range 5")
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-j", "NFLOG", "--nflog-size", "3", "--nflog-range", "5")
    assert rc == 2
    assert 'NFLOG: option "--nflog-range" cannot be used together with "--nflog-size".\n' in err


@pytest.mark.parametrize("rule,message", [
    ("--nflog-prefix 'a\nb'", "Newlines not allowed in --log-prefix"),
    ("--nflog-prefix ''", "Argument must have a minimum length of 1 characters\n"),
    ("--nflog-group 65536", 'NFLOG: bad value for option "--nflog-group", or out of range (0-65535).\n'),
])
def test_parameter_problems(tmp_path: Path, rule: str, message: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-j", "NFLOG", *shlex.split(rule))
    assert rc == 2
    assert err.startswith(f"pyfw v1.8.9 (legacy): {message}\n")
