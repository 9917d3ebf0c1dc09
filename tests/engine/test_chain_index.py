"""The chain index (tuple space search) walks exactly like a plain scan:
same verdict, same trace, same counters, on seeded random rulesets."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from pyfw.engine.packet import Packet
from pyfw.engine.tables import CompiledChain, compile_table, do_table
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from gen_ruleset import generate  # noqa: E402


class FakeHost:
    def addr_type(self, addr: int, dev: str | None = None) -> int:
        return 1


class Env:
    host = FakeHost()

    def __init__(self) -> None:
        self._shared: dict = {}

    def shared(self, kind, name, factory):  # type: ignore[no-untyped-def]
        return self._shared.setdefault((kind, name), factory())

    def log(self, text: str) -> None:
        pass

    def send_local(self, data, pkt) -> None:  # type: ignore[no-untyped-def]
        pass

    def reject_sent(self) -> None:
        pass


def packet(rng: random.Random, addrs: list[int], ports: list[int]) -> Packet:
    proto = rng.choice((6, 17, 1, 47))
    src = rng.choice(addrs) if rng.random() < 0.7 else rng.randrange(1 << 32)
    dst = rng.choice(addrs) if rng.random() < 0.5 else rng.randrange(1 << 32)
    if proto in (6, 17):
        dport = rng.choice(ports) if rng.random() < 0.7 else rng.randrange(65536)
        l4 = struct.pack("!HHIIBBHHH", rng.randrange(65536), dport, 1, 0, 0x50, rng.choice((2, 16, 18)), 1, 0, 0)
        if proto == 17:
            l4 = struct.pack("!HHHH", rng.randrange(65536), dport, 8, 0)
    elif proto == 1:
        l4 = struct.pack("!BBHHH", 8, 0, 0, 1, 1)
    else:
        l4 = b"\0" * 8
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                      src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    pkt = Packet(bytearray(hdr + l4), indev=rng.choice(("eth0", "eth1", "eth2", "eth3", "lo")), time=1.0)
    return pkt


def test_index_walk_equals_linear_walk() -> None:
    text = generate(600, seed=7).replace("-j LOG --log-prefix \"drop: \"", "-j RETURN")
    rs_a = restore(Ruleset(), text, RestoreOptions()).ruleset
    rs_b = restore(Ruleset(), text, RestoreOptions()).ruleset
    ta = compile_table(rs_a.tables["filter"], Env())  # type: ignore[arg-type]
    tb = compile_table(rs_b.tables["filter"], Env())  # type: ignore[arg-type]
    assert any(c.index is not None for c in ta.chains.values())
    for c in tb.chains.values():  # b: plain scans
        c.index = None
    addrs = [r.src for c in rs_a.tables["filter"].chains.values() for r in c.rules if r.smsk] + \
            [r.dst for c in rs_a.tables["filter"].chains.values() for r in c.rules if r.dmsk]
    ports = [m.data.dpts[0] for c in rs_a.tables["filter"].chains.values() for r in c.rules
             for m in r.matches if m.name in ("tcp", "udp")]
    rng = random.Random(3)
    for _ in range(3000):
        p = packet(rng, addrs, ports)
        for chain in ("INPUT", "FORWARD"):
            tr_a: list = []
            tr_b: list = []
            va = do_table(ta, chain, p.copy(), tr_a)
            vb = do_table(tb, chain, p.copy(), tr_b)
            assert va == vb
            assert [s.label() for s in tr_a] == [s.label() for s in tr_b]
    ca = [(r.counters.packets, r.counters.bytes) for c in rs_a.tables["filter"].ordered_chains() for r in c.rules]
    cb = [(r.counters.packets, r.counters.bytes) for c in rs_b.tables["filter"].ordered_chains() for r in c.rules]
    assert ca == cb
    assert sum(p for p, _ in ca) > 100  # the packets did hit rules
    _ = CompiledChain


def test_index_short_prefixes_cover_their_first_octets() -> None:
    """Prefixes shorter than 8 bits span several first octets (the index's
    root filter): the walk still equals a plain scan."""
    rng = random.Random(11)
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    nets = []
    for _ in range(120):
        plen = rng.choice((1, 2, 3, 5, 7, 8, 9, 16, 24, 32))
        net = rng.randrange(1 << 32) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        nets.append(net)
        side = rng.choice(("-s", "-d"))
        port = f" -p tcp --dport {rng.choice((22, 80, 443))}" if rng.random() < 0.3 else ""
        lines.append(f"-A FORWARD {side} {net >> 24}.{net >> 16 & 255}.{net >> 8 & 255}.{net & 255}/{plen}{port} -j RETURN")
    lines.append("COMMIT")
    text = "\n".join(lines) + "\n"
    rs_a = restore(Ruleset(), text, RestoreOptions()).ruleset
    rs_b = restore(Ruleset(), text, RestoreOptions()).ruleset
    ta = compile_table(rs_a.tables["filter"], Env())  # type: ignore[arg-type]
    tb = compile_table(rs_b.tables["filter"], Env())  # type: ignore[arg-type]
    assert ta.chains["FORWARD"].index is not None
    tb.chains["FORWARD"].index = None
    addrs = [n | rng.randrange(256) for n in nets]
    for _ in range(3000):
        p = packet(rng, addrs, [22, 80, 443])
        tr_a: list = []
        tr_b: list = []
        assert do_table(ta, "FORWARD", p.copy(), tr_a) == do_table(tb, "FORWARD", p.copy(), tr_b)
        assert [s.label() for s in tr_a] == [s.label() for s in tr_b]
    ca = [(r.counters.packets, r.counters.bytes) for r in rs_a.tables["filter"].chains["FORWARD"].rules]
    cb = [(r.counters.packets, r.counters.bytes) for r in rs_b.tables["filter"].chains["FORWARD"].rules]
    assert ca == cb
    assert sum(p for p, _ in ca) > 100
