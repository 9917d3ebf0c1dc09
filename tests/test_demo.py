"""scripts/demo.sh, the README's first command: a live pyfw gateway on
namespaces, real traffic through it, then nothing left behind.

The demo runs with this interpreter's environment (setup skipped: the suite
has installed it).  Each step prints one line; the assertions read those
lines, the counters the daemon listed, and the machine afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracle import root_netns_problem

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.sh"

_problem = root_netns_problem()
if _problem is None:
    for tool in ("curl", "ping", "nc", "ss"):
        if shutil.which(tool) is None:
            _problem = f"{tool} not installed (scripts/setup.sh --demo installs it)"
pytestmark = [pytest.mark.root, pytest.mark.skipif(_problem is not None, reason=str(_problem))]

STEPS = ("HTTP", "DNS/UDP", "ping", "refused", "forward", "stop")


def _env() -> dict[str, str]:
    return dict(os.environ, PYFW_DEMO_SKIP_SETUP="1", PYFW_VENV=str(Path(sys.executable).parent.parent),
                PYTHONPATH=str(ROOT))


def _demo_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("pyfw-demo-")]


def _root_rules() -> str:
    """The root namespace's tables without comments and counters (other
    traffic on the machine moves the counters, not the rules)."""
    out = subprocess.run(["iptables-legacy-save"], capture_output=True, text=True).stdout
    lines = (line for line in out.splitlines(True) if not line.startswith("#"))
    return "".join(re.sub(r"^(:\S+ \S+) \[\d+:\d+\]", r"\1", re.sub(r"^\[\d+:\d+\] ", "", line)) for line in lines)


def _leftovers(pid: int) -> list[str]:
    return [ns for ns in _demo_namespaces() if ns.endswith(f"-{pid}")]


def test_demo_runs_every_step_and_cleans_up() -> None:
    rules_before = _root_rules()
    p = subprocess.Popen(["bash", str(DEMO)], cwd=ROOT, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=60)  # the bound on its time (a few seconds alone; the machine may be loaded)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=15)
    assert p.returncode == 0, out
    lines = out.splitlines()
    ok = {m.group(1): line for line in lines if (m := re.match(r"\[ ok \] (\S+)", line))}
    assert set(ok) == set(STEPS), out
    assert not any(line.startswith("[FAIL]") for line in lines), out
    assert "the server saw 203.0.113.2 (MASQUERADE)" in ok["HTTP"]
    assert "answer 198.51.100.80, asked by 203.0.113.2" in ok["DNS/UDP"]
    assert "3 of 3 echo replies" in ok["ping"]
    assert "connection refused" in ok["refused"]
    assert "DNAT to 192.168.1.10:80, which saw 203.0.113.1" in ok["forward"]
    assert "demo: all steps worked" in lines
    # the daemon's own counters, listed through its socket
    masq = next(line for line in lines if "MASQUERADE" in line and "eth1" in line)
    assert int(masq.split()[0]) >= 3, masq          # HTTP, UDP and ping connections
    dnat = next(line for line in lines if " DNAT " in line and "dpt:8080" in line)
    assert int(dnat.split()[0]) == 1, dnat
    reject = next(line for line in lines if " REJECT " in line and line.endswith("reject-with tcp-reset"))
    assert int(reject.split()[0]) >= 1, reject
    # the connection table, as conntrack -L prints it: the masqueraded DNS query, the port forward
    assert any(line.startswith("udp ") and "dport=53 src=203.0.113.1 dst=203.0.113.2" in line for line in lines), out
    assert any(line.startswith("tcp ") and "dport=8080 src=192.168.1.10 dst=203.0.113.1 sport=80" in line
               for line in lines), out
    assert any(line.startswith("pyfw daemon: stopped") for line in lines), out
    # nothing left: the namespaces of this run, and the root namespace's tables untouched
    assert _leftovers(p.pid) == []
    assert _root_rules() == rules_before


def _default_sigint() -> None:
    # as in a terminal: a suite started in the background (`cmd &`) has
    # SIGINT ignored, and a shell cannot trap a signal ignored at its entry
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_cleans_up() -> None:
    p = subprocess.Popen(["bash", str(DEMO)], cwd=ROOT, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                         preexec_fn=_default_sigint)
    seen: list[str] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            seen.append(line)
            if line.startswith("[ ok ] HTTP") or line.startswith("[FAIL]"):
                break
        assert _leftovers(p.pid), "the demo's namespaces should exist while it runs"
        os.killpg(p.pid, signal.SIGINT)                  # what Ctrl-C does in a terminal
        rest, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=15)
    out = "".join(seen) + rest
    assert p.returncode != 0, out
    assert "demo: interrupted" in out and "cleanup: namespaces" in out, out
    assert _leftovers(p.pid) == []
