"""`pyfw daemon --nfqueue NUM --workers N` on a real gateway namespace.

lan (10.73.1.2, .3) -- gw (10.73.1.1 | 203.0.113.1) -- wan (203.0.113.2-.9);
gw's default route points into wan, so that is the outside.  Many TCP and
UDP connections lan->wan through MASQUERADE and a DNAT port forward
wan->lan, spread over the workers by the steering rules: each must be
served completely (a worker that did not know a connection would drop or
reset it), every worker's queue must have seen packets, the counters on
the socket must add up to what the kernel queued, and a restore must
reach every worker.  Traffic only between these namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyfw.daemon.steer import bucket

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
QUEUE = 21
WORKERS = int(os.environ.get("PYFW_TEST_WORKERS", "2"))
WAN = [f"203.0.113.{i}" for i in range(2, 10)]
FAR_NET = "198.51.100"

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces, iptables, NFQUEUE)", allow_module_level=True)
if shutil.which("iptables-legacy") is None or shutil.which("iptables-legacy-save") is None:
    pytest.skip("iptables-legacy not installed", allow_module_level=True)
# (the daemon reads the queue itself: pyfw.daemon.nfqnl; no C binding needed)

# TCP: sends NAME PEER and then 6000 bytes; UDP on each address (replies come from it)
SERVER = r"""
import socket, sys, threading
name, addrs = sys.argv[1], sys.argv[2].split(",")
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80)); s.listen(64)
    while True:
        c, a = s.accept()
        try:
            c.recv(100); c.sendall(f"{name} {a[0]}\n".encode() + b"x" * 6000)
        except OSError:
            pass
        finally:
            c.close()
def udp(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, 5353))
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(f"{name} {a[0]}".encode() + (b"y" * 3000 if d.startswith(b"big") else b""), a)
threading.Thread(target=tcp, daemon=True).start()
for a in addrs:
    threading.Thread(target=udp, args=(a,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# CONNS connections per (proto, target) from the given sources, 8 at a time;
# prints {"ok": [peer texts], "errors": [kinds]}
CLIENT = r"""
import errno, json, socket, sys
from concurrent.futures import ThreadPoolExecutor
jobs = json.loads(sys.argv[1])
def one(job):
    proto, src, host, port, *rest = job
    timeout = rest[0] if rest else 3
    try:
        if proto == "tcp":
            s = socket.socket(); s.settimeout(timeout); s.bind((src, 0)); s.connect((host, port))
            s.sendall(b"hi"); data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            s.close()
            head, _, rest = data.partition(b"\n")
            return "ok", head.decode() if len(rest) == 6000 else f"short {len(rest)}"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout); s.bind((src, 0))
        s.connect((host, port))
        if proto == "big":  # fragmented both ways
            s.send(b"big" + b"z" * 3000); data = s.recv(65536)
            return "ok", data[:-3000].decode() if data.endswith(b"y" * 3000) else f"short {len(data)}"
        s.send(b"hi"); return "ok", s.recv(200).decode()
    except ConnectionRefusedError:
        return "error", "refused"
    except ConnectionResetError:
        return "error", "reset"
    except (socket.timeout, TimeoutError):
        return "error", "timeout"
    except OSError as exc:
        return "error", errno.errorcode.get(exc.errno or 0, str(exc))
with ThreadPoolExecutor(8) as ex:
    res = list(ex.map(one, jobs))
print(json.dumps({"ok": [r for k, r in res if k == "ok"], "errors": [r for k, r in res if k == "error"]}))
"""


def sh(*cmd: str, check: bool = True, ns: str | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


class Lab:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.lan, self.gw, self.wan = f"pyfw-wl-{tag}", f"pyfw-wg-{tag}", f"pyfw-ww-{tag}"
        self.gl, self.gwn = f"pw{tag}l", f"pw{tag}w"
        self.procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", self.gl, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", self.gwn, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        addrs = [(self.lan, "eth0", "10.73.1.2/24"), (self.lan, "eth0", "10.73.1.3/24"),
                 (self.gw, self.gl, "10.73.1.1/24"), (self.gw, self.gwn, "203.0.113.1/24"),
                 *((self.wan, "eth0", f"{a}/24") for a in WAN)]
        for ns, dev, addr in addrs:
            sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
        for ns, dev in ((self.lan, "eth0"), (self.gw, self.gl), (self.gw, self.gwn), (self.wan, "eth0")):
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "10.73.1.1", ns=self.lan)
        sh("ip", "route", "add", "default", "via", "203.0.113.2", ns=self.gw)  # the outside
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)
        sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=self.wan)  # its port unreachables, all of them
        # wan is also a router that refuses to forward to FAR: its errors come
        # from 203.0.113.2, not from the address the connection went to
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.wan)
        sh("ip", "route", "add", f"{FAR_NET}.0/24", "dev", "lo", ns=self.wan)
        sh("iptables-legacy", "-A", "FORWARD", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited", ns=self.wan)

    def spawn(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p  # type: ignore[no-any-return]

    def server(self, ns: str, name: str, addrs: list[str]) -> None:
        p = self.spawn(ns, PY, "-c", SERVER, name, ",".join(addrs), stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def clients(lab: Lab, ns: str, jobs: list[tuple[str, str, str, int]] | list[tuple[str, str, str, int, float]]
            ) -> dict[str, list[str]]:
    return json.loads(sh(PY, "-c", CLIENT, json.dumps(jobs), ns=ns).stdout)  # type: ignore[no-any-return]


def pyfw(lab: Lab, sock: str, *args: str, prog: str = "pyfw", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    code = f"import sys; from pyfw.cli.main import run; r = run({[prog, '--socket', sock, *args]!r}); " \
           "sys.stdout.write(r.out); sys.stderr.write(r.err); sys.exit(r.rc)"
    return sh(PY, "-c", code, ns=lab.gw, check=False, cwd=str(ROOT), input=stdin or "")


def save_gw(lab: Lab) -> str:
    return "".join(line for line in sh("iptables-legacy-save", ns=lab.gw).stdout.splitlines(True)
                   if not line.startswith("#"))


def queued(lab: Lab) -> dict[int, int]:
    """Packets the kernel handed to each queue so far (nfnetlink_queue's id sequence)."""
    text = sh("cat", "/proc/net/netfilter/nfnetlink_queue", ns=lab.gw).stdout
    return {int(f[0]): int(f[7]) for f in (line.split() for line in text.splitlines()) if len(f) >= 8}


def kernel_requeued(lab: Lab) -> int:
    """Packets queued a second time at mangle POSTROUTING (their rewrite waited there)."""
    out = sh("iptables-legacy", "-t", "mangle", "-L", "POSTROUTING", "-n", "-v", "-x", ns=lab.gw).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[2:] if "NFQUEUE" in line)


def first_rule_packets(lab: Lab, sock: str, table: str, chain: str) -> int:
    listing = pyfw(lab, sock, "-t", table, "-L", chain, "-v", "-x", "-n").stdout
    return int(listing.splitlines()[2].split()[0])


def ruleset(lab: Lab, reject_wan_tcp: bool = False) -> str:
    reject = f"-A FORWARD -i {lab.gl} -p tcp --dport 80 -j REJECT --reject-with tcp-reset\n" if reject_wan_tcp else ""
    return f"""*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING
-A OUTPUT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i {lab.gwn} -p tcp --dport 8080 -j DNAT --to-destination 10.73.1.2:80
-A POSTROUTING -o {lab.gwn} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
{reject}-A FORWARD -i {lab.gl} -j ACCEPT
-A FORWARD -i {lab.gwn} -d 10.73.1.2 -p tcp --dport 80 -j ACCEPT
COMMIT
"""


def start_daemon(lab: Lab, rules_file: Path, sock: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = lab.spawn(lab.gw, PY, "-m", "pyfw.daemon", "--nfqueue", str(QUEUE), "--workers", str(WORKERS),
                  "--ruleset", str(rules_file), "--socket", sock, *extra,
                  stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError(f"daemon exited {p.returncode}: {p.stderr.read() if p.stderr else ''}")
        if os.path.exists(sock) and pyfw(lab, sock, "-S").returncode == 0:
            return p
        time.sleep(0.1)
    raise AssertionError("daemon did not come up")


def lan_jobs(n: int) -> list[tuple[str, str, str, int]]:
    return [(proto, f"10.73.1.{2 + i % 2}", WAN[i % len(WAN)], 80 if proto == "tcp" else 5353)
            for i in range(n) for proto in ("tcp", "udp")]


def accept_local(lab: Lab) -> int:
    return int(sh("sysctl", "-n", "net.ipv4.conf.all.accept_local", ns=lab.gw).stdout)


@pytest.mark.parametrize("passes", ["one", "two"])
def test_workers_share_the_connections(lab: Lab, tmp_path: Path, passes: str) -> None:
    """`passes`: source NAT in one pass through the queue (accept_local set
    while the daemon runs), or in two (--nat-two-pass: the rewrite waits for
    mangle POSTROUTING, the packet steered back to its worker by its mark)."""
    lab.server(lab.wan, "wan", WAN)
    lab.server(lab.lan, "lan", ["10.73.1.2"])
    for table in ("raw", "mangle"):
        sh("iptables-legacy", "-t", table, "-S", ns=lab.gw)
    before = save_gw(lab)
    rules_file = tmp_path / "rules"
    rules_file.write_text(ruleset(lab))
    sock = str(tmp_path / "pyfw.sock")
    d = start_daemon(lab, rules_file, sock, *(["--nat-two-pass"] if passes == "two" else []))
    try:
        assert set(queued(lab)) == {QUEUE + k for k in range(WORKERS)}
        assert accept_local(lab) == (1 if passes == "one" else 0)
        # lan -> wan through MASQUERADE: every server sees the gateway's address
        r = clients(lab, lab.lan, lan_jobs(24))
        assert r["errors"] == [] and r["ok"] == ["wan 203.0.113.1"] * 48, r
        # each packet out queued once, or again at POSTROUTING (TCP's three, UDP's one, at least)
        assert kernel_requeued(lab) == 0 if passes == "one" else kernel_requeued(lab) >= 24 * 4, kernel_requeued(lab)
        # the port forward from many wan addresses: the lan server sees each client
        fwd = [("tcp", a, "203.0.113.1", 8080) for a in WAN for _ in range(2)]
        r = clients(lab, lab.wan, fwd)
        assert r["errors"] == [] and sorted(r["ok"]) == sorted(f"lan {a}" for a, in ((j[1],) for j in fwd)), r
        # fragmented datagrams (3000 bytes both ways) reach the worker of their connection
        r = clients(lab, lab.lan, [("big", "10.73.1.3", a, 5353) for a in WAN])
        assert r["errors"] == [] and r["ok"] == ["wan 203.0.113.1"] * len(WAN), r
        # ICMP errors reach the worker of the connection they quote: a closed
        # UDP port's unreachable comes back through MASQUERADE as "refused"
        r = clients(lab, lab.lan, [("udp", "10.73.1.2", a, 5354) for a in WAN])
        assert r["errors"] == ["refused"] * len(WAN), r
        # ... and the gateway's own, about a datagram to a closed port of its own
        r = clients(lab, lab.lan, [("udp", a, "10.73.1.1", 5354) for a in ("10.73.1.2", "10.73.1.3")])
        assert r["errors"] == ["refused"] * 2, r
        # ... and so does a router's error, whichever worker its sender's address falls to
        r = clients(lab, lab.lan, [("udp", "10.73.1.2", f"{FAR_NET}.{i}", 53) for i in range(1, 9)])
        assert r["errors"] == ["EHOSTUNREACH"] * 8, r
        # the gateway's own traffic, both ways
        assert sh("ping", "-c", "2", "-i", "0.2", "-W", "2", WAN[3], ns=lab.gw, check=False).returncode == 0
        assert sh("ping", "-c", "2", "-i", "0.2", "-W", "2", "10.73.1.1", ns=lab.lan, check=False).returncode == 0
        # every worker had its share
        per_queue = queued(lab)
        assert all(per_queue[QUEUE + k] > 20 for k in range(WORKERS)), per_queue
        # the counters are the union: mangle's counting rules saw every packet
        # queued (the kernel queues a GRO'd packet as its segments: count those)
        seen = first_rule_packets(lab, sock, "mangle", "PREROUTING") + first_rule_packets(lab, sock, "mangle", "OUTPUT")
        assert seen == sum(queued(lab).values()) - kernel_requeued(lab), sh("iptables-legacy-save", "-c", ns=lab.gw).stdout
        # so are the daemon's own counters (`pyfw daemon --stats`): every verdict of every worker
        out = sh(PY, "-m", "pyfw.daemon", "--stats", "--socket", sock, ns=lab.gw, cwd=str(ROOT),
                 env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
        stats = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
        assert sum(stats.get(k, 0) for k in ("accept", "accept-post", "drop")) == seen, stats
        masq = pyfw(lab, sock, "-t", "nat", "-L", "POSTROUTING", "-v", "-x", "-n").stdout
        assert int(masq.splitlines()[2].split()[0]) == 48 + 2 * len(WAN) + 8 + 1, masq  # one per new connection out, the ping too
        # the counters survive a rule added on the socket (the union is not counted twice)
        r = pyfw(lab, sock, "-A", "FORWARD", "-p", "icmp")
        assert r.returncode == 0, r.stderr
        assert first_rule_packets(lab, sock, "nat", "POSTROUTING") == 48 + 2 * len(WAN) + 8 + 1
        # -Z zeroes every worker's share; new connections count from there
        assert pyfw(lab, sock, "-t", "nat", "-Z").returncode == 0
        assert first_rule_packets(lab, sock, "nat", "POSTROUTING") == 0
        r = clients(lab, lab.lan, lan_jobs(4))
        assert r["errors"] == [] and first_rule_packets(lab, sock, "nat", "POSTROUTING") == 8, r
        # a restore reaches every worker: new connections to all remotes follow it
        r = pyfw(lab, sock, prog="pyfw-restore", stdin=ruleset(lab, reject_wan_tcp=True))
        assert r.returncode == 0, r.stderr
        r = clients(lab, lab.lan, [j for j in lan_jobs(16) if j[0] == "tcp"])
        assert r["errors"] == ["refused"] * 16, r
        rejected = pyfw(lab, sock, "-L", "FORWARD", "-v", "-x", "-n").stdout.splitlines()[3]
        assert "REJECT" in rejected and int(rejected.split()[0]) == 16, rejected
        r = pyfw(lab, sock, prog="pyfw-restore", stdin=ruleset(lab))
        assert r.returncode == 0, r.stderr
        r = clients(lab, lab.lan, lan_jobs(8))
        assert r["errors"] == [] and len(r["ok"]) == 16, r
        # SIGHUP reloads the file into every worker
        rules_file.write_text(ruleset(lab, reject_wan_tcp=True))
        d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "REJECT" not in pyfw(lab, sock, "-S", "FORWARD").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        r = clients(lab, lab.lan, [j for j in lan_jobs(8) if j[0] == "tcp"])
        assert r["errors"] == ["refused"] * 8, r
        rules_file.write_text(ruleset(lab))
        d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "REJECT" in pyfw(lab, sock, "-S", "FORWARD").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        # a worker killed is started again, with its counters of the last command
        clients(lab, lab.lan, lan_jobs(4))
        masq = first_rule_packets(lab, sock, "nat", "POSTROUTING")
        workers = [int(w) for w in Path(f"/proc/{d.pid}/task/{d.pid}/children").read_text().split()]
        assert len(workers) == WORKERS, workers
        portid = sh("cat", "/proc/net/netfilter/nfnetlink_queue", ns=lab.gw).stdout
        os.kill(workers[-1], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = sh("cat", "/proc/net/netfilter/nfnetlink_queue", ns=lab.gw).stdout
            if now != portid and len(now.splitlines()) == WORKERS:
                break
            time.sleep(0.05)
        r = clients(lab, lab.lan, lan_jobs(8))
        assert r["errors"] == [] and len(r["ok"]) == 16, r
        assert first_rule_packets(lab, sock, "nat", "POSTROUTING") == masq + 16
    finally:
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=20)
        log = d.stderr.read() if d.stderr else ""
        if os.environ.get("PYFW_DAEMON_DEBUG"):
            print(log)
    assert rc == 0, log
    assert "stopped" in log and "adapter_error" not in log, log
    assert f"worker {WORKERS - 1} (queue {QUEUE + WORKERS - 1}) exited with status -9, restarted" in log, log
    assert save_gw(lab) == before
    assert queued(lab) == {}  # every worker unbound its queue
    assert not os.path.exists(sock)
    assert accept_local(lab) == 0


def test_conntrack_is_the_union(lab: Lab, tmp_path: Path) -> None:
    """`pyfw conntrack` on a daemon with workers: -L/-C/-S/-D/-F/-E over every worker's share."""
    from pyfw.cli import conntrack as cc

    lab.server(lab.wan, "wan", WAN)
    rules_file = tmp_path / "rules"
    rules_file.write_text(ruleset(lab))
    sock = str(tmp_path / "pyfw.sock")
    d = start_daemon(lab, rules_file, sock)
    events = None
    try:
        q, _ = cc.parse(["-E", "-p", "udp", "-e", "NEW"])
        events = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        events.settimeout(10)
        events.connect(sock)
        events.sendall(json.dumps({"conntrack": q.to_json(), "portid": 4242}).encode())
        events.shutdown(socket.SHUT_WR)
        stream = events.makefile("r")
        assert stream.readline().strip() == '{"ok": true}'
        r = clients(lab, lab.lan, [("udp", "10.73.1.2", a, 5353) for a in WAN] +
                    [("tcp", "10.73.1.3", a, 80) for a in WAN])
        assert r["errors"] == [], r
        # -E: one NEW line per UDP connection, from whichever worker has it
        new = [stream.readline() for _ in WAN]
        assert sorted(line.split()[5] for line in new) == sorted(f"dst={a}" for a in WAN), new
        rc, out, err = (lambda x: (x.rc, x.out, x.err))(cc.run(["--socket", sock, "-L"]))
        assert rc == 0 and len(out.splitlines()) == 2 * len(WAN), out
        assert err.endswith(f"{2 * len(WAN)} flow entries have been shown.\n"), err
        assert {f"dst={a}" for a in WAN} <= set(out.split())
        assert cc.run(["--socket", sock, "-C"]).out.strip() == str(2 * len(WAN))
        stats = cc.run(["--socket", sock, "-S"]).out.splitlines()  # a worker is a cpu
        assert [line.split()[0] for line in stats] == [f"cpu={k}" for k in range(WORKERS)], stats
        r2 = cc.run(["--socket", sock, "-D", "-p", "udp", "-d", WAN[0]])
        assert r2.rc == 0 and len(r2.out.splitlines()) == 1 and f"dst={WAN[0]}" in r2.out, (r2.out, r2.err)
        assert cc.run(["--socket", sock, "-C"]).out.strip() == str(2 * len(WAN) - 1)
        assert cc.run(["--socket", sock, "-F"]).rc == 0
        assert cc.run(["--socket", sock, "-C"]).out.strip() == "0"
        # a parent killed: its workers see their pipe end and go, the kernel
        # rules stay behind (fail-closed) until --cleanup
        events.close()
        events = None
        d.kill()
        d.wait(timeout=10)
        deadline = time.monotonic() + 10
        while queued(lab) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queued(lab) == {}
        assert "pyfw-daemon queue" in save_gw(lab)
        r = sh(PY, "-m", "pyfw.daemon", "--cleanup", "--nfqueue", str(QUEUE), "--syslog", "none", ns=lab.gw,
               check=False, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert r.returncode == 0, r.stderr
        assert "pyfw-daemon" not in save_gw(lab)
        assert "pyfw-daemon" not in sh("ip6tables-legacy-save", ns=lab.gw).stdout
    finally:
        if events is not None:
            events.close()
        if d.poll() is None:
            d.kill()
            d.wait(timeout=10)


def ip4(a: str) -> int:
    return int.from_bytes(bytes(map(int, a.split("."))), "big")


def test_steering_follows_new_routes(lab: Lab, tmp_path: Path) -> None:
    """An inside network added while the daemon runs: lan<->dmz connections
    (no NAT, both directions from inside) stay on one worker once the
    steering has the new prefix."""
    dmz, gd = f"pyfw-wz-{os.getpid() % 100000}", f"pw{os.getpid() % 100000}z"
    hosts = [f"10.76.1.{i}" for i in range(2, 10)]
    rules_file = tmp_path / "rules"
    rules_file.write_text(ruleset(lab))
    sock = str(tmp_path / "pyfw.sock")
    d = start_daemon(lab, rules_file, sock)
    try:
        sh("ip", "netns", "add", dmz)
        sh("ip", "link", "set", "lo", "up", ns=dmz)
        sh("ip", "link", "add", gd, "netns", lab.gw, "type", "veth", "peer", "name", "eth0", "netns", dmz)
        for h in hosts:
            sh("ip", "addr", "add", f"{h}/24", "dev", "eth0", ns=dmz)
        sh("ip", "link", "set", "eth0", "up", ns=dmz)
        sh("ip", "route", "add", "default", "via", "10.76.1.1", ns=dmz)
        sh("ip", "addr", "add", "10.76.1.1/24", "dev", gd, ns=lab.gw)
        sh("ip", "link", "set", gd, "up", ns=lab.gw)
        lab.server(dmz, "dmz", hosts)
        deadline = time.monotonic() + 15
        while "-d 10.76.1.0/24" not in sh("iptables-legacy-save", "-t", "raw", ns=lab.gw).stdout:
            assert time.monotonic() < deadline, "the steering did not take the new prefix"
            time.sleep(0.1)
        # a lan source for which the old steering would split most of these
        # connections (the request keyed by the dmz host, the reply by both)
        src = max(("10.73.1.2", "10.73.1.3"), key=lambda a: sum(
            bucket(ip4(h), WORKERS) != bucket(ip4(h) ^ ip4(a), WORKERS) for h in hosts))
        assert sum(bucket(ip4(h), WORKERS) != bucket(ip4(h) ^ ip4(src), WORKERS) for h in hosts) >= len(hosts) // 2
        r = clients(lab, lab.lan, [("tcp", src, h, 80) for h in hosts])
        assert r["errors"] == [] and r["ok"] == [f"dmz {src}"] * len(hosts), r
    finally:
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=20)
        log = d.stderr.read() if d.stderr else ""
        subprocess.run(["ip", "netns", "del", dmz], capture_output=True)
    assert rc == 0, log
    assert "steering follows the routes: outside" in log and "10.76.1.0/24" in log, log
    assert "pyfw-daemon" not in save_gw(lab)


def test_conntrack_max_is_the_gateways(lab: Lab, tmp_path: Path) -> None:
    """--conntrack-max bounds the union: each worker holds its share."""
    from pyfw.cli import conntrack as cc

    lab.server(lab.wan, "wan", WAN)
    rules_file = tmp_path / "rules"
    rules_file.write_text(ruleset(lab))
    sock = str(tmp_path / "pyfw.sock")
    d = start_daemon(lab, rules_file, sock, "--conntrack-max", "8")
    try:
        r = clients(lab, lab.lan, [("udp", src, a, 5353, 0.5) for a in WAN for src in ("10.73.1.2", "10.73.1.3")])
        assert r["ok"] and len(r["ok"]) + len(r["errors"]) == 2 * len(WAN), r  # the rest: table full
        assert int(cc.run(["--socket", sock, "-C"]).out) <= 8
    finally:
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=20)
        log = d.stderr.read() if d.stderr else ""
    assert rc == 0, log
