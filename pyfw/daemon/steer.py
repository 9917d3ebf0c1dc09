"""Steering for `pyfw daemon --workers N`: which worker's queue a packet goes to.

Each worker owns its own share of the connection table, so both directions
of a connection, before and after NAT, must reach the same worker.  The
kernel's `--queue-balance` hashes the addresses symmetrically, but NAT
changes one of them between the directions, and the daemon NOTRACKs the
traffic, so the kernel's conntrack cannot help either.

What NAT leaves alone is the *remote* endpoint.  SNAT/MASQUERADE rewrites
the inside client (orig dst = server = reply src), a port forward (DNAT)
rewrites the gateway's public address (orig src = client = reply dst).  So
the key of a packet is the address of the far side, chosen by where the
packet comes from, and hashed by a small classic-BPF program (`-m bpf`, one
rule per worker, `hash % N == k`; the last worker takes what is left), by
the first row that fits:

=========================================  ====================  ==============
packet                                     key                   ICMP error key
=========================================  ====================  ==============
PREROUTING in on an outside interface      source                embedded dst
PREROUTING to a local address (inside)     source                embedded dst
PREROUTING inside -> an inside prefix      source ^ destination  same, embedded
PREROUTING inside -> elsewhere             destination           embedded src
OUTPUT to lo                               source ^ destination  same, embedded
OUTPUT out an outside interface            destination           embedded src
OUTPUT out an inside interface             destination           embedded dst (*)
=========================================  ====================  ==============

(*) embedded src when the quoted packet was addressed to the gateway itself
(its port unreachable to a lan host): the program compares the quoted
destination with the gateway's addresses (up to MAX_LOCAL of them).

An ICMP error belongs to the connection of the packet it quotes, so its key
is taken from the quoted header, the side that is remote for the quoted
packet.  Fragments hash on addresses only (ports are absent from
non-first fragments), so every fragment reaches the worker that
reassembles it.  Outside interfaces are the default route's (or
`--outside IF`); inside prefixes are the routes over the other interfaces.

The key is an address, never a port: a port would split a fragmented
datagram from its flow.  So all connections with one remote address share
a worker (many clients of one server do not spread).

Because the remote endpoint is part of every reply tuple, two workers can
never hand out the same NAT tuple: a NAT port chosen by worker k is unique
among connections to remotes of k's share, and no other worker sees those.

Not covered (the packet reaches a worker that does not know the
connection, as with a conntrack table flushed under it): NAT that rewrites
the remote side as well, i.e. DNAT/REDIRECT of outbound connections
(transparent proxies, DNS redirection), hairpin NAT, NAT between two
inside interfaces; and an ICMP error the gateway sends inside about a
packet addressed to one of its addresses past MAX_LOCAL.  Per-packet state
outside conntrack (`limit`, `hashlimit`, `recent`, `statistic --mode nth`,
`quota`) is per worker too.  A packet too short for the program falls to
the last worker.

Where source NAT takes the second pass (pyfw.daemon.localsrc: strict
rp_filter, policy routing, --nat-two-pass), packets accepted at PREROUTING
whose source the engine rewrote come back at mangle POSTROUTING marked with their worker's own POST mark
(`post_mark(k)`), which steers them back to the worker holding the rewrite.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# classic BPF opcodes (linux/filter.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LD_W_IND, LD_B_IND = 0x40, 0x50
LDX_B_MSH, LDX_MEM, ST = 0xB1, 0x61, 0x02
ALU_RSH_K, ALU_XOR_X, ALU_MOD_K = 0x74, 0xAC, 0x94
TAX = 0x07
JA, JEQ_K, JSET_K = 0x05, 0x15, 0x45
RET_K = 0x06

ICMP_ERRORS = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded, parameter problem
KEYS = ("src", "dst", "xor")
MAX_LOCAL = 32  # local addresses a program compares (xt_bpf takes 64 instructions)
MAX_WORKERS = 256

POST_MARK_BASE = 0x5100  # worker k's POST mark is (POST_MARK_BASE + k) << 16
OWN_MASK = 0xFFFF0000


def post_mark(k: int) -> int:
    """The mark worker k puts on a packet whose rewrite waits for POSTROUTING."""
    return (POST_MARK_BASE + k) << 16


def bucket(key: int, n: int) -> int:
    """The worker (0..n-1) of a 32-bit key; what the BPF program computes."""
    key &= 0xFFFFFFFF
    key ^= key >> 16
    key ^= key >> 8
    return key % n


def flow_key(src: int, dst: int, kind: str) -> int:
    return {"src": src, "dst": dst, "xor": src ^ dst}[kind]


Insn = tuple[int, "str | int", "str | int", int]  # op, jt, jf (a label or 0), k


def _assemble(items: Sequence[Insn | str]) -> list[tuple[int, int, int, int]]:
    """Resolve label names (strings in the item list) into relative jumps."""
    labels: dict[str, int] = {}
    pc = 0
    for it in items:
        if isinstance(it, str):
            labels[it] = pc
        else:
            pc += 1
    out: list[tuple[int, int, int, int]] = []
    for it in items:
        if isinstance(it, str):
            continue
        op, jt, jf, k = it
        here = len(out) + 1  # jumps count from the next instruction
        jt_n = labels[jt] - here if isinstance(jt, str) else jt
        jf_n = labels[jf] - here if isinstance(jf, str) else jf
        if op == JA and isinstance(jt, str):
            k, jt_n = jt_n, 0
        if not (0 <= jt_n <= 255 and 0 <= jf_n <= 255):
            raise ValueError("BPF jump out of range")
        out.append((op, jt_n, jf_n, k))
    return out


def _load_key(kind: str, embedded: bool) -> list[Insn | str]:
    """A = the key of the outer header, or (embedded) of the header the
    ICMP error quotes, X holding the outer header's length."""
    ld = LD_W_IND if embedded else LD_W_ABS
    base = 8 if embedded else 0
    if kind == "src":
        return [(ld, 0, 0, base + 12)]
    if kind == "dst":
        return [(ld, 0, 0, base + 16)]
    return [(ld, 0, 0, base + 12), (ST, 0, 0, 0), (ld, 0, 0, base + 16), (LDX_MEM, 0, 0, 0), (ALU_XOR_X, 0, 0, 0)]


def program(kind: str, error_kind: str, n: int, k: int,
            local: Sequence[int] = ()) -> list[tuple[int, int, int, int]]:
    """A classic BPF program matching the packets whose key falls to worker k
    of n.  With `local` (error_kind "dst" only): an error quoting a packet
    addressed to one of these (the gateway's own) is keyed by the quoted
    source instead, the remote end of that connection."""
    if kind not in KEYS or error_kind not in KEYS:
        raise ValueError(f"unknown key kind {kind}/{error_kind}")
    local = list(local)[:MAX_LOCAL] if error_kind == "dst" else []
    error_key: list[Insn | str] = [*_load_key(error_kind, True)]
    if local:
        error_key += [(JEQ_K, "to-local", 0, a) for a in local]
        error_key += [(JA, "hash", 0, 0), "to-local", *_load_key("src", True)]
    items: list[Insn | str] = [
        (LD_B_ABS, 0, 0, 9),
        (JEQ_K, 0, "plain", 1),
        (LD_H_ABS, 0, 0, 6),
        (JSET_K, "plain", 0, 0x1FFF),  # a later fragment carries no ICMP header
        (LDX_B_MSH, 0, 0, 0),
        (LD_B_IND, 0, 0, 0),
    ]
    items += [(JEQ_K, "error", 0, t) for t in ICMP_ERRORS]
    items += [(JA, "plain", 0, 0), "error", *error_key, (JA, "hash", 0, 0),
              "plain", *_load_key(kind, False),
              "hash", (TAX, 0, 0, 0), (ALU_RSH_K, 0, 0, 16), (ALU_XOR_X, 0, 0, 0),
              (TAX, 0, 0, 0), (ALU_RSH_K, 0, 0, 8), (ALU_XOR_X, 0, 0, 0), (ALU_MOD_K, 0, 0, n),
              (JEQ_K, "yes", 0, k), (RET_K, 0, 0, 0), "yes", (RET_K, 0, 0, 1)]
    return _assemble(items)


def bytecode(prog: Sequence[tuple[int, int, int, int]]) -> str:
    """xt_bpf's --bytecode text: "LEN,op jt jf k,..."."""
    return ",".join([str(len(prog)), *(f"{op} {jt} {jf} {k}" for op, jt, jf, k in prog)])


@dataclass(frozen=True)
class Topology:
    """Which interfaces face the outside, and the prefixes routed inside."""

    outside: tuple[str, ...]
    inside_prefixes: tuple[str, ...]
    local_addresses: tuple[str, ...] = ()


def read_topology(outside: Sequence[str] = ()) -> Topology:
    """From the kernel's main routing table: outside = the default route's
    interfaces unless given; inside prefixes = routes over the others."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "main"],
                         check=True, capture_output=True, text=True).stdout
    routes = json.loads(out or "[]")
    outs = tuple(outside) or tuple(dict.fromkeys(r["dev"] for r in routes
                                                 if r.get("dst") == "default" and r.get("dev")))
    if not outs:
        raise ValueError("no default route to tell the outside interface: give --outside IF")
    prefixes = []
    for r in routes:
        dst, dev = r.get("dst"), r.get("dev")
        if not dst or dst == "default" or not dev or dev in outs or dev == "lo":
            continue
        if r.get("type", "unicast") != "unicast":
            continue
        net = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
        prefixes.append(str(net))
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], check=True, capture_output=True, text=True).stdout
    local = [a["local"] for link in json.loads(out or "[]") if link.get("ifname") != "lo"
             for a in link.get("addr_info", []) if a.get("family") == "inet" and "local" in a]
    return Topology(outs, tuple(dict.fromkeys(prefixes)), tuple(dict.fromkeys(local)))


# (table, chain, rule-spec)
Rule = tuple[str, str, list[str]]


def worker_rules(num: int, n: int, topo: Topology, tag: list[str],
                 queue: Callable[[int], list[str]]) -> list[Rule]:
    """The kernel rules for n workers on queues num..num+n-1, in order per
    chain; `tag` is the daemon's comment match, `queue(q)` its NFQUEUE target."""
    if not 2 <= n <= MAX_WORKERS:
        raise ValueError(f"workers must be 2-{MAX_WORKERS}")

    local = [int(ipaddress.IPv4Address(a)) for a in topo.local_addresses]

    def spread(table: str, chain: str, match: list[str], kind: str, error_kind: str,
               to_local: Sequence[int] = ()) -> list[Rule]:
        rules: list[Rule] = []
        for k in range(n):
            prog = [] if k == n - 1 else ["-m", "bpf", "--bytecode",
                                          bytecode(program(kind, error_kind, n, k, to_local))]
            rules.append((table, chain, [*match, *prog, *tag, *queue(num + k)]))
        return rules

    pre: list[Rule] = [("raw", "PREROUTING", [*tag, "-j", "NOTRACK"])]
    for dev in topo.outside:
        pre += spread("raw", "PREROUTING", ["-i", dev], "src", "dst")
    pre += spread("raw", "PREROUTING", ["!", "-i", "lo", "-m", "addrtype", "--dst-type", "LOCAL"], "src", "dst")
    for prefix in topo.inside_prefixes:
        pre += spread("raw", "PREROUTING", ["!", "-i", "lo", "-d", prefix], "xor", "xor")
    pre += spread("raw", "PREROUTING", ["!", "-i", "lo"], "dst", "src")
    from pyfw.daemon.nfqueue import OWN_MARK

    own = ["-m", "mark", "!", "--mark", f"{OWN_MARK:#x}/{OWN_MASK:#x}"]
    out: list[Rule] = [("raw", "OUTPUT", [*tag, "-j", "NOTRACK"])]
    out += spread("raw", "OUTPUT", [*own, "-o", "lo"], "xor", "xor")
    for dev in topo.outside:
        out += spread("raw", "OUTPUT", [*own, "-o", dev], "dst", "src")
    out += spread("raw", "OUTPUT", own, "dst", "dst", local)
    post: list[Rule] = [("mangle", "POSTROUTING", ["-m", "mark", "--mark", f"{post_mark(k):#x}/{OWN_MASK:#x}",
                                                   *tag, *queue(num + k)]) for k in range(n)]
    return pre + out + post


def worker_steering(num: int, n: int, topo: Topology, fail_open: bool, ipv6: str,
                    generation: int = 0, owner: int | None = None) -> Any:
    """pyfw.daemon.steering's KernelRules for n workers on `topo`.  Each
    generation (a new topology while running) carries its own comment, so
    the new rules go in front of the old and the old are deleted by theirs."""
    from pyfw.daemon.steering import KernelRule, KernelRules, Steering

    @dataclass(frozen=True)
    class GenerationSteering(Steering):
        generation: int = 0

        @property
        def comment(self) -> str:
            base = super().comment
            return f"{base} gen {self.generation}" if self.generation else base

    steering = GenerationSteering(num, fail_open=fail_open, ipv6=ipv6, generation=generation,
                                  **({"owner": owner} if owner is not None else {}))
    rules = [KernelRule(4, table, chain, tuple(spec))
             for table, chain, spec in worker_rules(num, n, topo, steering.tag(), steering.queue)]
    return KernelRules(steering, rules + steering.defrag_rules() + steering.ipv6_rules())
