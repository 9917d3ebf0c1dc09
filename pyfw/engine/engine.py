"""The whole path of a frame through a Linux host, as netfilter orders it.

    PREROUTING  raw(-300) conntrack(-200) mangle(-150) nat/DNAT(-100)
    routing decision
    INPUT       mangle(-150) filter(0) security(50) nat/SNAT(100) confirm
    FORWARD     mangle(-150) filter(0) security(50)       (TTL and MTU checks first)
    OUTPUT      raw(-300) conntrack(-200) mangle(-150) nat/DNAT(-100) filter(0) security(50)
    POSTROUTING mangle(-150) nat/SNAT(100) confirm

`Engine.receive(frame, iface, now)` and `Engine.send(ipdata, now)` (a
packet the host itself sends) return a `Result`: the verdict, the path, the
egress interface, and every frame the host emitted because of it (the
forwarded packet, REJECT's reply, the host's own answers).  No I/O here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfw.engine.api import (
    NF_ACCEPT,
    NF_DROP,
    NF_QUEUE,
    NF_STOLEN,
    NF_VERDICT_MASK,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
)
from pyfw.engine.packet import IP_DF, IP_MF, IP_OFFMASK, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Packet
from pyfw.engine.tables import CompiledTable, TraceStep, compile_table, do_table
from pyfw.ruleset.model import Ruleset

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

# Extensions whose use makes the kernel track connections in the namespace
# (nf_ct_netns_get), besides a nat table being loaded.
CT_USERS = frozenset({
    "match:conntrack", "match:state", "match:connmark", "target:CONNMARK", "target:CT",
    "target:NOTRACK", "target:DNAT", "target:SNAT", "target:MASQUERADE", "target:REDIRECT",
})


@dataclass
class Emitted:
    iface: str
    frame: bytes


@dataclass
class Result:
    """What became of one input frame."""

    verdict: str | None
    path: str
    out: str | None = None
    emitted: list[Emitted] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    reason: str | None = None  # why a malformed frame was dropped


VERDICT_NAMES = {NF_ACCEPT: "ACCEPT", NF_DROP: "DROP", NF_STOLEN: "STOLEN", NF_QUEUE: "STOLEN"}


class EngineEnv:
    """The Env services (pyfw.engine.api) bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._shared: dict[tuple[str, str], Any] = {}

    @property
    def host(self) -> Any:
        return self._engine.host

    def log(self, text: str) -> None:
        e = self._engine
        e.logs.append((e.now, text))

    def send_local(self, data: bytearray, pkt: Packet) -> None:
        e = self._engine
        e.pending_local.append((data, pkt))

    def shared(self, kind: str, name: str, factory: Callable[[], Any]) -> Any:
        key = (kind, name)
        obj = self._shared.get(key)
        if obj is None:
            obj = self._shared[key] = factory()
        return obj

    def nat(self) -> Any:
        return self._engine.nat

    def nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        self._engine.nflogs.append((self._engine.now, group, prefix))

    def reject_sent(self) -> None:
        self._engine.rejected = True


class Engine:
    """One simulated host: its tables, connection table and NAT."""

    def __init__(self, ruleset: Ruleset, host: Any) -> None:
        self.host = host
        self.ruleset = ruleset
        self.now = 0.0
        self.logs: list[tuple[float, str]] = []
        self.nflogs: list[tuple[float, int, str]] = []
        self.pending_local: list[tuple[bytearray, Packet]] = []
        self.rejected = False
        self.env = EngineEnv(self)
        self.stats: dict[str, int] = {}
        from pyfw.engine.conntrack.tracker import Conntrack
        from pyfw.engine.nat import Nat

        self.ct = Conntrack(host)
        self.nat = Nat(self.ct, host)
        self.load(ruleset)

    # ------------------------------------------------------------ rulesets
    def load(self, ruleset: Ruleset) -> None:
        """Compile a ruleset (a restore swaps it between two packets)."""
        self.ruleset = ruleset
        self.tables: dict[str, CompiledTable] = {
            name: compile_table(t, self.env) for name, t in ruleset.tables.items()}
        self.tracking = "nat" in ruleset.tables or _uses_conntrack(ruleset)

    def _table(self, name: str, hook: str, pkt: Packet, trace: list[TraceStep] | None) -> int:
        t = self.tables.get(name)
        if t is None or hook not in t.chains:
            return NF_ACCEPT
        pkt.hook = hook
        return do_table(t, hook, pkt, trace)

    # ------------------------------------------------------------ entry points
    def receive(self, frame: bytes, iface: str, now: float, trace: bool = False) -> Result:
        """A frame arriving on `iface`."""
        self.now = now
        try:
            return self._receive(frame, iface, now, trace)
        except Exception as exc:  # never out of the packet loop
            self._count("engine_error")
            return Result(None, "malformed", reason=f"internal: {type(exc).__name__}: {exc}")

    def send(self, data: bytes, now: float, trace: bool = False) -> Result:
        """A packet the host itself sends (simulate's `local` interface)."""
        self.now = now
        try:
            from pyfw.wire.ipv4 import validate

            reason = validate(bytes(data))
            if reason is not None:
                self._count("malformed:" + reason)
                return Result(None, "malformed", reason=reason)
            res = Result(None, "output")
            tr = res.trace if trace else None
            pkt = Packet(bytearray(data[:_tot_len(data)]), time=now)
            pkt.local = True
            pkt.uid = pkt.gid = 0
            verdict = self._output(pkt, res, tr)
            res.verdict = VERDICT_NAMES.get(verdict & NF_VERDICT_MASK, "DROP")
            self._flush_local(res, trace)
            return res
        except Exception as exc:
            self._count("engine_error")
            return Result(None, "malformed", reason=f"internal: {type(exc).__name__}: {exc}")

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # ------------------------------------------------------------ receive path
    def _receive(self, frame: bytes, iface: str, now: float, trace: bool) -> Result:
        if len(frame) < 14:
            self._count("malformed:short-ethernet")
            return Result(None, "malformed", reason="short-ethernet")
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == ETH_P_ARP:
            return self._arp(frame, iface)
        if ethertype != ETH_P_IP:
            return Result(None, "ignored")
        from pyfw.wire.ipv4 import validate

        ip = bytes(frame[14:])
        reason = validate(ip)
        if reason is not None:
            self._count("malformed:" + reason)
            return Result(None, "malformed", reason=reason)
        pkt = Packet(bytearray(ip[:_tot_len(ip)]), indev=iface, time=now, eth=bytes(frame[:14]))
        dst_mac = frame[:6]
        if dst_mac == BROADCAST_MAC:
            pkt.pkttype = PACKET_BROADCAST
        elif dst_mac[0] & 1:
            pkt.pkttype = PACKET_MULTICAST
        else:
            # A frame for another MAC would be dropped by Linux before the
            # hooks; captures replayed here come from other machines, so a
            # unicast frame counts as addressed to this host.
            pkt.pkttype = PACKET_HOST
        res = Result(None, "prerouting")
        tr = res.trace if trace else None
        verdict = self._prerouting(pkt, res, tr)
        if verdict is not None:
            res.verdict = VERDICT_NAMES.get(verdict & NF_VERDICT_MASK, "DROP")
        self._flush_local(res, trace)
        return res

    def _prerouting(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int | None:
        if self.tracking and (pkt.frag_off & (IP_MF | IP_OFFMASK)):
            whole = self.ct.defrag(pkt)
            if whole is None:
                res.path = "prerouting"
                return NF_STOLEN
            pkt = whole
        v = self._table("raw", "PREROUTING", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            pkt.hook = "PREROUTING"
            self.ct.in_hook(pkt)
        v = self._table("mangle", "PREROUTING", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            v = self.nat.hook(pkt, "PREROUTING", lambda p: self._table("nat", "PREROUTING", p, tr))
            if v != NF_ACCEPT:
                return v
        return self._route_input(pkt, res, tr)

    def _route_input(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int | None:
        host = self.host
        if host.is_local(pkt.dst) or pkt.pkttype != PACKET_HOST or pkt.dst == 0xFFFFFFFF:
            res.path = "input"
            return self._input(pkt, res, tr)
        if not host.sysctl_int("net.ipv4.ip_forward"):
            res.path = "no-route"
            return NF_DROP
        route = host.route(pkt.dst)
        if route is None:
            res.path = "no-route"
            self._icmp_error(pkt, 3, 0)  # net unreachable
            return NF_DROP
        res.path = "forward"
        return self._forward(pkt, route, res, tr)

    def _forward(self, pkt: Packet, route: Any, res: Result, tr: list[TraceStep] | None) -> int:
        if pkt.ttl <= 1:
            self._icmp_error(pkt, 11, 0)  # time exceeded in transit
            return NF_DROP
        mtu = self.host.mtu(route.dev)
        if pkt.tot_len > mtu and pkt.frag_off & IP_DF:
            self._icmp_error(pkt, 3, 4, mtu=mtu)  # fragmentation needed
            return NF_DROP
        from pyfw.wire.ipv4 import decrease_ttl

        decrease_ttl(pkt)
        pkt.outdev = route.dev
        for table in ("mangle", "filter", "security"):
            v = self._table(table, "FORWARD", pkt, tr)
            if v != NF_ACCEPT:
                return v
        return self._postrouting(pkt, route, res, tr)

    def _input(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int:
        for table in ("mangle", "filter", "security"):
            v = self._table(table, "INPUT", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            v = self.nat.hook(pkt, "INPUT", lambda p: self._table("nat", "INPUT", p, tr))
            if v != NF_ACCEPT:
                return v
            if not self.ct.confirm(pkt):
                return NF_DROP
        self._deliver(pkt)
        return NF_ACCEPT

    def _output(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int:
        route = self.host.route(pkt.dst)
        if route is None:
            res.path = "no-route"
            return NF_DROP
        pkt.outdev = route.dev
        v = self._table("raw", "OUTPUT", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            pkt.hook = "OUTPUT"
            self.ct.in_hook(pkt)
        v = self._table("mangle", "OUTPUT", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            v = self.nat.hook(pkt, "OUTPUT", lambda p: self._table("nat", "OUTPUT", p, tr))
            if v != NF_ACCEPT:
                return v
        for table in ("filter", "security"):
            v = self._table(table, "OUTPUT", pkt, tr)
            if v != NF_ACCEPT:
                return v
        # re-route after a DNAT or mark change, as ip_route_me_harder does
        route = self.host.route(pkt.dst) or route
        pkt.outdev = route.dev
        if self.host.is_local(pkt.dst):
            # to ourselves: out through lo and back in
            return self._loopback(pkt, route, res, tr)
        return self._postrouting(pkt, route, res, tr)

    def _loopback(self, pkt: Packet, route: Any, res: Result, tr: list[TraceStep] | None) -> int:
        pkt.outdev = "lo"
        for table in ("mangle",):
            v = self._table(table, "POSTROUTING", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            v = self.nat.hook(pkt, "POSTROUTING", lambda p: self._table("nat", "POSTROUTING", p, tr))
            if v != NF_ACCEPT:
                return v
            if not self.ct.confirm(pkt):
                return NF_DROP
        back = pkt.copy()
        back.indev, back.outdev, back.local = "lo", "", False
        back.ct, back.ctinfo = None, -1
        self._prerouting(back, Result(None, "input"), tr)
        return NF_ACCEPT

    def _postrouting(self, pkt: Packet, route: Any, res: Result, tr: list[TraceStep] | None) -> int:
        v = self._table("mangle", "POSTROUTING", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            v = self.nat.hook(pkt, "POSTROUTING", lambda p: self._table("nat", "POSTROUTING", p, tr))
            if v != NF_ACCEPT:
                return v
            if not self.ct.confirm(pkt):
                return NF_DROP
        res.out = route.dev
        self._transmit(pkt, route, res)
        return NF_ACCEPT

    # ------------------------------------------------------------ the host's answers
    def _deliver(self, pkt: Packet) -> None:
        """What the host's own stack does with a packet INPUT accepted."""
        from pyfw.wire import icmp, tcp

        host = self.host
        if pkt.fragment or pkt.frag_off & IP_MF:
            return  # (reassembly of what is for us happens in the stack)
        if pkt.pkttype != PACKET_HOST or not host.is_local(pkt.dst):
            return  # broadcast / multicast: nothing answers
        if pkt.proto == IPPROTO_ICMP:
            if pkt.icmp_type == 8 and not host.sysctl_int("net.ipv4.icmp_echo_ignore_all"):
                self._send_host(icmp.build_echo_reply(bytes(pkt.data)), pkt)
            return
        if pkt.proto == IPPROTO_TCP and pkt.l4ok:
            if host.service("tcp", pkt.dst, pkt.dport):
                return
            if not pkt.tcp_flags & 0x04:  # never answer a RST
                self._send_host(tcp.build_rst_for(bytes(pkt.data)), pkt)
            return
        if pkt.proto == IPPROTO_UDP and pkt.l4ok:
            if host.service("udp", pkt.dst, pkt.dport):
                return
            self._icmp_error(pkt, 3, 3)
            return
        if pkt.proto not in (IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP):
            self._icmp_error(pkt, 3, 2)  # protocol unreachable

    def _icmp_error(self, pkt: Packet, type_: int, code: int, mtu: int | None = None) -> None:
        from pyfw.wire import icmp

        reply = icmp.build_error(type_, code, bytes(pkt.data), mtu=mtu, src=self._error_source(pkt))
        if reply is not None:
            self._send_host(reply, pkt)

    def _error_source(self, pkt: Packet) -> int | None:
        """icmp_send's source: the address of the interface the packet came in on."""
        if pkt.indev:
            return self.host.primary_address(pkt.indev)
        return None

    def _send_host(self, data: bytes | bytearray, cause: Packet) -> None:
        self.pending_local.append((bytearray(data), cause))

    def _flush_local(self, res: Result, trace: bool) -> None:
        """Packets the host made meanwhile go through OUTPUT/POSTROUTING."""
        guard = 0
        while self.pending_local and guard < 16:
            guard += 1
            data, _cause = self.pending_local.pop(0)
            sub = Result(None, "output")
            pkt = Packet(data, time=self.now)
            pkt.local = True
            self._output(pkt, sub, res.trace if trace else None)
            res.emitted.extend(sub.emitted)

    # ------------------------------------------------------------ transmit
    def _transmit(self, pkt: Packet, route: Any, res: Result) -> None:
        from pyfw.wire.frag import fragment

        mtu = self.host.mtu(route.dev)
        datagrams = [bytes(pkt.data)]
        if pkt.tot_len > mtu:
            if pkt.frag_off & IP_DF:
                return
            datagrams = fragment(bytes(pkt.data), mtu)
        src_mac = self.host.mac(route.dev)
        nexthop = route.gateway if route.gateway is not None else pkt.dst
        dst_mac = self.host.neighbor_mac(nexthop, route.dev) or ZERO_MAC
        if pkt.dst == 0xFFFFFFFF or self.host.is_broadcast(pkt.dst, route.dev):
            dst_mac = BROADCAST_MAC
        head = dst_mac + src_mac + b"\x08\x00"
        for d in datagrams:
            res.emitted.append(Emitted(route.dev, head + d))

    def _arp(self, frame: bytes, iface: str) -> Result:
        from pyfw.wire import arp

        reply = arp.answer(frame, self.host, iface)
        res = Result(None, "arp")
        if reply is not None:
            res.emitted.append(Emitted(iface, reply))
        return res


def _tot_len(data: bytes | bytearray) -> int:
    return int(data[2] << 8 | data[3])


def _uses_conntrack(ruleset: Ruleset) -> bool:
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                for m in rule.matches:
                    if "match:" + m.name in CT_USERS:
                        return True
                if rule.target.kind == "extension" and "target:" + rule.target.name in CT_USERS:
                    return True
    return False
