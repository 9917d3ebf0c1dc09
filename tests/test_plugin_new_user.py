"""pyfw tried as a new user would (issue 4, "must hold" 1).

In an empty folder outside the repository, with pyfw installed from this
checkout into a fresh virtual environment (`pip install <checkout>[testing]`,
about 10 s with the local package index), a 15-line test file against a
shipped ruleset and a pcap fixture runs with plain `pytest` (the console
script of that environment, no options, no conftest) and passes; the same
file with one wrong expectation fails, and the failure shows the packet,
the verdict and the trace with file:line of every rule it passed.

If the fresh environment cannot be built here (no package index), the
repository's own environment is used instead, where pyfw is installed from
the checkout in editable mode with the same `pytest11` entry point; the
test says so in its output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TEST_FILE = """\
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

RULES, HOST = "home-gateway.rules", "home-gateway.toml"
INTERNET = Ether(src="02:00:00:00:02:fe")        # the ISP's router


def test_port_forward(firewall):
    fw = firewall(RULES, host=HOST)
    syn, synack, *rest = fw.replay("port-forward.pcapng")
    assert syn.out == "eth0" and synack.out == "eth1"
    assert [o.verdict for o in rest] == ["ACCEPT", "ACCEPT", "ACCEPT", "DROP"]


def test_ssh_from_the_internet(firewall):
    fw = firewall(RULES, host=HOST)
    fw.assert_rejected(INTERNET / IP(src="192.0.2.99", dst="203.0.113.2") / TCP(dport=22, flags="S"), "eth1")
"""

WRONG = TEST_FILE.replace(
    'fw.assert_rejected(INTERNET / IP(src="192.0.2.99", dst="203.0.113.2") / TCP(dport=22, flags="S"), "eth1")',
    'fw.assert_dropped(INTERNET / IP(src="192.0.2.99", dst="203.0.113.2") / TCP(dport=8080, flags="S"), "eth1")')


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(bin directory with python and pytest, how it was made)."""
    venv = tmp_path_factory.mktemp("newuser-venv")
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120)
    if made.returncode == 0:
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", f"{ROOT}[testing]"],
                             capture_output=True, text=True, timeout=600)
        if pip.returncode == 0:
            yield venv / "bin", "a fresh venv with pip install <checkout>[testing]"
            shutil.rmtree(venv, ignore_errors=True)
            return
        reason = pip.stderr.strip().splitlines()[-1:] or ["pip failed"]
    else:
        reason = [made.stderr.strip()]
    yield Path(sys.executable).parent, f"the repository's venv (fresh venv failed: {reason[0]})"


def _project(where: Path, test_text: str) -> None:
    where.mkdir()
    shutil.copy(ROOT / "rulesets" / "home-gateway.rules", where / "home-gateway.rules")
    shutil.copy(ROOT / "tests" / "rulesets" / "home-gateway.toml", where / "home-gateway.toml")
    shutil.copy(ROOT / "tests" / "rulesets" / "fixtures" / "home-gateway-port-forward.pcapng",
                where / "port-forward.pcapng")
    (where / "test_gateway.py").write_text(test_text)


def _pytest(bindir: Path, where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bindir / "pytest")], cwd=where, capture_output=True, text=True, timeout=300,
                          env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(where)})


def test_a_new_user_writes_a_test_file(tmp_path: Path, user_env: tuple[Path, str]) -> None:
    bindir, how = user_env
    print(f"pyfw installed in {how}")
    assert not tmp_path.resolve().is_relative_to(ROOT)
    assert len(TEST_FILE.splitlines()) <= 17
    where = tmp_path / "my-firewall"
    _project(where, TEST_FILE)
    found = subprocess.run([str(bindir / "python"), "-c", "import pyfw, scapy; print(pyfw.__file__)"],
                           cwd=where, capture_output=True, text=True, timeout=60,
                           env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(where)})  # a user's: no PYTHONPATH
    assert found.returncode == 0, found.stderr
    if how.startswith("a fresh venv"):
        assert not Path(found.stdout.strip()).resolve().is_relative_to(ROOT), found.stdout   # not the checkout

    ok = _pytest(bindir, where)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 passed" in ok.stdout

    wrong = tmp_path / "wrong"
    _project(wrong, WRONG)
    bad = _pytest(bindir, wrong)
    out = bad.stdout
    print(out)
    assert bad.returncode == 1, out + bad.stderr
    assert "1 failed, 1 passed" in out
    assert "FirewallAssertion: expected the frame to be dropped" in out
    # the packet in one line, what happened, and every rule it passed with file:line
    assert "TCP 192.0.2.99:20 > 203.0.113.2:8080 [S] on eth1 at t=0: verdict ACCEPT, path forward, out eth0" in out
    assert "nat:PREROUTING:1" in out and "home-gateway.rules:11" in out
    assert "-A PREROUTING -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80" in out
    assert "filter:FORWARD:3" in out and "home-gateway.rules:32" in out
    assert "sent on eth0: TCP 192.0.2.99:20 > 192.168.1.10:80 [S]" in out
    assert "test_gateway.py:17" in out                  # pytest points at the user's line, not into pyfw
    assert "pyfw/testing/firewall.py" not in out


def test_the_test_file_is_about_15_lines() -> None:
    assert 12 <= len([line for line in TEST_FILE.splitlines() if line.strip()]) <= 15
    assert textwrap.dedent(TEST_FILE) == TEST_FILE
