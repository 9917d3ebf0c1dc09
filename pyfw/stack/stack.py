"""The host's own TCP/UDP endpoints, sans-IO: IPv4 datagrams and a `now`
in, datagrams out.

The gateway hands `input()` what its INPUT chain accepted for the host,
sends what `output()` returns through OUTPUT, and calls `output()` again
by `next_deadline()` for the timers.  Addresses are ints (host order of
the dotted quad), as pyfw.wire reads them.  A segment for no socket is
the engine's to answer (RST / ICMP port unreachable): `wants()` says which
datagrams are ours.

Malformed input is counted and dropped; an exception inside the stack or
an application callback is counted (StackErrors, AppErrors) and never
escapes `input()`/`output()`.
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfw.stack.isn import IsnGenerator
from pyfw.stack.segment import build as build_segment
from pyfw.stack.tcp import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    TIME_WAIT,
    Connection,
    unwrap,
)
from pyfw.wire import icmp, ipv4
from pyfw.wire import udp as wire_udp
from pyfw.wire.checksum import IPPROTO_TCP, IPPROTO_UDP, verify, verify_l4
from pyfw.wire.tcp import ACKF, RST, SYN, parse_options

#: Makes the application of an accepted connection (see tcp.App for what it must offer).
AppFactory = Callable[[Connection], Any]
DatagramHandler = Callable[[int, int, bytes], None]

_IP_ADDRS = struct.Struct("!II")
_TCP_HDR = struct.Struct("!HHIIBBH")
_UDP_HDR = struct.Struct("!HHHH")
_PORTS = struct.Struct("!HH")
_PORTS_SEQ = struct.Struct("!HHI")
IPPROTO_ICMP = 1
#: ICMP errors that concern a TCP connection (tcp_v4_err's cases).
_ICMP_ERRORS = frozenset((icmp.DEST_UNREACH, icmp.TIME_EXCEEDED, icmp.PARAMETERPROB))

#: Linux's net.ipv4.tcp_max_syn_backlog default scale: half-open
#: connections per listener before the oldest is dropped for a new SYN.
DEFAULT_BACKLOG = 256
#: Linux's tcp_max_tw_buckets order of magnitude: beyond it a closing
#: connection skips TIME_WAIT ("time wait bucket table overflow").
MAX_TIME_WAIT = 4096
DEFAULT_RCVBUF = 1 << 20
#: Connections (any state) before new SYNs are refused: a bound on memory.
DEFAULT_MAX_CONNECTIONS = 16384

COUNTER_NAMES = (
    "ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "InSegs", "OutSegs", "RetransSegs",
    "InErrs", "InCsumErrors", "OutRsts", "FastRetrans", "Timeouts", "ChallengeAcks", "OutOfWindow",
    "DupSegs", "SynDropped", "TimeWaitOverflow", "UdpInDatagrams", "UdpNoPorts", "UdpInErrors",
    "UdpInCsumErrors", "UdpOutDatagrams", "IpInErrors", "IpFragDropped", "StackErrors", "AppErrors",
    "LostRetransmits", "ListenOverflows", "IpInAddrErrors", "IcmpErrors", "OutOfWindowIcmps", "PmtuUpdates",
    "IdleCloses",
)


def _martian(addr: int) -> bool:
    """0/8, 127/8, multicast, class E and limited broadcast."""
    top = addr >> 24
    return top == 0 or top == 127 or top >= 224


def format_addr(addr: int) -> str:
    return f"{addr >> 24 & 255}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def parse_addr(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


@dataclass
class Listener:
    addr: int
    port: int
    factory: AppFactory
    backlog: int = DEFAULT_BACKLOG
    half_open: OrderedDict[tuple[int, int, int, int], Connection] = field(default_factory=OrderedDict)
    accepted: int = 0


class Stack:
    """TCP and UDP endpoints for the addresses the gateway owns."""

    def __init__(self, cc: str = "cubic", mtu: int = 1500, rcvbuf: int = DEFAULT_RCVBUF,
                 secret: bytes | None = None, mtu_for: Callable[[int], int] | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, sack: bool = True) -> None:
        from pyfw.stack import cc as ccmod
        ccmod.make(cc)   # validate the name now
        self.cc = cc
        self.mtu = mtu
        self.mtu_for = mtu_for
        self.rcvbuf = rcvbuf
        self.max_connections = max_connections
        self.sack = sack
        self._isn = IsnGenerator(secret)
        self._conns: dict[tuple[int, int, int, int], Connection] = {}
        self._listeners: dict[tuple[int, int], Listener] = {}
        self._udp: dict[tuple[int, int], DatagramHandler] = {}
        self._dirty: dict[Connection, None] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._seq = itertools.count()
        self._raw: list[bytes] = []
        self._tw: OrderedDict[tuple[int, int, int, int], Connection] = OrderedDict()
        self._udp_ident = 0
        self._now = 0.0
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.last_error: str | None = None
        self.last_app_error: str | None = None

    # ------------------------------------------------------------ sockets
    def listen(self, addr: int, port: int, app_factory: AppFactory, backlog: int = DEFAULT_BACKLOG) -> None:
        """Accept connections to addr:port (addr 0 = any local address);
        `app_factory(conn)` makes the application once the handshake completes."""
        self._listeners[(addr, port)] = Listener(addr, port, app_factory, backlog)

    def unlisten(self, addr: int, port: int) -> None:
        self._listeners.pop((addr, port), None)

    def connect(self, src: int, sport: int, dst: int, dport: int, app: Any, now: float | None = None) -> Connection:
        """Open a connection (active open); `app` gets on_data/on_close and,
        if it has one, on_connect(conn) when established."""
        key = (src, sport, dst, dport)
        if key in self._conns:
            raise ConnectionError("address pair in use")
        if len(self._conns) >= self.max_connections:
            raise ConnectionError("too many connections")
        t = self._now if now is None else now
        conn = self._new_conn(key, self._isn.isn(src, sport, dst, dport, t))
        conn.app = app
        self._conns[key] = conn
        self.counters["ActiveOpens"] += 1
        conn.open_active(t)
        return conn

    def udp_bind(self, addr: int, port: int, on_datagram: DatagramHandler) -> None:
        """Receive UDP to addr:port (addr 0 = any): on_datagram(src, sport, data)."""
        self._udp[(addr, port)] = on_datagram

    def udp_unbind(self, addr: int, port: int) -> None:
        self._udp.pop((addr, port), None)

    def udp_send(self, src_addr: int, sport: int, dst: int, dport: int, data: bytes) -> None:
        """Queue a datagram for the next output().  DF as Linux's default
        PMTU discovery sets it when the datagram fits the MTU; a larger one
        goes without DF for the gateway to fragment."""
        seg = wire_udp.build(src_addr, dst, sport, dport, data)
        total = 20 + len(seg)
        if total > 0xFFFF:
            raise ValueError("UDP datagram too large")
        self._udp_ident = (self._udp_ident + 1) & 0xFFFF
        fits = total <= self._mtu(dst)
        self._raw.append(bytes(ipv4.build(src_addr, dst, IPPROTO_UDP, seg, ttl=64,
                                          ident=0 if fits else self._udp_ident, df=fits)))
        self.counters["UdpOutDatagrams"] += 1

    def abort_all(self) -> None:
        """Reset every connection (the daemon is stopping): the RSTs come
        out of the next output()."""
        for conn in list(self._conns.values()):
            conn.abort()

    def connections(self) -> list[Connection]:
        return list(self._conns.values())

    def sockets(self) -> list[dict[str, object]]:
        """The socket table (listeners, connections, UDP binds) as rows."""
        rows: list[dict[str, object]] = [
            {"proto": "tcp", "state": "LISTEN", "local": f"{format_addr(lst.addr)}:{lst.port}", "remote": "*",
             "accepted": lst.accepted, "half_open": len(lst.half_open)}
            for lst in self._listeners.values()
        ]
        rows += [{"proto": "tcp", **c.info()} for c in self._conns.values()]
        rows += [{"proto": "udp", "state": "UNCONN", "local": f"{format_addr(a)}:{p}", "remote": "*"}
                 for (a, p) in self._udp]
        return rows

    def stats(self) -> dict[str, int]:
        """The counters plus CurrEstab (connections in ESTABLISHED or CLOSE_WAIT)."""
        out = dict(self.counters)
        out["CurrEstab"] = sum(1 for c in self._conns.values() if c.state in (ESTABLISHED, CLOSE_WAIT))
        out["Connections"] = len(self._conns)
        return out

    # ------------------------------------------------------------ the gateway's calls
    def wants(self, ipdata: bytes | bytearray | memoryview) -> bool:
        """Whether a socket (listening or connected, TCP or UDP) takes this datagram."""
        try:
            if len(ipdata) < 20:
                return False
            ihl = (ipdata[0] & 0x0F) * 4
            if (ipdata[6] & 0x1F) or ipdata[7] or len(ipdata) < ihl + 4:
                return False
            proto = ipdata[9]
            src, dst = _IP_ADDRS.unpack_from(ipdata, 12)
            sport, dport = _PORTS.unpack_from(ipdata, ihl)
        except (IndexError, struct.error):
            return False
        if proto == IPPROTO_TCP:
            return ((dst, dport, src, sport) in self._conns or (dst, dport) in self._listeners
                    or (0, dport) in self._listeners)
        if proto == IPPROTO_UDP:
            return (dst, dport) in self._udp or (0, dport) in self._udp
        if proto == IPPROTO_ICMP:
            return self._icmp_conn(memoryview(ipdata)[ihl:]) is not None
        return False

    def input(self, ipdata: bytes | bytearray | memoryview, now: float) -> None:
        """An IPv4 datagram the firewall's INPUT accepted for the host."""
        self._now = now
        try:
            self._input(ipdata, now)
        except Exception as exc:  # noqa: BLE001 - never out of the packet loop
            self.counters["StackErrors"] += 1
            self.last_error = repr(exc)

    def output(self, now: float) -> list[bytes]:
        """The datagrams to send now (timers that are due fire first)."""
        self._now = now
        out = self._raw
        self._raw = []
        try:
            heap = self._heap
            while heap and heap[0][0] <= now:
                d, _, conn = heapq.heappop(heap)
                if conn.sched != d or conn.state == CLOSED:
                    continue
                conn.sched = None
                conn.on_timer(now)
                self._dirty[conn] = None
            while self._dirty:
                dirty = self._dirty
                self._dirty = {}
                for conn in dirty:
                    if conn.state != CLOSED:
                        conn.emit(now, out)
                        self._schedule(conn)
        except Exception as exc:  # noqa: BLE001
            self.counters["StackErrors"] += 1
            self.last_error = repr(exc)
        if self._raw:
            out += self._raw
            self._raw = []
        return out

    def next_deadline(self) -> float | None:
        """When output() must run again for a timer, or None."""
        heap = self._heap
        while heap:
            d, _, conn = heap[0]
            if conn.sched == d and conn.state != CLOSED:
                return d
            heapq.heappop(heap)
        return None

    # ------------------------------------------------------------ input
    def _input(self, d: bytes | bytearray | memoryview, now: float) -> None:
        n = len(d)
        if n < 20 or d[0] >> 4 != 4:
            self.counters["IpInErrors"] += 1
            return
        ihl = (d[0] & 0x0F) * 4
        tot = d[2] << 8 | d[3]
        if ihl < 20 or tot < ihl or tot > n:
            self.counters["IpInErrors"] += 1
            return
        if (d[6] & 0x3F) or d[7]:
            self.counters["IpFragDropped"] += 1   # the gateway reassembles first
            return
        proto = d[9]
        src, dst = _IP_ADDRS.unpack_from(d, 12)
        if _martian(src) or (proto == IPPROTO_TCP and _martian(dst)):
            # never answer a broadcast/multicast/zero/loopback source, nor a
            # TCP segment to a group address (tcp_v4_rcv takes PACKET_HOST only)
            self.counters["IpInAddrErrors"] += 1
            return
        if proto == IPPROTO_TCP:
            self._tcp_input(memoryview(d)[ihl:tot], src, dst, now)
        elif proto == IPPROTO_UDP:
            self._udp_input(memoryview(d)[ihl:tot], src, dst)
        elif proto == IPPROTO_ICMP:
            self._icmp_input(memoryview(d)[ihl:tot], now)

    def _icmp_conn(self, msg: memoryview) -> tuple[Connection, int] | None:
        """The connection an ICMP error quotes (our own segment: source =
        us) and the quoted sequence number, or None."""
        if len(msg) < 8 + 20 + 8 or msg[0] not in _ICMP_ERRORS:
            return None
        inner = msg[8:]
        iihl = (inner[0] & 0x0F) * 4
        if inner[0] >> 4 != 4 or iihl < 20 or len(inner) < iihl + 8 or inner[9] != IPPROTO_TCP:
            return None
        if (inner[6] & 0x1F) or inner[7]:
            return None
        isrc, idst = _IP_ADDRS.unpack_from(inner, 12)
        sport, dport, seq = _PORTS_SEQ.unpack_from(inner, iihl)
        conn = self._conns.get((isrc, sport, idst, dport))
        return None if conn is None else (conn, seq)

    def _icmp_input(self, msg: memoryview, now: float) -> None:
        found = self._icmp_conn(msg)
        if found is None or not verify(msg):
            return
        self.counters["IcmpErrors"] += 1
        conn, seq = found
        conn.icmp_error(msg[0], msg[1], msg[6] << 8 | msg[7], seq, now)
        if conn.state != CLOSED:
            self._dirty[conn] = None
            self._schedule(conn)

    def _tcp_input(self, seg: memoryview, src: int, dst: int, now: float) -> None:
        counters = self.counters
        if len(seg) < 20:
            counters["InErrs"] += 1
            return
        counters["InSegs"] += 1       # as tcp_v4_rcv counts: before the checksum
        if not verify_l4(src, dst, IPPROTO_TCP, seg):
            counters["InErrs"] += 1
            counters["InCsumErrors"] += 1
            return
        sport, dport, seq, ack, doff, flags, win = _TCP_HDR.unpack_from(seg, 0)
        doff = (doff >> 4) * 4
        if doff < 20 or doff > len(seg):
            counters["InErrs"] += 1
            return
        key = (dst, dport, src, sport)
        conn = self._conns.get(key)
        opts = parse_options(seg[20:doff]) if doff > 20 or flags & SYN else None
        payload = seg[doff:]
        if conn is not None:
            if conn.state == TIME_WAIT and flags & (SYN | ACKF | RST) == SYN:
                if unwrap(seq, conn.rcv_nxt) > conn.rcv_nxt:
                    # RFC 9293 3.10.7.4 / RFC 6191: a new incarnation may
                    # reuse the pair; start its ISN past the old sequence space.
                    iss = (conn.snd_nxt + 65537) & 0xFFFFFFFF
                    conn._destroy()
                    lst = self._listener_for(dst, dport)
                    if lst is not None:
                        self._syn_to_listener(lst, key, seq, win, opts, now, iss)
                    return
            conn.segment(seq, ack, flags, win, payload, opts, now)
            if conn.state != CLOSED:
                self._dirty[conn] = None
                self._schedule(conn)
            return
        lst = self._listener_for(dst, dport)
        if lst is None:
            self._reset_for(src, dst, sport, dport, seq, ack, flags, len(payload))
            return
        if flags & RST:
            return
        if flags & ACKF:
            # an ACK (or SYN-ACK) for no connection: RFC 9293 3.10.7.2
            self._reset_for(src, dst, sport, dport, seq, ack, flags, len(payload))
            return
        if flags & SYN:
            self._syn_to_listener(lst, key, seq, win, opts, now, None)

    def _listener_for(self, addr: int, port: int) -> Listener | None:
        lst = self._listeners.get((addr, port))
        return lst if lst is not None else self._listeners.get((0, port))

    def _syn_to_listener(self, lst: Listener, key: tuple[int, int, int, int], seq: int, win: int,
                         opts: Any, now: float, iss: int | None) -> None:
        if len(self._conns) >= self.max_connections and len(lst.half_open) < lst.backlog:
            self.counters["ListenOverflows"] += 1
            return
        if len(lst.half_open) >= lst.backlog:
            # drop the oldest half-open connection rather than refuse a new
            # one: under a SYN flood a real client still gets in eventually
            _, old = lst.half_open.popitem(last=False)
            old._destroy()
            self.counters["SynDropped"] += 1
        laddr, lport, raddr, rport = key
        if iss is None:
            iss = self._isn.isn(laddr, lport, raddr, rport, now)
        conn = self._new_conn(key, iss)
        conn.listener = lst
        self._conns[key] = conn
        lst.half_open[key] = conn
        self.counters["PassiveOpens"] += 1
        conn.open_passive(seq, win, opts, now)
        self._dirty[conn] = None

    def _new_conn(self, key: tuple[int, int, int, int], iss: int) -> Connection:
        laddr, lport, raddr, rport = key
        mtu = self._mtu(raddr)
        return Connection(self, laddr, lport, raddr, rport, iss, mtu - 40, self.rcvbuf, self.cc, self.sack)

    def _mtu(self, dst: int) -> int:
        if self.mtu_for is not None:
            try:
                return self.mtu_for(dst)
            except Exception:  # noqa: BLE001
                return self.mtu
        return self.mtu

    def _reset_for(self, src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
                   plen: int) -> None:
        """The RST RFC 9293 sends for a segment to no connection (not for an RST)."""
        if flags & RST:
            return
        if flags & ACKF:
            pkt = build_segment(dst, src, dport, sport, ack, 0, RST, 0, 0)
        else:
            end = seq + plen + (1 if flags & SYN else 0) + (flags & 1)
            pkt = build_segment(dst, src, dport, sport, 0, end, RST | ACKF, 0, 0)
        self._raw.append(pkt)
        self.counters["OutRsts"] += 1

    def _udp_input(self, seg: memoryview, src: int, dst: int) -> None:
        counters = self.counters
        if len(seg) < 8:
            counters["UdpInErrors"] += 1
            return
        sport, dport, ulen, csum = _UDP_HDR.unpack_from(seg, 0)
        if ulen < 8 or ulen > len(seg):
            counters["UdpInErrors"] += 1
            return
        seg = seg[:ulen]
        if csum and not verify_l4(src, dst, IPPROTO_UDP, seg):
            counters["UdpInErrors"] += 1
            counters["UdpInCsumErrors"] += 1
            return
        handler = self._udp.get((dst, dport)) or self._udp.get((0, dport))
        if handler is None:
            counters["UdpNoPorts"] += 1
            return
        counters["UdpInDatagrams"] += 1
        try:
            handler(src, sport, bytes(seg[8:]))
        except Exception as exc:  # noqa: BLE001
            counters["AppErrors"] += 1
            self.last_app_error = repr(exc)

    # ------------------------------------------------------------ called by connections
    def _mark(self, conn: Connection) -> None:
        self._dirty[conn] = None

    def _send_raw(self, pkt: bytes) -> None:
        self._raw.append(pkt)

    def _schedule(self, conn: Connection) -> None:
        d = conn.deadline()
        if d != conn.sched:
            conn.sched = d
            if d is not None:
                heapq.heappush(self._heap, (d, next(self._seq), conn))

    def _accept(self, conn: Connection) -> None:
        lst = conn.listener
        if lst is None:
            return
        lst.half_open.pop(conn.key, None)
        lst.accepted += 1
        try:
            conn.app = lst.factory(conn)
        except Exception as exc:  # noqa: BLE001
            self.counters["AppErrors"] += 1
            self.last_app_error = repr(exc)
            conn.abort()

    def _time_wait(self, conn: Connection) -> None:
        tw = self._tw
        tw[conn.key] = conn
        while len(tw) > MAX_TIME_WAIT:
            _, old = tw.popitem(last=False)
            self.counters["TimeWaitOverflow"] += 1
            old._destroy()

    def _forget(self, conn: Connection) -> None:
        if self._conns.get(conn.key) is conn:
            del self._conns[conn.key]
        self._dirty.pop(conn, None)
        if self._tw.get(conn.key) is conn:
            del self._tw[conn.key]
        lst = conn.listener
        if lst is not None and conn.state == CLOSED and lst.half_open.get(conn.key) is conn:
            del lst.half_open[conn.key]


__all__ = ["Stack", "Connection", "Listener", "format_addr", "parse_addr"]
