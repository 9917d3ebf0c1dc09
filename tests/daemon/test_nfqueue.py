"""`pyfw daemon --nfqueue` inline on a real gateway namespace.

lan (10.71.1.2) -- gw (10.71.1.1 | 203.0.113.1) -- wan (203.0.113.2); wan has
no route back to lan, so only MASQUERADE makes lan->wan work.  The daemon runs
in gw; real clients in lan/wan see what its verdicts do, and commands on its
socket change the live ruleset.  Traffic only between these namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces, iptables, NFQUEUE)", allow_module_level=True)
if shutil.which("iptables-legacy") is None or shutil.which("iptables-legacy-save") is None:
    pytest.skip("iptables-legacy not installed", allow_module_level=True)
# (the daemon reads the queue itself: pyfw.daemon.nfqnl; no C binding needed)

# answers every connection / datagram with the peer's address
SERVER = r"""
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, a = s.accept()
        try:
            c.sendall(f"{sys.argv[1]} {a[0]}\n".encode())
        finally:
            c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(2048); s.sendto(f"{sys.argv[1]} {a[0]}".encode(), a)
for p in map(int, sys.argv[2].split(",")):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
threading.Thread(target=udp, args=(5353,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# one TCP or UDP try; prints JSON {"ok": text} or {"error": kind}
CLIENT = r"""
import json, socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        print(json.dumps({"ok": s.recv(200).decode().strip()}))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b"hi", (host, port)); print(json.dumps({"ok": s.recv(200).decode()}))
except ConnectionRefusedError:
    print(json.dumps({"error": "refused"}))
except (socket.timeout, TimeoutError):
    print(json.dumps({"error": "timeout"}))
"""


def sh(*cmd: str, check: bool = True, ns: str | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=30, **kw)  # type: ignore[call-overload, no-any-return]


class Lab:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.lan, self.gw, self.wan = f"pyfw-dl-{tag}", f"pyfw-dg-{tag}", f"pyfw-dw-{tag}"
        self.gl, self.gwn = f"pd{tag}l", f"pd{tag}w"     # gw's interfaces
        self.procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", self.gl, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", self.gwn, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        for ns, dev, addr in ((self.lan, "eth0", "10.71.1.2/24"), (self.gw, self.gl, "10.71.1.1/24"),
                              (self.gw, self.gwn, "203.0.113.1/24"), (self.wan, "eth0", "203.0.113.2/24")):
            sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "10.71.1.1", ns=self.lan)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)

    def spawn(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p  # type: ignore[no-any-return]

    def server(self, ns: str, name: str, ports: str) -> None:
        p = self.spawn(ns, PY, "-c", SERVER, name, ports, stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def client(lab: Lab, ns: str, proto: str, host: str, port: int, timeout: float = 2.0) -> dict[str, str]:
    out = sh(PY, "-c", CLIENT, proto, host, str(port), str(timeout), ns=ns).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def pyfw(lab: Lab, sock: str, *args: str, prog: str = "pyfw", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command line `prog --socket SOCK ARGS` as a separate client process."""
    code = f"import sys; from pyfw.cli.main import run; r = run({[prog, '--socket', sock, *args]!r}); " \
           "sys.stdout.write(r.out); sys.stderr.write(r.err); sys.exit(r.rc)"
    return sh(PY, "-c", code, ns=lab.gw, check=False, cwd=str(ROOT), input=stdin or "")


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def ruleset(lab: Lab) -> str:
    return f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i {lab.gwn} -p tcp --dport 8080 -j DNAT --to-destination 10.71.1.2:80
-A POSTROUTING -o {lab.gwn} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i {lab.gl} -p tcp --dport 81 -j REJECT --reject-with tcp-reset
-A FORWARD -i {lab.gl} -p tcp --dport 82 -j DROP
-A FORWARD -i {lab.gl} -j ACCEPT
-A FORWARD -i {lab.gwn} -d 10.71.1.2 -p tcp --dport 80 -j ACCEPT
COMMIT
"""


def start_daemon(lab: Lab, tmp: Path, rules_file: Path, sock: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pyfw_script = Path(PY).parent / "pyfw"
    cmd = [str(pyfw_script), "daemon"] if pyfw_script.exists() else [PY, "-m", "pyfw.daemon"]
    p = lab.spawn(lab.gw, *cmd, "--nfqueue", "7", "--ruleset", str(rules_file),
                  "--socket", sock, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError(f"daemon exited {p.returncode}: {p.stderr.read() if p.stderr else ''}")
        if os.path.exists(sock) and pyfw(lab, sock, "-S").returncode == 0:
            return p
        time.sleep(0.1)
    raise AssertionError("daemon did not come up")


def save_gw(lab: Lab) -> str:
    return "".join(line for line in sh("iptables-legacy-save", ns=lab.gw).stdout.splitlines(True)
                   if not line.startswith("#"))


def test_gateway(lab: Lab, tmp_path: Path) -> None:
    lab.server(lab.wan, "wan", "80,81,82,83")
    lab.server(lab.lan, "lan", "80")
    # someone else's rule that must survive, and the raw table loaded before
    sh("iptables-legacy", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9", "-j", "ACCEPT", ns=lab.gw)
    sh("iptables-legacy", "-t", "mangle", "-S", ns=lab.gw)
    before = save_gw(lab)
    rules_file = tmp_path / "rules"
    rules_file.write_text(ruleset(lab))
    sock = str(tmp_path / "pyfw.sock")
    d = start_daemon(lab, tmp_path, rules_file, sock)
    try:
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        assert "pyfw-daemon queue 7" in save_gw(lab)
        # MASQUERADE: wan sees the gateway's address, for TCP and UDP; ICMP passes
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
        assert client(lab, lab.lan, "udp", "203.0.113.2", 5353) == {"ok": "wan 203.0.113.1"}
        assert sh("ping", "-c", "1", "-W", "2", "203.0.113.2", ns=lab.lan, check=False).returncode == 0
        # the gateway itself: its own pings out (OUTPUT) and answers to pings (INPUT)
        assert sh("ping", "-c", "1", "-W", "2", "203.0.113.2", ns=lab.gw, check=False).returncode == 0
        assert sh("ping", "-c", "1", "-W", "2", "10.71.1.1", ns=lab.lan, check=False).returncode == 0
        # DNAT port forward: wan reaches the lan server, which sees wan's address
        assert client(lab, lab.wan, "tcp", "203.0.113.1", 8080) == {"ok": "lan 203.0.113.2"}
        # REJECT tcp-reset: refused; DROP: timeout
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 81) == {"error": "refused"}
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 82, timeout=1.0) == {"error": "timeout"}
        # live changes act on the next connection
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 83) == {"ok": "wan 203.0.113.1"}
        r = pyfw(lab, sock, "-I", "FORWARD", "2", "-i", lab.gl, "-p", "tcp", "--dport", "83",
                 "-j", "REJECT", "--reject-with", "tcp-reset")
        assert r.returncode == 0, r.stderr
        assert f"-A FORWARD -i {lab.gl} -p tcp -m tcp --dport 83 -j REJECT --reject-with tcp-reset" \
            in pyfw(lab, sock, "-S", "FORWARD").stdout
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 83) == {"error": "refused"}
        r = pyfw(lab, sock, "-D", "FORWARD", "2")
        assert r.returncode == 0, r.stderr
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 83) == {"ok": "wan 203.0.113.1"}
        # counters are live: the MASQUERADE rule counted the connections
        listing = pyfw(lab, sock, "-t", "nat", "-L", "POSTROUTING", "-n", "-v", "-x").stdout
        assert int(listing.splitlines()[2].split()[0]) >= 3, listing
        # a bad command answers with iptables' message and changes nothing
        rules_before = pyfw(lab, sock, "-S").stdout
        r = pyfw(lab, sock, "-A", "NOPE", "-j", "ACCEPT")
        assert r.returncode == 1 and "No chain/target/match by that name" in r.stderr, r.stderr
        assert pyfw(lab, sock, "-S").stdout == rules_before
        # the console script reaches the daemon the same way
        script = Path(PY).parent / "pyfw"
        if script.exists():
            assert sh(str(script), "--socket", sock, "-S", "FORWARD", ns=lab.gw).stdout == \
                pyfw(lab, sock, "-S", "FORWARD").stdout
        # the kernel's own conntrack stays out of the traffic pyfw handles
        if shutil.which("conntrack"):
            r = sh("conntrack", "-C", ns=lab.gw, check=False)
            assert (r.returncode, r.stdout.strip()) == (0, "0"), (r.returncode, r.stdout, r.stderr)
        # a restore through the socket changes the live ruleset at once
        r = pyfw(lab, sock, "--noflush", prog="pyfw-restore",
                 stdin=f"*filter\n-I FORWARD 1 -i {lab.gl} -p tcp --dport 80 -j REJECT --reject-with tcp-reset\nCOMMIT\n")
        assert r.returncode == 0, r.stderr
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"error": "refused"}
        save = pyfw(lab, sock, prog="pyfw-save")
        assert save.returncode == 0 and "MASQUERADE" in save.stdout and "--dport 80 -j REJECT" in save.stdout
        # SIGHUP reloads the file, replacing the live changes
        d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "--dport 80 -j REJECT" in pyfw(lab, sock, "-S").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
    finally:
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=10)
        log = d.stderr.read() if d.stderr else ""
        if os.environ.get("PYFW_DAEMON_DEBUG"):
            print(log)
    assert rc == 0, log
    assert save_gw(lab) == before
    assert not os.path.exists(sock)


def test_bad_ruleset_touches_nothing(lab: Lab, tmp_path: Path) -> None:
    sh("iptables-legacy", "-t", "raw", "-S", ns=lab.gw)
    sh("iptables-legacy", "-t", "mangle", "-S", ns=lab.gw)
    before = save_gw(lab)
    bad = tmp_path / "bad"
    bad.write_text("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    sock = str(tmp_path / "s")
    r = sh(PY, "-m", "pyfw.daemon", "--nfqueue", "8", "--ruleset", str(bad), "--socket", sock,
           ns=lab.gw, check=False, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2, r.stderr
    assert "Error occurred at line: 2" in r.stderr
    assert save_gw(lab) == before and not os.path.exists(sock)

