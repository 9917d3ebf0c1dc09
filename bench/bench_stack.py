"""pyfw.stack speed: the status server's own TCP serving a 10 MB body
(1) to curl over a TAP device (Linux's TCP at the other end; needs root),
and the same size uploaded by curl (POST /upload: our receive path),
(2) in memory between two stacks (simulated link, so the figure is the
stacks' CPU cost: wall time of the run).  Medians of several runs.
(3) goodput in *simulated* time over a 100 Mbit/s, 20 ms RTT bottleneck
(256 KB drop-tail queue), clean and with 0.1% random loss: how the
congestion controllers use the link (deterministic, not a CPU figure).

    .venv/bin/python bench/bench_stack.py [--runs 5] [--bytes 10485760] [--cc cubic,reno]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "stack"))

from pyfw.stack import Stack  # noqa: E402
from pyfw.stack.http import pattern_bytes, status_app  # noqa: E402
from pyfw.stack.stack import format_addr  # noqa: E402


def tap_runs(cc: str, n: int, runs: int) -> list[float]:
    from tap_link import STACK_ADDR, TapLink
    stack = Stack(cc=cc)
    stack.listen(STACK_ADDR, 80, status_app(lambda: {"counters": stack.stats()}))
    want = hashlib.sha256(pattern_bytes(n)).hexdigest()
    url = f"http://{format_addr(STACK_ADDR)}/bytes?n={n}"
    rates = []
    with TapLink(stack) as link:
        for _ in range(runs):
            cmd = f"curl -sS --max-time 120 -o /dev/stdout -w '%{{stderr}}%{{speed_download}}' '{url}' | sha256sum"
            proc = link.popen(["sh", "-c", cmd])
            if not link.pump(lambda p=proc: p.poll() is not None, timeout=130):  # type: ignore[misc]
                proc.kill()
                raise SystemExit("curl did not finish")
            out, err = proc.communicate()
            if out.split()[0].decode() != want:
                raise SystemExit(f"body mismatch: {err!r}")
            rates.append(float(err.decode().strip().splitlines()[-1]) * 8 / 1e6)
    return rates


def tap_upload_runs(cc: str, n: int, runs: int) -> list[float]:
    from tap_link import STACK_ADDR, TapLink
    stack = Stack(cc=cc)
    stack.listen(STACK_ADDR, 80, status_app(lambda: {}))
    want = hashlib.sha256(pattern_bytes(n)).hexdigest()
    url = f"http://{format_addr(STACK_ADDR)}/upload"
    rates = []
    with TapLink(stack) as link:
        body = f"/tmp/pyfw-bench-stack-{os.getpid()}"
        with open(body, "wb") as f:
            f.write(pattern_bytes(n))
        try:
            for _ in range(runs):
                cmd = f"curl -sS --max-time 120 --data-binary @{body} -w '%{{stderr}}%{{speed_upload}}' '{url}'"
                proc = link.popen(["sh", "-c", cmd])
                if not link.pump(lambda p=proc: p.poll() is not None, timeout=130):  # type: ignore[misc]
                    proc.kill()
                    raise SystemExit("curl did not finish")
                out, err = proc.communicate()
                if want not in out.decode():
                    raise SystemExit(f"upload mismatch: {out!r} {err!r}")
                rates.append(float(err.decode().strip().splitlines()[-1]) * 8 / 1e6)
        finally:
            os.unlink(body)
    return rates


def memory_runs(cc: str, n: int, runs: int) -> list[float]:
    from stack_sim import A_ADDR, B_ADDR, HttpGet, http_pair
    rates = []
    for i in range(runs):
        sim, a, b = http_pair(cc, seed=i, delay=0.0005)
        app = HttpGet(f"/bytes?n={n}")
        a.connect(A_ADDR, 40000, B_ADDR, 80, app, now=0.0)
        t = time.perf_counter()
        sim.run(lambda a=app: a.closed, limit=600)  # type: ignore[misc]
        wall = time.perf_counter() - t
        if not app.complete:
            raise SystemExit("in-memory transfer incomplete")
        rates.append(n * 8 / wall / 1e6)
    return rates


def sim_goodput(cc: str, n: int, loss: float, seed: int) -> float:
    from stack_sim import A_ADDR, B_ADDR, Faults, HttpGet, http_pair
    sim, a, b = http_pair(cc, seed=seed, rate=12_500_000, delay=0.01, queue=256 * 1024, faults=Faults(loss=loss))
    app = HttpGet(f"/bytes?n={n}")
    a.connect(A_ADDR, 40000, B_ADDR, 80, app, now=0.0)
    sim.run(lambda: app.closed, limit=600)
    if not app.complete:
        raise SystemExit("simulated transfer incomplete")
    return n * 8 / sim.now / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bytes", type=int, default=10 * 1024 * 1024)
    ap.add_argument("--cc", default="cubic,reno")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.bytes} bytes, {args.runs} runs")
    for cc in args.cc.split(","):
        if os.geteuid() == 0:
            r = tap_runs(cc, args.bytes, args.runs)
            runs = ", ".join(f"{x:.0f}" for x in r)
            print(f"tap    {cc:5s}: median {statistics.median(r):7.1f} Mbit/s  (runs: {runs})  target >= 50")
            r = tap_upload_runs(cc, args.bytes, args.runs)
            runs = ", ".join(f"{x:.0f}" for x in r)
            print(f"upload {cc:5s}: median {statistics.median(r):7.1f} Mbit/s  (runs: {runs})  (Linux sends)")
        else:
            print("tap: skipped (needs root)")
        r = memory_runs(cc, args.bytes, args.runs)
        runs = ", ".join(f"{x:.0f}" for x in r)
        print(f"memory {cc:5s}: median {statistics.median(r):7.1f} Mbit/s  (runs: {runs})  (both stacks' CPU)")
        for loss in (0.0, 0.001):
            r = [sim_goodput(cc, args.bytes, loss, seed) for seed in range(args.runs)]
            runs = ", ".join(f"{x:.0f}" for x in r)
            print(f"sim    {cc:5s}: median {statistics.median(r):7.1f} Mbit/s  (runs: {runs})  "
                  f"(simulated 100 Mbit/s, 20 ms RTT, loss {loss:.1%})")


if __name__ == "__main__":
    main()
