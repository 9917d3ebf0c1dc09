"""packaging/pyfw.service: systemd takes it (systemd-analyze verify, when
there is one) and it runs the daemon as the README says."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "pyfw.service"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_structure() -> None:
    cp = _unit()
    svc = cp["Service"]
    assert svc["Type"] == "notify"  # the daemon sends READY=1 once its kernel rules are in
    start = svc["ExecStart"].split()
    assert start[0].startswith("/") and start[1:3] == ["daemon", "--nfqueue"]
    assert start[start.index("--socket") + 1] == "/run/pyfw/pyfw.sock"
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["RuntimeDirectory"] == "pyfw" and svc["KillSignal"] == "SIGTERM"
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    from pyfw.cli.main import DEFAULT_SOCKET
    from pyfw.daemon.main import _parser

    assert DEFAULT_SOCKET == "/run/pyfw/pyfw.sock"
    args = _parser().parse_args(start[2:])  # the daemon takes this command line
    assert args.nfqueue == 0 and args.ruleset == "/etc/pyfw/rules"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at a program that does
    text = UNIT.read_text().replace("ExecStart=/usr/local/bin/pyfw ", "ExecStart=/bin/true ")
    unit = tmp_path / "pyfw.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if "pyfw.service" in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
