"""`pyfw daemon --workers N` against one worker: small UDP datagrams from lan
through the gateway (MASQUERADE) to wan, the same offered load for each
worker count, alternating, medians of the rounds.

    lan (sender) ==veth== gw (pyfw daemon --nfqueue) ==veth== wan (receiver)

Reported per run: datagrams the receiver got per second, and the workers'
CPU time per packet they were handed (utime+stime of the worker processes
over the packets their queues took, from /proc): the second figure does not
depend on how many cores are free, the first does -- on a shared machine
read it with the load average printed beside it.  The flows go to remote
addresses chosen so that each worker gets the same number of them.

Namespaces are unique to this process and always deleted; traffic stays
between them.  Needs root, ip, iptables-legacy and the NFQUEUE binding.

    python bench/bench_workers.py [--rounds 3] [--seconds 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyfw.daemon.steer import bucket  # noqa: E402

PY = sys.executable
QUEUE = 31

SENDER = r"""
import socket, sys, time
dests, seconds = sys.argv[1].split(","), float(sys.argv[2])
socks = []
for d in dests:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((d, 9000)); socks.append(s)
payload = b"x" * 18
sent = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(64):
        for s in socks:
            try:
                s.send(payload); sent += 1
            except OSError:
                pass
print(sent)
"""

RECEIVER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000)); s.settimeout(1.0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
print("ready", flush=True)
got = 0
while True:
    try:
        s.recv(64); got += 1
    except socket.timeout:
        if got:
            break
print(got, flush=True)
"""

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o {wan} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i {lan} -j ACCEPT
COMMIT
"""


def sh(*cmd: str, ns: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, timeout=60).stdout


def balanced_remotes(workers: int, per_worker: int) -> list[str]:
    """Remote addresses, `per_worker` for each worker of `workers` (and of one)."""
    picked: dict[int, list[str]] = {k: [] for k in range(workers)}
    for i in range(2, 250):
        a = f"203.0.113.{i}"
        key = int.from_bytes(bytes(map(int, a.split("."))), "big")
        k = bucket(key, workers)
        if len(picked[k]) < per_worker:
            picked[k].append(a)
    return [a for k in range(workers) for a in picked[k]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queued(gw: str) -> int:
    text = sh("cat", "/proc/net/netfilter/nfnetlink_queue", ns=gw)
    return sum(int(f[7]) for f in (line.split() for line in text.splitlines()) if len(f) >= 8)


def worker_pids(daemon: int, workers: int) -> list[int]:
    """The processes that hold the queues: the daemon's forks (same command
    line; not its short-lived iptables children), or the daemon itself."""
    if workers == 1:
        return [daemon]
    me = Path(f"/proc/{daemon}/cmdline").read_bytes()
    deadline = time.monotonic() + 10
    while True:
        pids = []
        for p in Path(f"/proc/{daemon}/task/{daemon}/children").read_text().split():
            try:
                if Path(f"/proc/{p}/cmdline").read_bytes() == me:
                    pids.append(int(p))
            except OSError:
                pass
        if len(pids) == workers or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


class Lab:
    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.lan, self.gw, self.wan = f"pyfw-bl-{tag}", f"pyfw-bg-{tag}", f"pyfw-bw-{tag}"
        self.gl, self.gwn = f"pb{tag}l", f"pb{tag}w"

    def up(self, remotes: list[str]) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", self.gl, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", self.gwn, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        sh("ip", "addr", "add", "10.74.1.2/24", "dev", "eth0", ns=self.lan)
        sh("ip", "addr", "add", "10.74.1.1/24", "dev", self.gl, ns=self.gw)
        sh("ip", "addr", "add", "203.0.113.1/24", "dev", self.gwn, ns=self.gw)
        for a in remotes:
            sh("ip", "addr", "add", f"{a}/24", "dev", "eth0", ns=self.wan)
        for ns, dev in ((self.lan, "eth0"), (self.gw, self.gl), (self.gw, self.gwn), (self.wan, "eth0")):
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "10.74.1.1", ns=self.lan)
        sh("ip", "route", "add", "default", "via", remotes[0], ns=self.gw)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)

    def down(self) -> None:
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run_once(lab: Lab, tmp: Path, workers: int, remotes: list[str], seconds: float) -> tuple[float, float]:
    """(datagrams received per second, worker CPU microseconds per queued packet)."""
    rules = tmp / "rules"
    rules.write_text(RULES.format(wan=lab.gwn, lan=lab.gl))
    sock = str(tmp / f"s{workers}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    d = subprocess.Popen(["ip", "netns", "exec", lab.gw, PY, "-m", "pyfw.daemon", "--nfqueue", str(QUEUE),
                          "--workers", str(workers), "--ruleset", str(rules), "--socket", sock, "--syslog", "none"],
                         stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    recv = None
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock) or "pyfw-daemon" not in sh("iptables-legacy-save", "-t", "raw", ns=lab.gw):
            if time.monotonic() > deadline or d.poll() is not None:
                raise RuntimeError(f"daemon did not start: {d.stderr.read() if d.stderr else ''}")
            time.sleep(0.1)
        pids = worker_pids(d.pid, workers)
        recv = subprocess.Popen(["ip", "netns", "exec", lab.wan, PY, "-c", RECEIVER],
                                stdout=subprocess.PIPE, text=True)
        assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
        cpu0 = sum(cpu_seconds(p) for p in pids)
        q0 = queued(lab.gw)
        t0 = time.monotonic()
        sh(PY, "-c", SENDER, ",".join(remotes), str(seconds), ns=lab.lan)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        packets = queued(lab.gw) - q0
        got = int(recv.stdout.readline())
        return got / elapsed, cpu / max(packets, 1) * 1e6
    finally:
        if recv is not None and recv.poll() is None:
            recv.kill()
            recv.wait()
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=20)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    remotes = balanced_remotes(args.workers, 4)
    lab = Lab()
    results: dict[int, list[tuple[float, float]]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            lab.up(remotes)
            for _ in range(args.rounds):
                for n in (1, args.workers):
                    results[n].append(run_once(lab, Path(tmp), n, remotes, args.seconds))
        finally:
            lab.down()
    print(f"load average before/after: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    for n, runs in results.items():
        pps = statistics.median(r[0] for r in runs)
        us = statistics.median(r[1] for r in runs)
        print(f"workers={n}: {pps:9.0f} datagrams/s received, {us:6.1f} us worker CPU per packet "
              f"(runs: {', '.join(f'{r[0]:.0f}' for r in runs)})")
    one = statistics.median(r[0] for r in results[1])
    many = statistics.median(r[0] for r in results[args.workers])
    print(f"ratio workers={args.workers} / workers=1: {many / one:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
