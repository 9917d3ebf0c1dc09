"""A small router around pyfw.engine.nat for tests: a fake connection table
(tuples, NEW/ESTABLISHED/RELATED, confirm), a fake host, and the nat table
compiled from iptables-restore text with the real targets.

Only what NAT needs is modelled: no TCP state machine, no timeouts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from pyfw.engine.api import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IP_CT_NONE,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
)
from pyfw.engine.conntrack.conn import Conn, Tuple
from pyfw.engine.nat import Nat, invert
from pyfw.engine.packet import IPPROTO_ICMP, Packet
from pyfw.engine.tables import compile_table, do_table
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMP_QUERIES = frozenset({8, 13, 15, 17})
ICMP_ANSWERS = frozenset({0, 14, 16, 18})


def ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _tuple_at(d: bytes | bytearray, off: int) -> Tuple | None:
    ihl = (d[off] & 0xF) * 4
    proto = d[off + 9]
    src, dst = struct.unpack_from("!II", d, off + 12)
    l4 = off + ihl
    if proto in (6, 17, 132, 136):
        sport, dport = struct.unpack_from("!HH", d, l4)
        return Tuple(src, dst, proto, sport, dport)
    if proto == IPPROTO_ICMP:
        typ, code = d[l4], d[l4 + 1]
        ident = struct.unpack_from("!H", d, l4 + 4)[0]
        return Tuple(src, dst, proto, ident, typ << 8 | code)
    return Tuple(src, dst, proto, 0, 0)


class FakeConntrack:
    """Just enough of nf_conntrack for NAT: the ConntrackIndex protocol
    plus classification and confirm."""

    def __init__(self) -> None:
        self.by_tuple: dict[Tuple, tuple[Conn, int]] = {}
        self.conns: list[Conn] = []
        self.killed: list[Conn] = []
        self.nat: Nat | None = None

    # ConntrackIndex
    def tuple_taken(self, t: Tuple, ignore: Conn) -> bool:
        found = self.by_tuple.get(t)
        if found is None or found[0] is ignore:
            return False
        return found[0].orig != ignore.orig

    def lookup(self, t: Tuple) -> tuple[Conn, int] | None:
        return self.by_tuple.get(t)

    def kill(self, conn: Conn) -> bool:
        if conn not in self.conns:
            return False
        self.conns.remove(conn)
        for t in (conn.orig, conn.reply):
            if self.by_tuple.get(t, (None, 0))[0] is conn:
                del self.by_tuple[t]
        self.killed.append(conn)
        if self.nat is not None:
            self.nat.forget(conn)
        return True

    # the tracker's side
    def track(self, pkt: Packet) -> None:
        d = pkt.data
        t = _tuple_at(d, 0)
        if t is None:
            return
        if t.proto == IPPROTO_ICMP and (t.dport >> 8) in ICMP_ERRORS:
            inner = _tuple_at(d, pkt.ihl + 8)
            if inner is None:
                return
            found = self.by_tuple.get(invert(inner))
            if found is None:
                pkt.ct, pkt.ctinfo = None, IP_CT_NONE
                return
            conn, direction = found
            pkt.ct, pkt.ctinfo = conn, IP_CT_RELATED_REPLY if direction else IP_CT_RELATED
            pkt.ctdir = direction
            return
        found = self.by_tuple.get(t)
        if found is not None:
            conn, direction = found
            if direction:
                pkt.ct, pkt.ctinfo, pkt.ctdir = conn, IP_CT_ESTABLISHED_REPLY, 1
                conn.status |= IPS_SEEN_REPLY
            else:
                seen = conn.status & IPS_SEEN_REPLY
                pkt.ct, pkt.ctinfo, pkt.ctdir = conn, IP_CT_ESTABLISHED if seen else IP_CT_NEW, 0
            return
        if t.proto == IPPROTO_ICMP and (t.dport >> 8) not in ICMP_QUERIES:
            pkt.ct, pkt.ctinfo = None, IP_CT_NONE
            return
        conn = Conn(orig=t, reply=invert(t))
        pkt.ct, pkt.ctinfo, pkt.ctdir = conn, IP_CT_NEW, 0

    def confirm(self, pkt: Packet) -> bool:
        conn = pkt.ct
        if conn is None or conn.status & IPS_CONFIRMED:
            return True
        for t in (conn.orig, conn.reply):
            if t in self.by_tuple:
                return False  # insert clash: the kernel drops the packet
        conn.status |= IPS_CONFIRMED
        self.by_tuple[conn.orig] = (conn, 0)
        self.by_tuple[conn.reply] = (conn, 1)
        self.conns.append(conn)
        return True


@dataclass
class FakeIface:
    name: str
    addresses: list[tuple[int, int]]


@dataclass
class FakeRoute:
    dev: str
    via: int | None = None


@dataclass
class FakeHost:
    interfaces: dict[str, FakeIface] = field(default_factory=dict)
    routes: list[tuple[int, int, FakeRoute]] = field(default_factory=list)  # (net, plen, route)

    def add(self, name: str, *addrs: str) -> None:
        pairs = []
        for a in addrs:
            text, _, plen = a.partition("/")
            pairs.append((ip(text), int(plen or 32)))
            net_plen = int(plen or 32)
            mask = (0xFFFFFFFF << (32 - net_plen)) & 0xFFFFFFFF
            self.routes.append((ip(text) & mask, net_plen, FakeRoute(name)))
        self.interfaces[name] = FakeIface(name, pairs)

    def default(self, dev: str, via: str) -> None:
        self.routes.append((0, 0, FakeRoute(dev, ip(via))))

    def route(self, dst: int) -> FakeRoute | None:
        best: tuple[int, FakeRoute] | None = None
        for net, plen, r in self.routes:
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
            if dst & mask == net and (best is None or plen > best[0]):
                best = (plen, r)
        return best[1] if best else None

    def is_local(self, addr: int) -> bool:
        return any(a == addr for i in self.interfaces.values() for a, _ in i.addresses)


class FakeEnv:
    def __init__(self, nat: Nat, host: FakeHost) -> None:
        self._nat = nat
        self._host = host

    @property
    def host(self) -> Any:
        return self._host

    def nat(self) -> Nat:
        return self._nat

    def log(self, text: str) -> None:
        pass


def ip_decrease_ttl(d: bytearray) -> None:
    """ip_forward's TTL decrement with the kernel's checksum step."""
    check = struct.unpack_from("=H", d, 10)[0] + struct.unpack("=H", b"\x01\x00")[0]
    struct.pack_into("=H", d, 10, (check + (check >= 0xFFFF)) & 0xFFFF)
    d[8] -= 1


class Router:
    """Forwarding host with a nat table: PREROUTING (DNAT), forward (TTL),
    POSTROUTING (SNAT), confirm; or local delivery through INPUT."""

    def __init__(self, rules: str, host: FakeHost, nat_table: bool = True) -> None:
        self.host = host
        self.ct = FakeConntrack()
        self.nat = Nat(self.ct, host)
        self.ct.nat = self.nat
        self.env = FakeEnv(self.nat, host)
        self.nat_table = nat_table
        rs = restore(Ruleset(), rules, RestoreOptions()).ruleset if rules else Ruleset()
        env: Any = self.env
        self.table = compile_table(rs.tables["nat"], env) if "nat" in rs.tables else None

    def _run(self, chain: str) -> Any:
        if not self.nat_table:
            return None
        table = self.table

        def run(pkt: Packet) -> int:
            if table is None or chain not in table.chains:
                return NF_ACCEPT
            return do_table(table, chain, pkt)

        return run

    def forward(self, data: bytes, indev: str, decrement_ttl: bool = True) -> tuple[int, Packet]:
        """One packet through the router; (verdict, packet as it leaves)."""
        pkt = Packet(bytearray(data), indev=indev)
        self.ct.track(pkt)
        pkt.hook = "PREROUTING"
        v = self.nat.hook(pkt, "PREROUTING", self._run("PREROUTING"))
        if v != NF_ACCEPT:
            return v, pkt
        if self.host.is_local(pkt.dst):
            pkt.hook = "INPUT"
            v = self.nat.hook(pkt, "INPUT", self._run("INPUT"))
            if v == NF_ACCEPT and not self.ct.confirm(pkt):
                v = 0
            return v, pkt
        route = self.host.route(pkt.dst)
        if route is None:
            return 0, pkt  # no route: dropped
        if decrement_ttl:
            ip_decrease_ttl(pkt.data)
            pkt.ttl -= 1
        pkt.outdev = route.dev
        pkt.hook = "POSTROUTING"
        v = self.nat.hook(pkt, "POSTROUTING", self._run("POSTROUTING"))
        if v == NF_ACCEPT and not self.ct.confirm(pkt):
            v = 0
        return v, pkt

    def output(self, data: bytes) -> tuple[int, Packet]:
        """A packet the router itself sends: OUTPUT (DNAT), POSTROUTING."""
        pkt = Packet(bytearray(data))
        pkt.local = True
        self.ct.track(pkt)
        route = self.host.route(pkt.dst)
        assert route is not None
        pkt.outdev = route.dev
        pkt.hook = "OUTPUT"
        v = self.nat.hook(pkt, "OUTPUT", self._run("OUTPUT"))
        if v != NF_ACCEPT:
            return v, pkt
        route = self.host.route(pkt.dst) or route
        pkt.outdev = route.dev
        pkt.hook = "POSTROUTING"
        v = self.nat.hook(pkt, "POSTROUTING", self._run("POSTROUTING"))
        if v == NF_ACCEPT and not self.ct.confirm(pkt):
            v = 0
        return v, pkt
