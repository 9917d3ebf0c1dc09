"""CLI speed: restore / save of a 10,000-rule file and single commands on
100- and 10,000-rule files, end to end (process start included), median of
several runs; beside iptables-legacy-restore on the same file in a fresh
network namespace when run as root.

    .venv/bin/python bench/bench_cli.py [--runs 7] [--rules 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen_ruleset import generate  # noqa: E402

BIN = Path(sys.executable).parent


def timed(argv: list[str], stdin: bytes | None = None, prep=None) -> float:  # type: ignore[no-untyped-def]
    if prep:
        prep()
    t = time.perf_counter()
    p = subprocess.run(argv, input=stdin, capture_output=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {p.stderr.decode()[:500]}")
    return dt


def median(argv: list[str], runs: int, stdin: bytes | None = None, prep=None) -> float:  # type: ignore[no-untyped-def]
    timed(argv, stdin, prep)  # warm-up
    return statistics.median(timed(argv, stdin, prep) for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rules", type=int, default=10000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyfw-bench-"))
    try:
        big = work / "big.rules"
        big.write_text(generate(a.rules, seed=1))
        small_src = work / "small.rules"
        small_src.write_text(generate(100, seed=2))
        state = work / "state.rules"

        def fresh() -> None:
            for p in work.glob("*state.rules*"):
                p.unlink()

        restore = median([str(BIN / "pyfw-restore"), "--file", str(state), str(big)], a.runs, prep=fresh)
        save = median([str(BIN / "pyfw-save"), "--file", str(state)], a.runs)
        add_big = median([str(BIN / "pyfw"), "--file", str(state), "-A", "INPUT", "-p", "tcp",
                          "--dport", "22", "-j", "ACCEPT"], a.runs)
        small = work / "small-state.rules"
        subprocess.run([str(BIN / "pyfw-restore"), "--file", str(small), str(small_src)], check=True)
        add_small = median([str(BIN / "pyfw"), "--file", str(small), "-A", "INPUT", "-p", "tcp",
                            "--dport", "22", "-j", "ACCEPT"], a.runs)
        print(f"rules: {a.rules} (seed 1), runs: {a.runs}, median wall seconds")
        print(f"pyfw-restore {a.rules}-rule file        {restore:8.3f} s   (target < 1 s)")
        print(f"pyfw-save {a.rules}-rule file           {save:8.3f} s   (target < 0.3 s)")
        print(f"pyfw -A on a 100-rule file            {add_small:8.3f} s   (target < 0.15 s)")
        print(f"pyfw -A on a {a.rules}-rule file         {add_big:8.3f} s   (target < 0.3 s)")
        if os.geteuid() == 0 and shutil.which("iptables-legacy-restore"):
            ns = f"pyfw-bench-{os.getpid()}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            try:
                data = big.read_bytes()
                kern = median(["ip", "netns", "exec", ns, "iptables-legacy-restore"], a.runs, stdin=data)
                ksave = median(["ip", "netns", "exec", ns, "iptables-legacy-save"], a.runs)
            finally:
                subprocess.run(["ip", "netns", "del", ns])
            print(f"iptables-legacy-restore (kernel)      {kern:8.3f} s   pyfw/kernel ratio {restore / kern:6.1f}x")
            print(f"iptables-legacy-save (kernel)         {ksave:8.3f} s   pyfw/kernel ratio {save / ksave:6.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
