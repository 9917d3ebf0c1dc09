"""The wheel as users install it: built with the compiled data path
(hatch_build.py), installed into a fresh venv outside the checkout, run from
a directory where the checkout is not importable."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from pyfw import _native
from tests.hosts import LAN_MAC, gateway_host

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs a C compiler"),
]


def write_pcap(path: Path) -> None:
    """A LAN host's TCP SYN to the Internet and its ping of the gateway."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    eth = Ether(src="02:00:00:00:00:05", dst=LAN_MAC)
    wrpcap(str(path), [eth / IP(src="192.168.1.5", dst="8.8.8.8") / TCP(sport=40000, dport=80, flags="S"),
                       eth / IP(src="192.168.1.5", dst="192.168.1.1") / ICMP(id=7, seq=1) / b"ping"])


HOST = gateway_host()


def _clean_env() -> dict[str, str]:
    """The environment without this checkout on the import path."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYFW_", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                       capture_output=True, text=True, env=_clean_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (whl,) = out.glob("pyfw-*.whl")
    return whl


def test_wheel_is_platform_tagged_and_complete(wheel: Path) -> None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"pyfw-0.1.0-{tag}-{tag}-linux_"), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    ext = importlib.machinery.EXTENSION_SUFFIXES[0]  # .cpython-311-x86_64-linux-gnu.so
    compiled = {n for n in names if n.endswith(".so")}
    runtime = {n for n in compiled if "/" not in n and "__mypyc" in n}
    assert len(runtime) == 1  # mypyc's runtime library, at the top of site-packages
    modules = {_native.source_path(m).relative_to(REPO).with_suffix("").as_posix() for m in _native.NATIVE_MODULES}
    assert {n[: -len(ext)] for n in compiled - runtime} == modules  # exactly NATIVE_MODULES
    assert {f"{m}.py" for m in modules} <= names  # the sources stay (tracebacks, the fallback)
    assert {"pyfw/grammar/iptables.lark", "pyfw/_native.json"} <= names
    manifest = json.loads(zipfile.ZipFile(wheel).read("pyfw/_native.json"))
    assert set(manifest["modules"]) == set(_native.NATIVE_MODULES)


def test_installed_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    v = tmp_path / "v"
    venv.EnvBuilder(with_pip=True).create(v)
    py, env = v / "bin" / "python", _clean_env()
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = tmp_path / "run"
    run.mkdir()

    def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=env, cwd=run)

    p = sh(str(py), "-c", "import json, pyfw; from pyfw._native import native_status; "
           "print(json.dumps([pyfw.__file__, native_status()]))")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    where, status = json.loads(p.stdout)
    assert Path(where).is_relative_to(v) and not Path(where).is_relative_to(REPO)
    assert status == {m: "compiled" for m in _native.NATIVE_MODULES}
    # the grammar ships inside: a ruleset file is parsed and listed
    rules = run / "fw.rules"
    pyfw = str(v / "bin" / "pyfw")
    assert sh(pyfw, "--version").returncode == 0
    p = sh(pyfw, "--file", str(rules), "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    assert p.returncode == 0, p.stderr
    p = sh(pyfw, "--file", str(rules), "-L", "INPUT", "-n")
    assert p.returncode == 0 and "tcp dpt:22" in p.stdout, p.stdout + p.stderr
    # simulate, compiled engine: the SYN is forwarded and masqueraded, the ping answered
    shutil.copy(REPO / "rulesets" / "home-gateway.rules", run / "gw.rules")
    (run / "host.toml").write_text(HOST)
    write_pcap(run / "in.pcap")
    p = sh(pyfw, "simulate", "--ruleset", "gw.rules", "--host", "host.toml", "--pcap", "in.pcap", "--iface", "eth0",
           "--json", "--out-dir", "out")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["verdict"], r["path"], r["out"], r["emitted"]) for r in rows] == [
        ("ACCEPT", "forward", "eth1", 1), ("ACCEPT", "input", None, 1)]
    eth1 = (run / "out" / "eth1.pcap").read_bytes()
    assert bytes([203, 0, 113, 1]) in eth1[24 + 16 + 14 + 12: 24 + 16 + 14 + 16]  # the masqueraded source


def test_no_compiler_fails_clearly(tmp_path: Path) -> None:
    env = dict(_clean_env(), CC="/nonexistent/cc")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0
    assert "needs a C compiler" in p.stdout + p.stderr and "PYFW_BUILD_NATIVE=0" in p.stdout + p.stderr
