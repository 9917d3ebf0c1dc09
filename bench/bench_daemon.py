"""The live gateway's speed: `pyfw daemon --nfqueue` beside the kernel's own
iptables-legacy doing the same rules, on the same namespaces, in one run.

    lan 192.168.1.5 -- gw (eth0 192.168.1.1 | eth1 203.0.113.2) -- wan 203.0.113.1

The rules are rulesets/home-gateway.rules (MASQUERADE out, a port forward,
FORWARD policy DROP with an ESTABLISHED rule).  Modes: "kernel" loads them
with iptables-legacy-restore in gw; "pyfw" runs the daemon with them
(reading the queue with pyfw.daemon.nfqnl); "pyfw-binding" the same daemon
on the NetfilterQueue C binding; "pyfw-slow" without the engine's fast path; "pyfw-source" the daemon
with PYFW_NATIVE=0 (no mypyc build: A/B of the compiled modules);
"pyfw-nonat" (UDP only) with the filter rules alone, no NAT, so that each
packet is queued once; "bare" and "bare-nfqnl" (UDP only) are the
kernel doing the rules behind a Python NFQUEUE loop that only accepts, on
the binding and on nfqnl: the ceiling of any Python loop; "bare-payload"
the nfqnl loop handing every packet back as a payload, as a NAT verdict
must (one verdict message each, the kernel copying the payload in).  Measured:

  paced  small UDP packets lan->wan at 5,000/s, which every mode keeps up
         with: the loop's packets per CPU-second (its cost per packet)
  udp    the same stream as fast as one C sender goes (packets/s reaching wan)
  bulk   one TCP flow lan->wan (Mbit/s, and packets/s reaching wan)
  conns  short TCP connections lan->wan (completed connections/s)
  memory the daemon's VmRSS/VmHWM with 100,000 tracked UDP flows

Packets are counted on the receiving side, by an iptables counter in wan's
raw table.  The senders are C (bench/benchtool.c, compiled here with gcc):
a Python sender would be slower than the kernel.  Each figure is the median
of --runs runs; the modes alternate within a run so that the machine's load
falls on all alike, and "pps/cpu-s" (packets per second of the loop's own
CPU time) is the figure a loaded machine moves least.  Through pyfw a
masqueraded packet is queued once (the daemon sets accept_local while it
runs, pyfw.daemon.localsrc; with `--nat-two-pass` it would come back at
POSTROUTING for its new source), so its cost is one pass of the
bare-payload loop plus the engine's.
Needs root, iptables-legacy and gcc.

    .venv/bin/python bench/bench_daemon.py [--runs 3] [--seconds 2] [--flows 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES = ROOT / "rulesets" / "home-gateway.rules"
# home-gateway's filter table without its nat table: forwarded packets keep
# their source, so each is queued once (for the cost of the second pass)
NO_NAT_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -o eth1 -s 192.168.1.0/24 -j ACCEPT
COMMIT
"""
PY = sys.executable
LAN_IP, WAN_IP, GW_WAN_IP = "192.168.1.5", "203.0.113.1", "203.0.113.2"
UDP_PORT, BULK_PORT, CONN_PORT, FLOW_PORT0 = 9, 5001, 5002, 10000
QUEUE = 0
PACED_RATE = 5000

# Python NFQUEUE loops that only accept: the NetfilterQueue binding, and pyfw's own netlink reader
BARE_LOOPS = {
    "bare": """
from netfilterqueue import NetfilterQueue
q = NetfilterQueue()
q.bind(0, lambda p: p.accept(), max_len=8192)
print("ready", flush=True)
q.run()
""",
    "bare-nfqnl": """
from pyfw.daemon.nfqnl import NfQueue
q = NfQueue()
q.bind(0, lambda p: p.accept(), max_len=8192, sock_len=8 << 20)
print("ready", flush=True)
while True:
    q.run()
""",
    # the same, handing each packet back as its payload (as a NAT verdict must)
    "bare-payload": """
from pyfw.daemon.nfqnl import NfQueue
q = NfQueue()
q.bind(0, lambda p: p.accept(), max_len=8192, sock_len=8 << 20)
q.fast = lambda f: q.accept_payload(f[0], f[7]) or True
print("ready", flush=True)
while True:
    q.run()
""",
}


def sh(*cmd: str, ns: str | None = None, check: bool = True, **kw: object) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=120, **kw).stdout  # type: ignore[call-overload, no-any-return]


class Lab:
    """Three namespaces as in scripts/demo.sh, with counters in wan."""

    def __init__(self, work: Path, tool: Path) -> None:
        tag = os.getpid()
        self.lan, self.gw, self.wan = f"pyfw-bl-{tag}", f"pyfw-bg-{tag}", f"pyfw-bw-{tag}"
        self.work, self.tool = work, tool
        self.procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "eth0", "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", "eth1", "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        for ns, dev, a in ((self.lan, "eth0", f"{LAN_IP}/24"), (self.gw, "eth0", "192.168.1.1/24"),
                           (self.gw, "eth1", f"{GW_WAN_IP}/24"), (self.wan, "eth0", f"{WAN_IP}/24")):
            sh("ip", "addr", "add", a, "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "192.168.1.1", ns=self.lan)
        sh("ip", "route", "add", "default", "via", WAN_IP, ns=self.gw)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)
        sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000", ns=self.lan)
        # receiving-side counters; UDP is dropped there (no ICMP errors back)
        for spec in (["-p", "udp", "-j", "DROP"], ["-p", "tcp"]):
            sh("iptables-legacy", "-t", "raw", "-A", "PREROUTING", "-i", "eth0", *spec, ns=self.wan)
        self.acceptor = self.spawn(self.wan, str(self.tool), "acceptor", str(CONN_PORT), stdout=subprocess.PIPE)
        assert self.acceptor.stdout is not None and self.acceptor.stdout.readline().strip() == "ready"

    def spawn(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p  # type: ignore[no-any-return]

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(timeout=10)
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def settle(self, limit: float = 10.0) -> None:
        """Wait until what queues still hold has reached wan (its counters stop moving)."""
        last = (-1, -1)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            now = (self.wan_packets("udp"), self.wan_packets("tcp"))
            if now == last:
                return
            last = now
            time.sleep(0.2)

    def wan_packets(self, proto: str) -> int:
        """Packets of `proto` that reached wan so far (its raw PREROUTING counter)."""
        out = sh("iptables-legacy-save", "-c", "-t", "raw", ns=self.wan)
        for line in out.splitlines():
            m = re.match(r"\[(\d+):\d+\] -A PREROUTING -i eth0 -p (\w+)", line)
            if m and m.group(2) == proto:
                return int(m.group(1))
        raise RuntimeError(f"no {proto} counter in wan:\n{out}")


# --- the gateway in each mode ----------------------------------------------

def cpu_seconds(pid: int | None) -> float:
    """Time process `pid` (one thread) has run on a CPU so far, to the nanosecond
    (schedstat; /proc/PID/stat counts in 10 ms ticks); 0 without a process."""
    if pid is None:
        return 0.0
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


@contextlib.contextmanager
def kernel_mode(lab: Lab) -> Iterator[None]:
    sh("iptables-legacy-restore", ns=lab.gw, input=RULES.read_text())
    try:
        yield None
    finally:
        sh("iptables-legacy-restore", ns=lab.gw, input="*nat\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n"
           ":FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
        if shutil.which("conntrack"):
            sh("conntrack", "-F", ns=lab.gw, check=False)


@contextlib.contextmanager
def bare_mode(lab: Lab, loop: str = "bare") -> Iterator[int]:
    with kernel_mode(lab):
        p = lab.spawn(lab.gw, PY, "-c", BARE_LOOPS[loop], stdout=subprocess.PIPE,
                      env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        rule = ["PREROUTING", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", str(QUEUE)]
        sh("iptables-legacy", "-t", "raw", "-I", *rule, ns=lab.gw)
        try:
            yield p.pid
        finally:
            sh("iptables-legacy", "-t", "raw", "-D", *rule, ns=lab.gw)
            p.kill()
            p.wait()


class Daemon:
    def __init__(self, lab: Lab, env_extra: dict[str, str] | None = None, rules: Path = RULES) -> None:
        self.sock = str(lab.work / "pyfw.sock")
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
        self.log = open(lab.work / "daemon.log", "a")  # noqa: SIM115
        prof = os.environ.get("BENCH_DAEMON_PROFILE")  # a file for cProfile's output
        wrap = ["-m", "cProfile", "-o", prof] if prof else []
        self.p = lab.spawn(lab.gw, PY, *wrap, "-m", "pyfw.daemon", "--nfqueue", str(QUEUE), "--ruleset", str(rules),
                           "--socket", self.sock, env=env, stderr=self.log)
        deadline = time.monotonic() + 20
        while "pyfw-daemon" not in sh("iptables-legacy-save", "-t", "raw", ns=lab.gw):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start: {(lab.work / 'daemon.log').read_text()}")
            time.sleep(0.1)
        self.lab = lab

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM in kB."""
        text = Path(f"/proc/{self.p.pid}/status").read_text()
        return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}

    def tracked(self) -> int | None:
        """The daemon's connection count, if this pyfw has `pyfw conntrack`."""
        r = subprocess.run(["ip", "netns", "exec", self.lab.gw, PY, "-m", "pyfw.cli.main", "conntrack",
                            "--socket", self.sock, "-C"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
        try:
            return int(r.stdout.strip()) if r.returncode == 0 else None
        except ValueError:
            return None

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=30)
        self.log.close()
        # a figure counts only if the engine and the adapter never failed on a packet
        last = [ln for ln in (self.lab.work / "daemon.log").read_text().splitlines() if "stopped (" in ln][-1:]
        bad = re.findall(r"\b((?:engine|adapter)_error \d+)", last[0]) if last else ["no 'stopped' line"]
        if bad:
            print(f"bench_daemon: the daemon counted {', '.join(bad)}: its figures are not valid", file=sys.stderr)


@contextlib.contextmanager
def pyfw_mode(lab: Lab, env_extra: dict[str, str] | None = None, no_nat: bool = False) -> Iterator[int]:
    rules = RULES
    if no_nat:
        rules = lab.work / "no-nat.rules"
        rules.write_text(NO_NAT_RULES)
    d = Daemon(lab, env_extra, rules)
    try:
        yield d.p.pid
    finally:
        d.stop()


MODES = {"kernel": kernel_mode, "pyfw": pyfw_mode, "bare": bare_mode,
         "bare-nfqnl": lambda lab: bare_mode(lab, "bare-nfqnl"),
         "bare-payload": lambda lab: bare_mode(lab, "bare-payload"),
         "pyfw-binding": lambda lab: pyfw_mode(lab, {"PYFW_NFQUEUE_BINDING": "netfilterqueue"}),
         "pyfw-slow": lambda lab: pyfw_mode(lab, {"PYFW_FASTPATH": "0"}),
         "pyfw-source": lambda lab: pyfw_mode(lab, {"PYFW_NATIVE": "0"}),
         "pyfw-nonat": lambda lab: pyfw_mode(lab, no_nat=True)}
UDP_ONLY = ("bare", "bare-nfqnl", "bare-payload", "pyfw-nonat")  # (without NAT, wan has no way back to lan)


# --- the measurements ---------------------------------------------------------

def udp_stream(lab: Lab, secs: float, pid: int | None, rate: float = 0, name: str = "udp") -> dict[str, float]:
    """Small UDP packets lan->wan as fast as the sender goes (or at `rate` packets/s)."""
    before, cpu = lab.wan_packets("udp"), cpu_seconds(pid)
    sent = int(sh(str(lab.tool), "udp", WAN_IP, str(UDP_PORT), str(secs), "32", "1", str(rate), ns=lab.lan))
    got = lab.wan_packets("udp") - before  # at the end of the sending: a backlog the queue still holds is not counted
    out = {f"{name} pps": got / secs, f"{name} offered pps": sent / secs}
    if pid is not None:
        # what the machine's load changes least: packets per second of the loop's own CPU
        used = cpu_seconds(pid) - cpu
        out[f"{name} pps/cpu-s"] = got / max(used, 1e-3)
        out[f"{name} loop cpu %"] = 100 * used / secs
    return out


def udp_paced(lab: Lab, secs: float, pid: int | None) -> dict[str, float]:
    """The same stream at a rate every mode keeps up with: the loop's cost per packet
    (as packets per CPU-second) without the waste of an overflowing queue."""
    return udp_stream(lab, secs, pid, rate=PACED_RATE, name="udp paced")


def bulk_tcp(lab: Lab, secs: float, pid: int | None) -> dict[str, float]:
    sink = lab.spawn(lab.wan, str(lab.tool), "sink", str(BULK_PORT), stdout=subprocess.PIPE)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    before = lab.wan_packets("tcp")
    out = sh(str(lab.tool), "bulk", WAN_IP, str(BULK_PORT), str(secs), ns=lab.lan).split()
    received = int(sink.stdout.readline())
    sink.wait(timeout=10)
    took = float(out[1])
    return {"bulk Mbit/s": received * 8 / took / 1e6, "bulk pps": (lab.wan_packets("tcp") - before) / took}


def short_conns(lab: Lab, secs: float, pid: int | None) -> dict[str, float]:
    done = int(sh(str(lab.tool), "conns", WAN_IP, str(CONN_PORT), str(secs), "4", ns=lab.lan))
    return {"conns/s": done / secs}


def memory(lab: Lab, flows: int, limit: float = 25.0) -> dict[str, float]:
    """Drive `flows` distinct UDP flows through a fresh daemon, in chunks (each
    with new source ports), paced to what the daemon takes (a chunk that loses
    packets slows the next), until wan has seen that many or `limit` seconds
    pass (an unanswered UDP flow is forgotten after 30 s), then read its memory."""
    d = Daemon(lab)
    try:
        base = d.status()
        before = lab.wan_packets("udp")
        start = time.monotonic()
        seen, rate, port0 = 0, 5000.0, FLOW_PORT0
        while seen < flows and time.monotonic() - start < limit:
            chunk = int(min(max(rate, 1000), flows - seen))
            t0 = time.monotonic()
            sh(str(lab.tool), "flows", LAN_IP, WAN_IP, str(port0), str(chunk), str(rate), ns=lab.lan)
            port0 += chunk // 64000 + 1  # the next chunk's flows are new ones
            time.sleep(0.1)
            now_seen = lab.wan_packets("udp") - before
            took = time.monotonic() - t0
            # the next chunk goes at what this one got through, or a little faster if it all got through
            got = now_seen - seen
            rate = max(500.0, got / took * (1.25 if got >= chunk * 0.98 else 0.9))
            seen = now_seen
        took = time.monotonic() - start
        st = d.status()
        tracked = d.tracked()
    finally:
        d.stop()
    return {"flows through": seen, "tracked": tracked if tracked is not None else -1, "seconds": took,
            "new flows/s": seen / took, "VmRSS MB": st["VmRSS"] / 1024, "VmHWM MB": st["VmHWM"] / 1024,
            "VmRSS at start MB": base["VmRSS"] / 1024,
            "kB per flow": (st["VmRSS"] - base["VmRSS"]) / max(seen, 1)}


def build_tool(work: Path) -> Path:
    out = work / "benchtool"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "benchtool.c")], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--only", choices=["udp", "paced", "bulk", "conns", "memory"], action="append")
    ap.add_argument("--modes", default="kernel,pyfw,pyfw-slow,pyfw-nonat,bare,bare-nfqnl",
                    help="of " + ", ".join(MODES))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_daemon: needs root (network namespaces, iptables, NFQUEUE)", file=sys.stderr)
        return 1
    tests = args.only or ["paced", "udp", "bulk", "conns", "memory"]
    modes = args.modes.split(",")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    results: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lab = Lab(work, build_tool(work))
        try:
            lab.up()
            for run in range(args.runs):
                for mode in modes:
                    with MODES[mode](lab) as pid:
                        for test in tests:
                            if test == "memory" or (mode in UDP_ONLY and test not in ("udp", "paced")):
                                continue
                            fn = {"udp": udp_stream, "paced": udp_paced, "bulk": bulk_tcp, "conns": short_conns}[test]
                            lab.settle()
                            for k, v in fn(lab, args.seconds, pid).items():
                                results[mode].setdefault(k, []).append(v)
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
            mem = memory(lab, args.flows) if "memory" in tests and "pyfw" in modes else None
        finally:
            lab.down()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"medians of {args.runs} runs of {args.seconds:g} s each")
    keys = [k for m in modes for k in results[m]]
    keys = list(dict.fromkeys(keys))
    print(f"{'':18}" + "".join(f"{m:>14}" for m in modes) + "   pyfw/kernel")
    for k in keys:
        meds = {m: statistics.median(results[m][k]) for m in modes if k in results[m]}
        ratio = (f"{meds['pyfw'] / meds['kernel']:.3f}" if "pyfw" in meds and meds.get("kernel") else "")
        print(f"{k:18}" + "".join(f"{meds[m]:>14,.0f}" if m in meds else f"{'':>14}" for m in modes)
              + f"   {ratio}")
    if mem is not None:
        print("daemon memory: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}"
                                           for k, v in mem.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
