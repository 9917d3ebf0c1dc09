"""The established-flow fast path: a flow direction the slow path has
already walked, replayed from a precompiled entry.

Once a connection is confirmed and steady, every further packet of one
direction takes the same walk: the same rules tested, the same counters
bumped, the same NAT rewrite, the same route and Ethernet header.  The
entry remembers them, keyed by the bytes that decide the walk (in
interface; IP addresses and ports; for TCP the data-offset and flag bytes),
and is valid only while the connection is exactly as it was when the entry
was learnt (status bits, TCP state, connmark, not expired or removed).

What the kernel does per packet still runs per packet: the protocol
tracker (TCP state machine and window checks, UDP timeouts, accounting,
checksum checks) through the very handlers `Conntrack.in_hook` calls.  If a
handler says anything other than "accepted, nothing changed" (out of
window, a state change, ASSURED, a kill), the packet continues on the slow
path from that conntrack outcome, exactly as `in_hook` would have left it.

The TCP lane (the top of `FastPath.receive`) takes the commonest packet of
all, an in-window ACK without SYN/FIN/RST of an ESTABLISHED, ASSURED
connection, through `tcp_ack_fast` (the tracker's own lane for that case,
tested against tcp_packet) with the header read in one unpack, both
checksums checked on one integer of the datagram and the output frame made
by one addition to it; whatever the lane is unsure of, it leaves untouched
to the general replay below it.

An entry is learnt only from a slow-path walk in which every rule tested,
matched or not, depends on nothing but the key and the connection (see
`PURE_MATCHES`), ended in a standard verdict, logged and emitted nothing
else; first packets, fragments, IP options, bad checksums, TTL <= 1,
broadcasts, packets for the host itself, ICMP: always the slow path.

Checksums: the slow path's updates (RFC 1624 csum_replace for NAT, the
TTL decrement) all leave the canonical value of (old + delta) mod 0xFFFF,
so one precomputed delta per checksum gives the same bytes; each entry's
deltas are checked against the packet it was learnt from.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyfw.engine.api import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IP_CT_NONE,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_DYING,
    IPS_EXPECTED,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
    NF_DROP,
)
from pyfw.engine.conntrack import tcp as ct_tcp
from pyfw.engine.conntrack import udp as ct_udp
from pyfw.engine.conntrack.conn import Conn, Tuple
from pyfw.engine.conntrack.table import CT_ACCEPT, CT_REPEAT, IPS_NAT_CLASH, checksum_ok
from pyfw.engine.conntrack.tcp import tcp_ack_fast
from pyfw.engine.engine import Engine
from pyfw.engine.packet import Packet
from pyfw.engine.result import Emitted, Result
from pyfw.engine.tables import A_GOTO, A_JUMP, A_NONE, A_RETURN, A_VERDICT, CompiledChain, CompiledTable, TraceStep

if TYPE_CHECKING:
    from pyfw.ruleset.model import Counters, Rule

_M = 0xFFFF
_FIXED_TIMEOUT = 1 << 10  # IPS_FIXED_TIMEOUT
_TTL_CK = struct.Struct("!BBH")     # TTL, protocol, header checksum (IP bytes 8-11)
_CK = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TCP_SEQ = struct.Struct("!II2xH")  # seq, ack, (offset, flags), window at IP byte 24
_ADDRS_PORTS = struct.Struct("!IIHH")
# the lane's fields from frame byte 12 on: ethertype, version/IHL, total
# length, flags/fragment offset, TTL, protocol, header checksum, TCP
# sequence and acknowledgement numbers, window, TCP checksum
_LANE = struct.Struct("!HBxH2xHBBH12xII2xHH")
_TS_ONLY = b"\x01\x01\x08\x0a"  # NOP NOP timestamp: options with no SACK block
_TUPLE_NEW = tuple.__new__
_WHOLE = frozenset((b"\x00\x00", b"\x40\x00"))  # flags and offset of an unfragmented datagram

IPPROTO_TCP = 6
IPPROTO_UDP = 17
TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10

# Entries per interface before the table is swept of dead connections'
# entries (otherwise dropped only when a lookup meets them).
MAX_ENTRIES = 1 << 15
# A flow whose walk could not be cached is tried again after this many
# slow-path packets, doubling up to MAX_BACKOFF.
FIRST_BACKOFF = 4
MAX_BACKOFF = 256


def _conntrack_pure(data: Any) -> bool:
    from pyfw.ext.match_conntrack import F_EXPIRES

    return not (data.match_flags | data.invert_flags) & F_EXPIRES  # --ctexpire reads the clock


def _tcp_pure(data: Any) -> bool:
    from pyfw.ext.match_tcp import INV_OPTION

    return not data.option and not data.invflags & INV_OPTION  # options are not in the key


def _always(data: Any) -> bool:
    return True


# Matches whose result is a function of what an entry is keyed on and
# checks: the packet's addresses, ports, protocol, TCP flags (key), the in
# and out interface (key, route), the connection's tuples, status, ctinfo
# and mark (checked per packet), the host's fixed addresses.  A received
# packet's nfmark is 0 until a MARK target runs, and no target is ever on a
# cached walk, so `mark` sees 0 each time.  Everything else (limit,
# hashlimit, recent, length, ttl, tos, dscp, mac, owner, --ctexpire, TCP
# options...) and every extension target is never cached.
PURE_MATCHES: dict[str, Callable[[Any], bool]] = {
    "tcp": _tcp_pure,
    "udp": _always,
    "multiport": _always,
    "conntrack": _conntrack_pure,
    "state": _conntrack_pure,
    "comment": _always,
    "iprange": _always,
    "addrtype": _always,
    "pkttype": _always,
    "mark": _always,
    "connmark": _always,
}


def rule_is_pure(rule: Rule) -> bool:
    """Whether testing this rule's matches needs nothing beyond the key."""
    for m in rule.matches:
        pure = PURE_MATCHES.get(m.name)
        if pure is None or not pure(m.data):
            return False
    return True


# Engine methods whose work an entry replays: a subclass that overrides one
# (the daemon's, the TAP gateway's) does something there an entry would
# skip, so it gets no fast path unless it asks for one.
REPLAYED = ("_receive", "_prerouting", "_prerouting_hooks", "_route_input", "_forward", "_forward_options",
            "_table", "_postrouting", "_postrouting_hooks", "_transmit", "_l2_head", "_verdict_name", "_flush_local")


def replays(cls: type) -> bool:
    """Whether an engine of class `cls` may take the fast path."""
    from pyfw.engine.engine import Engine

    return all(getattr(cls, name) is getattr(Engine, name) for name in REPLAYED)


def enabled_by_default() -> bool:
    """PYFW_FASTPATH=0 turns the fast path off (debugging, A/B runs)."""
    return os.environ.get("PYFW_FASTPATH", "1") not in ("0", "off", "no", "false")


class Entry:
    """One flow direction's precompiled walk."""

    __slots__ = (
        "conn", "direction", "ctinfo", "handler", "status", "tcp_state", "mark", "pkt",
        "counters", "verdict", "out", "head", "mtu", "min_len", "rewrite", "newap", "d_ip", "d_l4", "udp",
        "lane", "hlen", "pseudo", "delta",
    )

    def __init__(self) -> None:
        self.conn: Conn
        self.direction = 0
        self.ctinfo = 0
        self.handler: Callable[..., int]
        self.status = 0
        self.tcp_state = -1          # TCP: the state it must still be in; -1: not TCP
        self.mark = 0
        self.pkt: Packet             # what the tracker reads (refreshed per packet)
        self.counters: tuple[Counters, ...] = ()
        self.verdict = "ACCEPT"      # or "DROP" (in FORWARD or POSTROUTING)
        self.out: str | None = None  # egress interface (ACCEPT)
        self.head = b""              # its Ethernet header
        self.mtu = 0
        self.min_len = 40            # the shortest datagram the tracker is sure to take (TCP 40, UDP 28)
        self.rewrite = False         # NAT changes addresses/ports (and the L4 checksum)
        self.newap = b""             # the addresses and ports after NAT (IP bytes 12-23)
        self.d_ip = 0                # header checksum delta (TTL and NAT)
        self.d_l4 = 0                # TCP/UDP checksum delta (NAT)
        self.udp = False
        # the TCP lane (an ESTABLISHED connection's plain ACKs: tcp_ack_fast)
        self.lane = False
        self.hlen = 40               # IP and TCP header length (the key fixes the data offset)
        self.pseudo = 0              # the pseudo-header's words but the length, less the IP header's 20
        self.delta = 0               # TTL and NAT rewrite of IP bytes 0-37, as an integer to add (checksums aside)


class _Backoff:
    """A flow direction whose walk could not be cached, and when to retry."""

    __slots__ = ("left", "next")

    def __init__(self, wait: int) -> None:
        self.left = wait
        self.next = wait


class FastPath:
    """The per-engine cache of established flow directions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.flows: dict[str, dict[bytes, Entry]] = {}     # per in interface
        self.waits: dict[str, dict[bytes, _Backoff]] = {}  # flows that could not be cached, per in interface
        self._ct_table: Any = None
        self._impure: dict[int, list[int]] = {}
        self.hits = 0      # packets replayed from an entry
        self.learnt = 0    # entries made
        self.resumed = 0   # entries left mid-way (the tracker changed something)
        self.lane_hits = 0       # of `hits`, the TCP lane's (tcp_ack_fast)
        self.udp_lane_hits = 0   # UDP packets the inline tracker took, and left to the tracker
        self.udp_lane_misses = 0
        self.max_entries = MAX_ENTRIES

    def clear(self) -> None:
        """Forget every entry (ruleset load, reset, a new connection table)."""
        self.flows.clear()
        self.waits.clear()
        self._impure.clear()
        self._ct_table = self.engine.ct.table

    # ------------------------------------------------------------ per packet
    def receive(self, frame: bytes, iface: str, now: float) -> Result:
        """Engine.receive for one frame: from its entry if it has one, else
        the slow path (learning an entry when the walk allows)."""
        e = self.engine
        if len(frame) >= 54 and frame[23] == IPPROTO_TCP:
            # the TCP lane: the commonest packet of all, an ACK of an
            # established connection, with every test of the general
            # replay below (and the tracker's) in as few steps as can be;
            # anything else falls through to the general replay
            flows = self.flows.get(iface)
            ent = flows.get(frame[26:38] + frame[46:48]) if flows is not None else None
            if ent is not None and ent.lane and e.ct.table is self._ct_table:
                # (declared: compiled, the fields are machine ints from here on)
                eth: int
                vihl: int
                tot_len: int
                frag: int
                ttl: int
                ck: int
                seq: int
                ack: int
                win: int
                l4: int
                eth, vihl, tot_len, frag, ttl, _proto, ck, seq, ack, win, l4 = _LANE.unpack_from(frame, 12)
                if (eth == 0x0800 and vihl == 0x45 and not frame[0] & 1 and (not frag or frag == 0x4000) and ttl > 1
                        and ent.hlen <= tot_len <= ent.mtu and len(frame) - 14 >= tot_len):
                    ip = frame[14:14 + tot_len]
                    v = int.from_bytes(ip, "big")
                    conn = ent.conn
                    ctk = e.ct
                    cfg = ctk.cfg
                    # the header checksum (ip_rcv), then conntrack's of the segment
                    if (not (v >> ((tot_len - 20) << 3)) % _M and conn.status == ent.status and conn.mark == ent.mark
                            and conn.timeout_at > now
                            and (not cfg.checksum
                                 or not ((v << 8 if tot_len & 1 else v) + ent.pseudo + tot_len) % _M)):
                        hlen = ent.hlen
                        ctk.now = now
                        if tcp_ack_fast(cfg, conn, conn.proto_state, ent.direction, seq, ack, win,
                                        (seq + tot_len - hlen) & 0xFFFFFFFF, tot_len, now,
                                        hlen == 40 or (hlen == 52 and frame[54:58] == _TS_ONLY)):
                            self.hits += 1
                            self.lane_hits += 1
                            for c in ent.counters:
                                c.packets += 1
                                c.bytes += tot_len
                            e.rejected_last = False
                            if ent.verdict != "ACCEPT":
                                return Result(ent.verdict, "forward")
                            # the rewrite as one addition: the TTL, NAT's addresses and ports
                            # (ent.delta), the two checksums as the general replay sets them
                            d = ent.delta + ((((ck + ent.d_ip) % _M) - ck) << 208)
                            if ent.rewrite:
                                d += ((l4 + ent.d_l4) % _M) - l4
                            out = ent.head + (v + (d << ((tot_len - 38) << 3))).to_bytes(tot_len, "big")
                            return Result("ACCEPT", "forward", ent.out, [Emitted(ent.out, out)],  # type: ignore[arg-type]
                                          [])
        # the key first (IPv4 without options, unicast, TCP or UDP); the
        # rest of the shape is checked on a hit, and by _key before learning
        if len(frame) < 42 or frame[12:15] != b"\x08\x00\x45" or frame[0] & 1:
            return e._receive(frame, iface, now, False)
        proto = frame[23]
        if proto == IPPROTO_TCP and len(frame) >= 54:
            if frame[47] & (TH_SYN | TH_RST):
                # never an entry (_learn), so no key, no lookup: a new flow's
                # first packet straight to the slow path
                return e._receive(frame, iface, now, False)
            key = frame[26:38] + frame[46:48]
        elif proto == IPPROTO_UDP and len(frame) >= 42:
            key = frame[26:38]
        else:
            return e._receive(frame, iface, now, False)
        flows = self.flows.get(iface)
        if flows is None:
            flows = self.flows[iface] = {}
        ent = flows.get(key)
        if ent is None or e.ct.table is not self._ct_table:
            return self._miss(frame, iface, now, key)
        tot_len = frame[16] << 8 | frame[17]
        v = int.from_bytes(frame[14:34], "big")
        if (not ent.min_len <= tot_len <= ent.mtu or len(frame) - 14 < tot_len or frame[20:22] not in _WHOLE
                or frame[22] <= 1 or not v or v % _M):
            return e._receive(frame, iface, now, False)  # this packet is odd, the flow is not
        conn = ent.conn
        if (conn.status != ent.status or conn.mark != ent.mark or conn.timeout_at <= now
                or (ent.tcp_state >= 0 and conn.proto_state.state != ent.tcp_state)):
            del flows[key]
            return self._miss(frame, iface, now, key)
        # the tracker, as in_hook runs it for this connection and direction
        ip = frame[14:14 + tot_len]
        ctk = e.ct
        # a UDP packet that cannot change its connection: the tracker's
        # work inline; anything else (and every TCP packet here) the tracker
        done = False
        if ent.udp and not ctk.listeners:
            done = _udp_lane(ctk, conn, ip, tot_len, now, ent.direction)
            if done:
                self.udp_lane_hits += 1
            else:
                self.udp_lane_misses += 1
        if not done:
            p = ent.pkt
            p.data = ip  # (the trackers only read it; Packet.data is typed Any for this)
            p.tot_len = tot_len
            p.time = now
            if not ent.udp:
                p.tcp_seq, p.tcp_ack, p.tcp_win = _TCP_SEQ.unpack_from(ip, 24)
            ctk.now = now
            before = ctk.event_state(conn) if ctk.listeners else None
            ret = ent.handler(ctk, conn, p, ent.ctinfo, ent.direction, True)
            if (ret != CT_ACCEPT or conn.status != ent.status
                    or (ent.tcp_state >= 0 and conn.proto_state.state != ent.tcp_state)):
                del flows[key]
                self.resumed += 1
                return e._receive(frame, iface, now, False,
                                  _resume(ctk, conn, ent.ctinfo, ent.direction, ret, before))
        self.hits += 1
        for c in ent.counters:
            c.packets += 1
            c.bytes += tot_len
        e.rejected_last = False
        if ent.verdict != "ACCEPT":
            res = Result(ent.verdict, "forward")
        else:
            ck = ((ip[10] << 8 | ip[11]) + ent.d_ip) % _M
            if ent.rewrite:
                if ent.udp:
                    l4 = ip[26] << 8 | ip[27]
                    if l4:
                        l4 = (l4 + ent.d_l4) % _M or _M
                    out = b"".join((ent.head, ip[:8], _TTL_CK.pack(ip[8] - 1, IPPROTO_UDP, ck), ent.newap,
                                    ip[24:26], _CK.pack(l4), ip[28:]))
                else:
                    l4 = ((ip[36] << 8 | ip[37]) + ent.d_l4) % _M
                    out = b"".join((ent.head, ip[:8], _TTL_CK.pack(ip[8] - 1, IPPROTO_TCP, ck), ent.newap,
                                    ip[24:36], _CK.pack(l4), ip[38:]))
            else:
                out = b"".join((ent.head, ip[:8], _TTL_CK.pack(ip[8] - 1, proto, ck), ip[12:]))
            res = Result("ACCEPT", "forward", ent.out, [Emitted(ent.out, out)], [])  # type: ignore[arg-type]
        return res  # (nothing for _flush_local: an entry's walk made no packets)

    # ------------------------------------------------------------ learning
    def _miss(self, frame: bytes, iface: str, now: float, key: bytes) -> Result:
        e = self.engine
        if e.ct.table is not self._ct_table:
            self.clear()  # the connection table was replaced
        flows = self.flows.setdefault(iface, {})
        waits = self.waits.setdefault(iface, {})
        back = waits.get(key)
        if back is not None:
            back.left -= 1
            if back.left > 0:
                return e._receive(frame, iface, now, False)
        src, dst, sport, dport = _ADDRS_PORTS.unpack_from(frame, 26)
        proto = frame[23]
        hit = e.ct.table.hash.get((_TUPLE_NEW(Tuple, (src, dst, proto, sport, dport)), 0))
        if hit is None or _key(frame) != key:
            return e._receive(frame, iface, now, False)  # a first packet, or an odd one
        conn, direction = hit
        status = conn.status
        if (not status & IPS_CONFIRMED or status & (IPS_DYING | IPS_NAT_CLASH | IPS_EXPECTED)
                or conn.zone or conn.timeout_at <= now or (direction and not status & IPS_SEEN_REPLY)):
            return e._receive(frame, iface, now, False)
        ps = conn.proto_state
        tcp_state = ps.state if proto == IPPROTO_TCP else -1
        mark = conn.mark
        logs, nflogs = len(e.logs), len(e.nflogs)
        counts = _counts(e)
        res = e._receive(frame, iface, now, True)
        steps = res.trace
        res.trace = []
        ent = None
        same = (conn.status == status and conn.mark == mark and conn.proto_state is ps
                and (tcp_state < 0 or ps.state == tcp_state))
        if same and len(e.logs) == logs and len(e.nflogs) == nflogs and _counts(e) == counts:
            ent = self._learn(frame, iface, res, steps, conn, direction, proto)
        if ent is not None:
            if len(flows) >= self.max_entries:
                _sweep(flows, now, self.max_entries)
            flows[key] = ent
            waits.pop(key, None)
            self.learnt += 1
        elif same:
            if len(waits) >= self.max_entries:
                waits.clear()
            waits[key] = _Backoff(FIRST_BACKOFF if back is None else min(MAX_BACKOFF, back.next * 2))
        else:
            waits.pop(key, None)  # the connection moved on (handshake, ASSURED): the next packet may do
        return res

    def _learn(self, frame: bytes, iface: str, res: Result, steps: list[TraceStep], conn: Conn,
               direction: int, proto: int) -> Entry | None:
        """The entry for the walk `res` made, or None when it cannot be replayed."""
        e = self.engine
        if res.path != "forward" or res.verdict not in ("ACCEPT", "DROP") or e.pending_local:
            return None
        counters = self._walks(steps)
        if counters is None:
            return None
        ent = Entry()
        ent.conn = conn
        ent.direction = direction
        status = conn.status
        if direction:
            ent.ctinfo = IP_CT_ESTABLISHED_REPLY
        elif status & IPS_SEEN_REPLY:
            ent.ctinfo = IP_CT_ESTABLISHED
        else:
            ent.ctinfo = IP_CT_NEW
        ent.status = status
        ent.mark = conn.mark
        ent.counters = tuple(counters)
        ent.verdict = res.verdict
        tot_len = frame[16] << 8 | frame[17]
        ip = frame[14:14 + tot_len]
        if proto == IPPROTO_TCP:
            if frame[47] & (TH_SYN | TH_RST) or tot_len < 40 or conn.proto_state is None:
                return None
            ent.handler = ct_tcp.tcp_packet
            ent.tcp_state = conn.proto_state.state
            doff = (frame[46] >> 4) * 4
            ent.lane = (frame[47] & (TH_SYN | TH_FIN | TH_RST | TH_ACK) == TH_ACK and doff >= 20
                        and ent.tcp_state == ct_tcp.TCP_CONNTRACK_ESTABLISHED)
            ent.hlen = 20 + doff
            src, dst = _ADDRS_PORTS.unpack_from(frame, 26)[:2]
            ent.pseudo = (src >> 16) + (src & _M) + (dst >> 16) + (dst & _M) + IPPROTO_TCP - 20
        elif proto == IPPROTO_UDP:
            if tot_len < 28:
                return None
            ent.handler = ct_udp.udp_packet
            ent.udp = True
            ent.min_len = 28
        else:
            return None
        pkt = Packet(bytearray(ip), indev=iface)
        if not pkt.l4ok:
            return None
        ent.pkt = pkt
        # the route was looked up after PREROUTING's NAT (which changes the
        # destination only): the reply tuple's source, or for replies the
        # original source
        dst = conn.reply.src if direction == 0 else conn.orig.src
        rr = e._input_route(pkt.src, dst, iface, proto)
        if rr.error or rr.redirect:
            return None
        ent.mtu = e.host.mtu(rr.dev)
        if tot_len > ent.mtu:
            return None
        if res.verdict == "DROP":
            return ent if not res.emitted and res.out is None else None
        if len(res.emitted) != 1 or res.out != rr.dev:
            return None
        em = res.emitted[0]
        if em.iface != rr.dev:
            return None
        got = em.frame
        if len(got) != 14 + tot_len or got[14] != 0x45:
            return None
        ent.out = rr.dev
        ent.head = bytes(got[:14])
        return ent if _rewrite(ent, ip, got[14:], proto) else None

    def _walks(self, steps: list[TraceStep]) -> list[Counters] | None:
        """The counters the walks in `steps` bumped, when every rule they
        tested is pure and every matched rule's target is a standard one;
        None otherwise.  Mirrors do_table's control flow, with the trace
        (every counted rule and policy, in order) as the oracle; all rules
        between two counted ones count as tested (an indexed chain tests
        fewer: conservative)."""
        tables = self.engine.tables
        out: list[Counters] = []
        i, n = 0, len(steps)
        while i < n:
            s = steps[i]
            table = tables.get(s.table)
            base = table.chains.get(s.chain) if table is not None else None
            if table is None or base is None or base.policy is None:
                return None
            i = self._walk(table, base, steps, i, out)
            if i < 0:
                return None
        return out

    def _walk(self, table: CompiledTable, base: CompiledChain, steps: list[TraceStep], i: int,
              out: list[Counters]) -> int:
        chain, pos = base, 0
        stack: list[tuple[CompiledChain, int]] = []
        n = len(steps)
        for _guard in range(100000):
            s = steps[i] if i < n else None
            rules = chain.rules
            if s is not None and s.table == table.name and s.chain == chain.name:
                if s.rule is None:  # the policy
                    if chain.policy is None or not self._pure(chain, pos, len(rules)) or chain.counters is None:
                        return -1
                    if chain.policy not in (NF_ACCEPT, NF_DROP):
                        return -1
                    out.append(chain.counters)
                    return i + 1
                k = s.rule - 1
                if k < pos or k >= len(rules) or not self._pure(chain, pos, k + 1):
                    return -1
                cr = rules[k]
                out.append(cr.counters)
                i += 1
                kind = cr.kind
                if kind == A_VERDICT:
                    return i if cr.arg in (NF_ACCEPT, NF_DROP) else -1
                if kind == A_NONE:
                    pos = k + 1
                elif kind == A_RETURN:
                    if stack:
                        chain, pos = stack.pop()
                    else:
                        chain, pos = base, len(base.rules)
                elif kind == A_JUMP or kind == A_GOTO:
                    target = table.chains.get(cr.arg)
                    if target is None:
                        return -1
                    if kind == A_JUMP:
                        stack.append((chain, k + 1))
                    chain, pos = target, 0
                else:
                    return -1  # an extension target
                continue
            # no counted rule left in this chain: it ran to its end
            if chain.policy is not None or not self._pure(chain, pos, len(rules)):
                return -1  # (a built-in chain always ends with a counted step)
            if stack:
                chain, pos = stack.pop()
            else:
                chain, pos = base, len(base.rules)
        return -1

    def _pure(self, chain: CompiledChain, start: int, end: int) -> bool:
        """rules[start:end] of `chain` are all pure."""
        bad = self._impure.get(id(chain))
        if bad is None:
            bad = [0]
            for cr in chain.rules:
                bad.append(bad[-1] + (0 if rule_is_pure(cr.rule) else 1))
            self._impure[id(chain)] = bad
        return bad[end] == bad[start]


def _sweep(flows: dict[bytes, Entry], now: float, limit: int) -> None:
    """A full table: drop the entries of connections that are gone or
    changed (a lookup would drop each anyway), and all of them if that
    frees too little."""
    stale = [k for k, ent in flows.items()
             if ent.conn.status != ent.status or ent.conn.timeout_at <= now]
    for k in stale:
        del flows[k]
    if len(flows) > limit // 2:
        flows.clear()


def _key(frame: bytes) -> bytes | None:
    """The bytes that decide a forwarded TCP/UDP packet's walk, or None for
    what always takes the slow path (not IPv4 unicast without options and
    fragments, a bad header checksum or length, TTL <= 1)."""
    if (len(frame) < 42 or frame[12] != 8 or frame[13] != 0 or frame[14] != 0x45 or frame[0] & 1
            or frame[20] & 0x3F or frame[21] or frame[22] <= 1):
        return None
    proto = frame[23]
    tot_len = frame[16] << 8 | frame[17]
    if len(frame) - 14 < tot_len:
        return None
    v = int.from_bytes(frame[14:34], "big")
    if v % _M or not v:
        return None  # header checksum: ip_rcv drops it
    if proto == IPPROTO_TCP:
        if tot_len < 40:
            return None
        return frame[26:38] + frame[46:48]
    if proto == IPPROTO_UDP:
        if tot_len < 28:
            return None
        return frame[26:38]
    return None


def _counts(e: Engine) -> tuple[int, ...]:
    """The engine's, NAT's and conntrack's drop and error counts: a walk
    that moved any of them did something an entry would not replay."""
    s = e.ct.stat
    return (s.invalid, s.drop, s.error, s.insert_failed, s.early_drop, s.clash_resolve,
            sum(e.stats.values()), sum(e.nat.stats.values()))


def _words(b: bytes) -> int:
    """The one's complement sum of 16-bit words, as an integer (mod 0xFFFF)."""
    return int.from_bytes(b, "big") % _M


def _rewrite(ent: Entry, ip: bytes, got: bytes, proto: int) -> bool:
    """Precompute the header and L4 checksum deltas of the walk that made
    `got` from `ip`, and check that it changed nothing else."""
    if ip[:8] != got[:8] or got[8] != ip[8] - 1 or got[9] != ip[9]:
        return False
    csum_at = 36 if proto == IPPROTO_TCP else 26
    if ip[24:csum_at] != got[24:csum_at] or ip[csum_at + 2:] != got[csum_at + 2:]:
        return False
    old_ap, new_ap = ip[12:24], got[12:24]
    # header: the TTL word goes down by 0x0100, addresses as NAT set them
    d_ip = (0x0100 + _words(old_ap[:8]) - _words(new_ap[:8])) % _M
    if ((ip[10] << 8 | ip[11]) + d_ip) % _M != (got[10] << 8 | got[11]):
        return False
    ent.d_ip = d_ip
    # the TTL (IP byte 8) one down, the addresses and ports (bytes 12-23) as
    # NAT set them, placed in the integer of bytes 0-37
    ent.delta = ((int.from_bytes(new_ap, "big") - int.from_bytes(old_ap, "big")) << 112) - (1 << 232)
    in_l4 = ip[csum_at] << 8 | ip[csum_at + 1]
    out_l4 = got[csum_at] << 8 | got[csum_at + 1]
    if old_ap == new_ap:
        ent.rewrite = False
        return in_l4 == out_l4
    ent.rewrite = True
    ent.newap = bytes(new_ap)
    # pseudo-header addresses and the ports
    d_l4 = (_words(old_ap) - _words(new_ap)) % _M
    ent.d_l4 = d_l4
    if proto == IPPROTO_UDP:
        want = ((in_l4 + d_l4) % _M or _M) if in_l4 else 0
    else:
        want = (in_l4 + d_l4) % _M
    return want == out_l4


def _resume(ctk: Any, conn: Conn, ctinfo: int, direction: int, ret: int,
            before: tuple[int, Any] | None) -> Callable[[Packet], int]:
    """What stands in for Conntrack.in_hook on the slow path once the
    tracker already ran for this packet: the rest of in_hook from the
    handler's answer on (Conntrack.tracked), or for CT_REPEAT (the
    connection was killed by a reopening SYN) the whole lookup again."""
    def step(pkt: Packet) -> int:
        pkt.ctinfo = IP_CT_NONE
        pkt.ctdir = 0
        if ret == CT_REPEAT:
            return int(ctk.in_hook(pkt))
        return int(ctk.tracked(pkt, conn, ctinfo, direction, ret, before))

    return step


__all__ = ["PURE_MATCHES", "FastPath", "enabled_by_default", "rule_is_pure"]


def _udp_lane(ctk: Any, conn: Conn, ip: bytes, tot_len: int, now: float, direction: int) -> bool:
    """udp_packet (with udp_error) for a confirmed connection whose status
    the packet cannot change, inline: True when done (timeout refreshed,
    accounted), False to leave the packet to the tracker itself (a bad
    length or checksum, the stream about to become ASSURED, a fixed
    timeout).  The caller checked the IP header and that the entry's
    status is the connection's."""
    udplen = tot_len - 20
    hlen = ip[24] << 8 | ip[25]
    if udplen < 8 or hlen > udplen or hlen < 8:
        return False
    cfg = ctk.cfg
    if (ip[26] or ip[27]) and cfg.checksum and not checksum_ok(
            ip, tot_len, _U32.unpack_from(ip, 12)[0], _U32.unpack_from(ip, 16)[0], 20, IPPROTO_UDP):
        return False
    status = conn.status
    if status & _FIXED_TIMEOUT:
        return False
    if status & IPS_SEEN_REPLY:
        if now > conn.proto_state:
            if not status & (IPS_ASSURED | IPS_NAT_CLASH):
                return False  # this packet makes it ASSURED: the tracker's own work
            extra = cfg.udp_timeout_stream
        else:
            extra = cfg.udp_timeout
    else:
        extra = cfg.udp_timeout
    ctk.now = now
    conn.timeout_at = extra + now
    acct = conn.acct
    if acct is not None:
        acct[2 * direction] += 1
        acct[2 * direction + 1] += tot_len
    return True
