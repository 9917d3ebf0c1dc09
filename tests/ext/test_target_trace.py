"""TRACE: libxt_TRACE.t; the kernel allows it in the raw table only."""

from __future__ import annotations

from pathlib import Path

from pyfw.cli.main import run


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


def test_raw(tmp_path: Path) -> None:
    """libxt_TRACE.t:3 in PREROUTING and OUTPUT."""
    for chain in ("PREROUTING", "OUTPUT"):
        assert cli(tmp_path, "-t", "raw", "-A", chain, "-j", "TRACE")[0] == 0
    assert cli(tmp_path, "-t", "raw", "-S")[1].splitlines()[2:] == [
        "-A PREROUTING -j TRACE", "-A OUTPUT -j TRACE"]
    lines = cli(tmp_path, "-t", "raw", "-L", "-n")[1].splitlines()
    assert lines[2] == "TRACE      0    --  0.0.0.0/0            0.0.0.0/0           "
    assert cli(tmp_path, "-t", "raw", "-D", "OUTPUT", "-j", "TRACE")[0] == 0


def test_other_tables(tmp_path: Path) -> None:
    einval = "pyfw: Invalid argument. Run `dmesg' for more information.\n"
    assert cli(tmp_path, "-A", "INPUT", "-j", "TRACE")[::2] == (1, einval)
    assert cli(tmp_path, "-t", "mangle", "-A", "PREROUTING", "-j", "TRACE")[::2] == (1, einval)


def test_no_options(tmp_path: Path) -> None:
    rc, _, err = cli(tmp_path, "-t", "raw", "-A", "OUTPUT", "-j", "TRACE", "--foo")
    assert rc == 2 and err.startswith('pyfw v1.8.9 (legacy): unknown option "--foo"\n')
