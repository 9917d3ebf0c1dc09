"""The commands as a user runs them: file store, messages, all-or-nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pyfw.cli.main import run

VENV_BIN = Path(sys.executable).parent


def pyfw(path: Path, *args: str) -> tuple[int, str, str]:
    r = run(["pyfw", "--file", str(path), *args])
    return r.rc, r.out, r.err


def test_readme_example(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    assert pyfw(f, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")[0] == 0
    rc, out, _ = pyfw(f, "-S")
    assert rc == 0
    assert out == ("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
                   "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n")


def test_missing_file_is_an_empty_ruleset(tmp_path: Path) -> None:
    rc, out, _ = pyfw(tmp_path / "none.rules", "-t", "nat", "-S")
    assert rc == 0
    assert out == "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"


def test_no_ruleset_named_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYFW_FILE", raising=False)
    monkeypatch.setenv("PYFW_SOCKET", "/nonexistent/pyfw.sock")
    r = run(["pyfw", "-S"])
    assert r.rc != 0
    assert "--file" in r.err and "--socket" in r.err


def test_pyfw_file_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "env.rules"
    monkeypatch.setenv("PYFW_FILE", str(f))
    assert run(["pyfw", "-N", "x"]).rc == 0
    assert "-N x\n" in run(["pyfw", "-S"]).out


def test_errors_as_iptables(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    rc, _, err = pyfw(f, "-A", "INPUT", "-p", "tcp", "--dprot", "22")
    assert rc == 2
    assert err == ('pyfw v1.8.9 (legacy): unknown option "--dprot"\n'
                   "Try `pyfw -h' or 'pyfw --help' for more information.\n")
    rc, _, err = pyfw(f, "-D", "INPUT", "-j", "ACCEPT")
    assert (rc, err) == (1, "pyfw: Bad rule (does a matching rule exist in that chain?).\n")
    rc, _, err = pyfw(f, "-A", "INPUT", "-j", "DNAT", "--to-destination", "1.2.3.4")
    assert (rc, err) == (1, "pyfw: Invalid argument. Run `dmesg' for more information.\n")
    assert not f.exists() or "DNAT" not in f.read_text()


def test_check_command(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    pyfw(f, "-A", "INPUT", "-s", "10.0.0.0/8", "-j", "DROP")
    assert pyfw(f, "-C", "INPUT", "-s", "10.0.0.0/8", "-j", "DROP")[0] == 0
    assert pyfw(f, "-C", "INPUT", "-s", "10.0.0.0/9", "-j", "DROP")[0] == 1


def test_restore_is_all_or_nothing(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    pyfw(f, "-A", "INPUT", "-j", "ACCEPT")
    before = f.read_text()
    bad = "*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\nCOMMIT\n*nat\n-A PREROUTING --bogus\nCOMMIT\n"
    r = run(["pyfw-restore", "--file", str(f)], stdin=bad)
    assert r.rc == 2
    assert "Error occurred at line: 6" in r.err
    assert f.read_text() == before
    assert pyfw(f, "-S", "INPUT")[1] == "-P INPUT ACCEPT\n-A INPUT -j ACCEPT\n"


def test_restore_messages(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    r = run(["pyfw-restore", "--file", str(f)], stdin="*filter\n-A INPUT -j ACCEPT\n")
    assert (r.rc, r.err) == (1, "pyfw-restore: COMMIT expected at line 3\n")
    r = run(["pyfw-restore", "--file", str(f)], stdin="-A INPUT -j ACCEPT\n")
    assert (r.rc, r.err) == (1, "pyfw-restore: line 1 failed\n")
    r = run(["pyfw-restore", "--file", str(f)], stdin="*filter\n-A INPUT -j DNAT --to-destination 1.1.1.1\nCOMMIT\n")
    assert (r.rc, r.err) == (1, "pyfw-restore: line 3 failed\n")


def test_restore_counters_and_save(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    text = "*filter\n:INPUT DROP [5:500]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n[3:180] -A INPUT -j ACCEPT\nCOMMIT\n"
    assert run(["pyfw-restore", "--file", str(f), "-c"], stdin=text).rc == 0
    out = run(["pyfw-save", "--file", str(f), "-c"]).out
    body = [line for line in out.splitlines(True) if not line.startswith("#")]
    assert "".join(body) == text
    # without -c restore ignores the counters
    assert run(["pyfw-restore", "--file", str(f)], stdin=text).rc == 0
    assert "[0:0] -A INPUT -j ACCEPT" in run(["pyfw-save", "--file", str(f), "-c"]).out


def test_cache_is_keyed_by_content(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    pyfw(f, "-A", "INPUT", "-j", "ACCEPT")
    assert (tmp_path / ".fw.rules.pyfwcache").exists()
    # an edit by hand invalidates the cache
    f.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n")
    assert pyfw(f, "-S", "INPUT")[1] == "-P INPUT ACCEPT\n-A INPUT -j DROP\n"


def test_concurrent_commands_serialise(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    exe = VENV_BIN / "pyfw"
    if not exe.exists():
        pytest.skip("pyfw console script not installed in this environment")

    def add(i: int) -> int:
        return subprocess.run([str(exe), "--file", str(f), "-A", "INPUT", "-s", f"10.0.0.{i}", "-j", "ACCEPT"],
                              capture_output=True).returncode

    with ThreadPoolExecutor(8) as pool:
        assert all(rc == 0 for rc in pool.map(add, range(1, 25)))
    out = pyfw(f, "-S", "INPUT")[1]
    assert sorted(out.splitlines()[1:]) == sorted(f"-A INPUT -s 10.0.0.{i}/32 -j ACCEPT" for i in range(1, 25))


def test_save_writes_outfile(tmp_path: Path) -> None:
    f = tmp_path / "fw.rules"
    pyfw(f, "-N", "chain1")
    out = tmp_path / "dump.txt"
    r = run(["pyfw-save", "--file", str(f), "-f", str(out)])
    assert r.rc == 0 and r.out == ""
    assert ":chain1 - [0:0]" in out.read_text()


def test_console_scripts_exit_codes(tmp_path: Path) -> None:
    exe = VENV_BIN / "pyfw"
    if not exe.exists():
        pytest.skip("pyfw console script not installed in this environment")
    f = tmp_path / "fw.rules"
    p = subprocess.run([str(exe), "--file", str(f), "-A", "INPUT", "--nope"], capture_output=True, text=True,
                       env={**os.environ})
    assert p.returncode == 2
    assert 'unknown option "--nope"' in p.stderr
