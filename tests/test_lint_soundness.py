"""`pyfw lint` is sound: on seeded random rulesets, no packet drawn inside
a rule that lint calls shadowed ever matches that rule in the engine."""

from __future__ import annotations

import random
import struct

from pyfw.engine.api import IP_CT_ESTABLISHED, IP_CT_NEW, IP_CT_NONE, IP_CT_RELATED, IP_CT_UNTRACKED
from pyfw.engine.conntrack import Conn, Tuple
from pyfw.engine.packet import Packet
from pyfw.engine.tables import compile_table, do_table
from pyfw.lint import DIMS, Universe, lint, rule_space
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

NETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "192.168.0.0/16", "192.168.1.0/24"]
IFACES = ["eth0", "eth1", "eth+", "wlan0"]
STATES = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"]


def random_rule(rng: random.Random, chain: str) -> str:
    parts = [f"-A {chain}"]
    if rng.random() < 0.4:
        parts.append(("! " if rng.random() < 0.15 else "") + f"-s {rng.choice(NETS)}")
    if rng.random() < 0.3:
        parts.append(("! " if rng.random() < 0.15 else "") + f"-d {rng.choice(NETS)}")
    if rng.random() < 0.3:
        parts.append(("! " if rng.random() < 0.2 else "") + f"-i {rng.choice(IFACES)}")
    r = rng.random()
    if r < 0.5:
        proto = rng.choice(["tcp", "udp"])
        parts.append(f"-p {proto}")
        if rng.random() < 0.7:
            lo = rng.choice([0, 22, 53, 80, 443, 1000, 1024])
            hi = rng.choice([lo, lo, lo + 10, 65535])
            port = str(lo) if lo == hi else f"{lo}:{hi}"
            neg = "! " if rng.random() < 0.15 else ""
            parts.append(f"-m {proto} {neg}--dport {port}")
    elif r < 0.6:
        parts.append("-p icmp")
    elif r < 0.65:
        parts.append("-f")
    if rng.random() < 0.3:
        states = rng.sample(STATES, rng.randint(1, 3))
        parts.append("-m conntrack " + ("! " if rng.random() < 0.15 else "") + "--ctstate " + ",".join(states))
    if rng.random() < 0.15:
        parts.append(f"-m mark {'! ' if rng.random() < 0.2 else ''}--mark {rng.choice([1, 2, 3])}")
    parts.append(rng.choice(["-j ACCEPT", "-j DROP", "-j ACCEPT", "-j DROP", "-j RETURN", "-j LOG"]))
    return " ".join(parts)


def ruleset_text(rng: random.Random) -> str:
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    for _ in range(rng.randint(5, 25)):
        lines.append(random_rule(rng, "FORWARD"))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def pick(rng: random.Random, intervals: tuple[tuple[int, int], ...]) -> int:
    lo, hi = rng.choice(intervals)
    if rng.random() < 0.3:
        return rng.choice((lo, hi))
    return rng.randint(lo, hi)


def packet_in(rng: random.Random, box: tuple, uni: Universe) -> Packet | None:
    vals = {d: pick(rng, box[i]) for i, d in enumerate(DIMS)}
    proto = vals["proto"]
    frag = vals["frag"]
    if proto in (6, 17) and not frag:
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", vals["sport"], vals["dport"], 1, 0, 0x50, 0x02, 1, 0, 0)
        else:
            l4 = struct.pack("!HHHH", vals["sport"], vals["dport"], 8, 0)
    elif proto in (6, 17):
        l4 = b"\0" * 8
    elif proto == 1:
        l4 = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    else:
        l4 = b"\0" * 8
    if not frag and proto not in (6, 17) and (box[4] != ((0, 65535),) or box[5] != ((0, 65535),)):
        return None  # ports only exist for tcp/udp
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 7, 0x0010 if frag else 0, 64, proto, 0,
                      vals["src"].to_bytes(4, "big"), vals["dst"].to_bytes(4, "big"))
    classes = uni.iface_classes

    def iface(k: int) -> str:
        if k >= len(classes):
            return "zz9"
        name, is_prefix = classes[k]
        return name + "q7" if is_prefix else name

    pkt = Packet(bytearray(hdr + l4), indev=iface(vals["in"]), outdev=iface(vals["out"]), time=5.0)
    pkt.mark = vals["mark"]
    st = vals["ctstate"]
    t = Tuple(pkt.src, pkt.dst, proto, pkt.sport, pkt.dport)
    if st == 0:
        pkt.ct, pkt.ctinfo = None, IP_CT_NONE
    elif st == 4:
        pkt.ctinfo = IP_CT_UNTRACKED
        pkt.notrack = True
    else:
        pkt.ct = Conn(t, t.inverted(), timeout_at=100.0)
        pkt.ctinfo = {1: IP_CT_ESTABLISHED, 2: IP_CT_RELATED, 3: IP_CT_NEW}[st]
    return pkt


class Env:
    host = None

    def log(self, text: str) -> None:
        pass

    def shared(self, kind, name, factory):  # type: ignore[no-untyped-def]
        return factory()


def test_shadowed_rules_never_match() -> None:
    checked = shadowed_seen = 0
    for seed in range(60):
        rng = random.Random(seed)
        rs = restore(Ruleset(), ruleset_text(rng), RestoreOptions()).ruleset
        findings = [f for f in lint(rs) if f.kind == "shadowed" and f.chain == "FORWARD"]
        if not findings:
            continue
        table = compile_table(rs.tables["filter"], Env())  # type: ignore[arg-type]
        uni = Universe.of(rs)
        chain = rs.tables["filter"].chains["FORWARD"]
        for f in findings:
            shadowed_seen += 1
            assert f.rule is not None
            rule = chain.rules[f.rule - 1]
            box = rule_space(rule, uni).box
            if any(not d for d in box):
                continue  # contradicting matches: nothing to draw, nothing can match
            for _ in range(40):
                pkt = packet_in(rng, box, uni)
                if pkt is None:
                    continue
                trace: list = []
                do_table(table, "FORWARD", pkt, trace)
                checked += 1
                hit = [s.rule for s in trace if s.chain == "FORWARD"]
                assert f.rule not in hit, (seed, f.human(), pkt)
    assert shadowed_seen >= 20, shadowed_seen
    assert checked >= 500, checked
    print(f"lint soundness: {shadowed_seen} shadowed rules, {checked} packets inside them, none matched")


def test_packets_drawn_in_a_rule_match_it() -> None:
    """The control: packets drawn inside the first rule's space (nothing
    before it) always match it, so the packets above are really inside."""
    matched = 0
    for seed in range(60):
        rng = random.Random(1000 + seed)
        rs = restore(Ruleset(), ruleset_text(rng), RestoreOptions()).ruleset
        table = compile_table(rs.tables["filter"], Env())  # type: ignore[arg-type]
        uni = Universe.of(rs)
        first = rs.tables["filter"].chains["FORWARD"].rules[0]
        space = rule_space(first, uni)
        if not space.exact or any(not d for d in space.box):
            continue
        for _ in range(20):
            pkt = packet_in(rng, space.box, uni)
            if pkt is None:
                continue
            trace: list = []
            do_table(table, "FORWARD", pkt, trace)
            assert trace and trace[0].chain == "FORWARD" and trace[0].rule == 1, (seed, pkt)
            matched += 1
    assert matched >= 300, matched
