"""Seeded, realistic iptables-save rulesets for the benchmarks.

A gateway-like mix: filter rules over addresses, interfaces, tcp/udp ports,
multiport, conntrack state, comments, limit, LOG, REJECT; user chains; a nat
table with DNAT/SNAT/MASQUERADE.  `--basic` restricts to matches the core
alone handles (addresses, interfaces, protocol, comment) for early checks.
"""

from __future__ import annotations

import argparse
import random


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _net(rng: random.Random) -> str:
    plen = rng.choice([8, 16, 24, 24, 24, 32])
    return f"{_ip(rng)}/{plen}"


def rule(rng: random.Random, chain: str, basic: bool, users: list[str]) -> str:
    parts = [f"-A {chain}"]
    if rng.random() < 0.5:
        parts.append(f"-s {_net(rng)}")
    if rng.random() < 0.3:
        parts.append(f"-d {_net(rng)}")
    if rng.random() < 0.3 and chain != "OUTPUT":
        parts.append(f"-i eth{rng.randrange(4)}")
    proto = rng.choice(["tcp", "tcp", "tcp", "udp", "icmp", None])
    if proto:
        parts.append(f"-p {proto}")
        if not basic and proto in ("tcp", "udp"):
            r = rng.random()
            if r < 0.6:
                parts.append(f"-m {proto} --dport {rng.randrange(1, 65536)}")
            elif r < 0.8:
                ports = ",".join(str(rng.randrange(1, 65536)) for _ in range(rng.randrange(2, 6)))
                parts.append(f"-m multiport --dports {ports}")
            if proto == "tcp" and rng.random() < 0.2:
                parts.append("-m tcp --tcp-flags SYN,RST,ACK SYN" if "-m tcp" not in " ".join(parts) else "")
    if not basic and rng.random() < 0.3:
        parts.append("-m conntrack --ctstate " + rng.choice(["NEW", "ESTABLISHED,RELATED", "INVALID"]))
    if rng.random() < 0.2:
        parts.append(f'-m comment --comment "rule {rng.randrange(100000)}"')
    if not basic and rng.random() < 0.05:
        parts.append("-m limit --limit 5/min --limit-burst 10")
    r = rng.random()
    if r < 0.45:
        parts.append("-j ACCEPT")
    elif r < 0.75:
        parts.append("-j DROP")
    elif r < 0.85 and users:
        parts.append(f"-j {rng.choice(users)}")
    elif not basic and r < 0.92:
        parts.append("-j LOG --log-prefix \"drop: \"")
    elif not basic and proto == "tcp":
        parts.append("-j REJECT --reject-with tcp-reset")
    else:
        parts.append("-j RETURN" if chain in users else "-j ACCEPT")
    return " ".join(p for p in parts if p)


def generate(n: int, seed: int = 1, basic: bool = False, counters: bool = False) -> str:
    rng = random.Random(seed)
    users = [f"chain_{i}" for i in range(max(1, n // 500))]
    lines = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":{u} - [0:0]" for u in users]
    chains = ["INPUT", "FORWARD", "OUTPUT", *users]
    weights = [3, 5, 1] + [1] * len(users)
    body: list[str] = []
    for _ in range(n):
        chain = rng.choices(chains, weights)[0]
        line = rule(rng, chain, basic, users if chain not in users else [])
        if counters:
            line = f"[{rng.randrange(10**6)}:{rng.randrange(10**9)}] " + line
        body.append(line)
    lines += body
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rules", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--basic", action="store_true")
    ap.add_argument("--counters", action="store_true")
    a = ap.parse_args()
    print(generate(a.rules, a.seed, a.basic, a.counters), end="")


if __name__ == "__main__":
    main()
