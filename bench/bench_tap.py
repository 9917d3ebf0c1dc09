"""Bulk TCP through the TAP gateway beside the same transfer through a
kernel gateway, in one run, at 1500-byte MTU; medians of several runs.

    pyfw:   lan --veth-- br --TAP-- pyfw daemon --tap --TAP-- br --veth-- wan
    kernel: lan --veth-- gw (ip_forward, iptables-legacy MASQUERADE) --veth-- wan

Both gateways get the same rules (MASQUERADE out, FORWARD DROP with
ESTABLISHED,RELATED accepted and the lan allowed out).  A wan server sends
SIZE bytes to each connection from the lan; the client reads to the end
(Python sockets on both ends: their ceiling is the kernel figure).  The runs
alternate between the two gateways so that the machine's load hits both.
Also measured: the TAP gateway without the virtio-net offload (every
1500-byte frame through the engine), and the gateway's own TCP stack
serving a body from its status page (GET /bytes).

    .venv/bin/python bench/bench_tap.py [--runs 5] [--mbytes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "tap"))

from lab import PY, RULES, KernelLab, TapLab, root_problem, sh  # noqa: E402

BULK = str(HERE.parent / "tests" / "tap" / "bulk.py")
PORT = 5001



def serve(lab: TapLab | KernelLab, size: int) -> None:
    p = subprocess.Popen(["ip", "netns", "exec", lab.wan, PY, BULK, "serve", str(PORT), str(size), "1"],
                         stdout=subprocess.PIPE, text=True)
    lab.procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"


def fetch_mbit(ns: str, size: int) -> float:
    r = sh(PY, BULK, "fetch", "203.0.113.2", str(PORT), "120", "nohash", ns=ns, timeout=180)
    got = json.loads(r.stdout)
    if got["bytes"] != size:
        raise RuntimeError(f"short transfer: {got['bytes']} of {size}")
    return float(got["bytes"] * 8 / got["seconds"] / 1e6)


def status_mbit(ns: str, size: int) -> float:
    t0 = time.monotonic()
    r = sh("curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "120",
           f"http://10.77.1.1:8000/bytes?n={size}", ns=ns, timeout=180)
    dt = time.monotonic() - t0
    if int(r.stdout or 0) != size:
        raise RuntimeError(f"status page: {r.stdout} of {size} bytes")
    return size * 8 / dt / 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mbytes", type=int, default=200)
    ap.add_argument("--status-mbytes", type=int, default=10)
    args = ap.parse_args()
    problem = root_problem()
    if problem:
        print(f"skipped: {problem}")
        return 0
    size = args.mbytes << 20
    tap, kern = TapLab("b"), KernelLab()
    results: dict[str, list[float]] = {"pyfw": [], "kernel": [], "pyfw-no-offload": [], "status": []}
    load0 = os.getloadavg()
    try:
        tap.up()
        kern.up(RULES.format(lan=kern.gl, wan=kern.gwn))
        serve(tap, size)
        serve(kern, size)
        with tempfile.TemporaryDirectory() as tmp:
            rules = RULES.format(lan="eth0", wan="eth1")
            tap.start(Path(tmp), rules, "--status", "10.77.1.1:8000")
            fetch_mbit(tap.lan, size)   # warm-up: ARP, the first connection
            for _ in range(args.runs):
                results["pyfw"].append(fetch_mbit(tap.lan, size))
                results["kernel"].append(fetch_mbit(kern.lan, size))
            for _ in range(args.runs):
                results["status"].append(status_mbit(tap.lan, args.status_mbytes << 20))
            tap.stop()
            tap.start(Path(tmp), rules, "--no-offload")
            small = min(size, 50 << 20)
            for _ in range(max(1, args.runs // 2)):
                results["pyfw-no-offload"].append(fetch_mbit(tap.lan, small) if small == size else
                                                  _fetch_partial(tap, small))
            tap.stop()
    finally:
        tap.down()
        kern.down()
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in results.items() if v}
    print(f"bulk TCP download wan->lan through the gateway, 1500 MTU, {args.mbytes} MB per run, "
          f"median of {args.runs}")
    print(f"  pyfw TAP gateway (GSO/csum offload):  {med['pyfw']:9.1f} Mbit/s   runs {_fmt(results['pyfw'])}")
    print(f"  kernel gateway (iptables-legacy):     {med['kernel']:9.1f} Mbit/s   runs {_fmt(results['kernel'])}")
    print(f"  ratio pyfw / kernel:                  {med['pyfw'] / med['kernel']:9.3f}")
    print(f"  pyfw TAP gateway, no offload:         {med['pyfw-no-offload']:9.1f} Mbit/s   "
          f"runs {_fmt(results['pyfw-no-offload'])}")
    print(f"  status page /bytes ({args.status_mbytes} MB, pyfw.stack): {med['status']:9.1f} Mbit/s   "
          f"runs {_fmt(results['status'])}")
    print(f"  load average before {load0[0]:.2f}, after {load1[0]:.2f} ({os.cpu_count()} cpus)")
    return 0


def _fetch_partial(tap: TapLab, size: int) -> float:
    """The no-offload run on a smaller server (the full size takes long)."""
    p = subprocess.Popen(["ip", "netns", "exec", tap.wan, PY, BULK, "serve", str(PORT + 1), str(size), "1"],
                         stdout=subprocess.PIPE, text=True)
    tap.procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    r = sh(PY, BULK, "fetch", "203.0.113.2", str(PORT + 1), "300", "nohash", ns=tap.lan, timeout=400)
    p.kill()
    got = json.loads(r.stdout)
    return float(got["bytes"] * 8 / got["seconds"] / 1e6)


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
