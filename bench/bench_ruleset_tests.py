"""Ruleset tests at scale: 1,000 single-frame tests against one 1,000-rule
ruleset, run by pytest with the pyfw plugin (issue 4 wants under 5 s of
pytest time).

    .venv/bin/python bench/bench_ruleset_tests.py [--tests 1000] [--rules 1000] [--seed 7] [--runs 3]

Writes, in a temporary folder: the ruleset (bench/gen_ruleset.py, fixed
seed), a host.toml with the interfaces and networks the generator uses, and
a test file of one test function per frame, written as a user writes them:
the `firewall` fixture, a scapy frame, one assert helper (allowed /
dropped / rejected, the verdict pyfw gave when the file was generated).
Then runs `pytest -q` on it (a fresh process each run, the plugin loaded
through its entry point) and reports the session time pytest prints and
the process wall time, best of --runs.  `--bytes` builds the frames once at
import instead of with scapy in each test.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen_ruleset import generate  # noqa: E402

HOST = """\
[host]
name = "bench"

[[interface]]
name = "eth0"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/8"]

[[interface]]
name = "eth1"
mac = "02:00:00:00:00:02"
addresses = ["192.0.2.1/24"]

[[interface]]
name = "eth2"
mac = "02:00:00:00:00:03"
addresses = ["198.51.100.1/24"]

[[interface]]
name = "eth3"
mac = "02:00:00:00:00:04"
addresses = ["203.0.113.1/24"]

[[route]]
to = "default"
via = "192.0.2.254"
dev = "eth1"

[[neighbor]]
ip = "192.0.2.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"

[sysctl]
"net.ipv4.ip_forward" = 1
"""

HELPER = {"ACCEPT": "assert_allowed", "DROP": "assert_dropped", "REJECT": "assert_rejected"}


def frames(rules: str, n: int, seed: int) -> list[tuple[str, str]]:
    """(iface, scapy expression) of n frames that reach the ruleset's rules:
    addresses from its networks, ports from its port matches."""
    rng = random.Random(seed)
    nets = re.findall(r"-[sd] (10\.\d+\.\d+)\.\d+/", rules)
    ports = [int(p) for p in re.findall(r"--dports? (\d+)", rules)] or [80]
    out = []
    for _ in range(n):
        iface = rng.choice(["eth0", "eth0", "eth1", "eth2", "eth3"])
        src = f"{rng.choice(nets)}.{rng.randrange(1, 255)}" if rng.random() < 0.7 else \
            f"192.0.2.{rng.randrange(2, 250)}"
        dst = rng.choice([f"{rng.choice(nets)}.{rng.randrange(1, 255)}", "10.0.0.1", "198.51.100.7",
                          "203.0.113.9", "8.8.8.8"])
        proto = rng.choice(["tcp", "tcp", "udp", "icmp"])
        ip = f'IP(src="{src}", dst="{dst}")'
        if proto == "tcp":
            l4 = f'TCP(sport={rng.randrange(1024, 65535)}, dport={rng.choice(ports)}, flags="S")'
        elif proto == "udp":
            l4 = f"UDP(sport={rng.randrange(1024, 65535)}, dport={rng.choice(ports)})"
        else:
            l4 = f"ICMP(id={rng.randrange(65536)})"
        out.append((iface, f"{ip} / {l4}"))
    return out


def write_suite(where: Path, n_tests: int, n_rules: int, seed: int, prebuilt: bool) -> dict[str, int]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: F401  (the eval below)

    from pyfw.testing.firewall import load_firewall

    rules = generate(n_rules, seed=seed)
    (where / "bench.rules").write_text(rules)
    (where / "host.toml").write_text(HOST)
    fw = load_firewall(where / "bench.rules", where / "host.toml")
    cases = []
    verdicts: dict[str, int] = {}
    for iface, expr in frames(rules, n_tests, seed):
        fw.reset()
        v = fw.send(eval(expr), iface).verdict
        v = v if v in HELPER else "DROP"
        verdicts[v] = verdicts.get(v, 0) + 1
        cases.append((iface, expr, v))
    lines = ["from scapy.layers.inet import ICMP, IP, TCP, UDP", "from scapy.layers.l2 import Ether", "",
             'RULES, HOST = "bench.rules", "host.toml"', ""]
    if prebuilt:
        macs = {f"eth{k}": f"02:00:00:00:00:0{k + 1}" for k in range(4)}
        lines.append("F = [")
        lines += [f'    bytes(Ether(dst="{macs[iface]}", src="02:00:00:00:00:fe") / {expr}),'
                  for iface, expr, _v in cases]
        lines += ["]", ""]
    for k, (iface, expr, v) in enumerate(cases):
        frame = f"F[{k}]" if prebuilt else expr
        lines += ["", f"def test_{k:04d}(firewall):",
                  "    fw = firewall(RULES, host=HOST)",
                  f'    fw.{HELPER[v]}({frame}, "{iface}")', ""]
    (where / "test_bench.py").write_text("\n".join(lines))
    return verdicts


def run(where: Path, pyc: bool) -> tuple[float, float, str]:
    env = dict(os.environ)
    if pyc:   # a usual machine: bytecode (and pytest's rewritten test modules) cached between runs
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(where / "pycache")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_bench.py"],
                          cwd=where, capture_output=True, text=True, timeout=600, env=env)
    wall = time.perf_counter() - t
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    m = re.search(r"in ([\d.]+)s", tail)
    return (float(m.group(1)) if m else wall), wall, tail


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bytes", action="store_true", help="frames built once at import, not with scapy per test")
    ap.add_argument("--keep", type=Path, help="write the suite here and keep it")
    ap.add_argument("--pyc", action="store_true",
                    help="let Python cache bytecode between the runs (a temporary PYTHONPYCACHEPREFIX), as on a "
                         "usual machine, even where PYTHONDONTWRITEBYTECODE is set")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyfw-bench-tests-") as tmp:
        where = a.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        verdicts = write_suite(where, a.tests, a.rules, a.seed, a.bytes)
        results = [run(where, a.pyc) for _ in range(a.runs)]
        best = min(results)
        print(f"{a.tests} single-frame tests, {a.rules}-rule ruleset (seed {a.seed}), "
              f"{'prebuilt bytes' if a.bytes else 'scapy frames per test'}"
              f"{', bytecode cached' if a.pyc else ''}; verdicts {verdicts}")
        print(f"  pytest time: {best[0]:.2f} s (best of {len(results)}: "
              + ", ".join(f"{r[0]:.2f}" for r in results) + f"); process wall {best[1]:.2f} s")
        print(f"  {best[2]}")


if __name__ == "__main__":
    main()
