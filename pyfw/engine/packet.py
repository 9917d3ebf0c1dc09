"""The packet as matches and targets see it: the IPv4 datagram in a
bytearray plus the fields they test, read once with struct.

`Packet.parse` fills the header fields; after a rewrite (NAT, TTL, TOS) the
writer updates the bytes and the fields it changed (see pyfw.wire for the
checksum helpers).  Everything is plain ints and strs in __slots__ so that a
compiled rule is a handful of attribute reads.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from pyfw.engine.api import IP_CT_NONE, PACKET_HOST

_IP = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
_TCP = struct.Struct("!HHIIBBH")  # ports, seq, ack, offset/NS, flags, window
_U32 = struct.Struct("!I")

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IP_MF: Final = 0x2000
IP_DF: Final = 0x4000
IP_OFFMASK: Final = 0x1FFF


# every field of a Packet (its __slots__; also what copy() copies)
_PACKET_SLOTS: tuple[str, ...] = (
    # the bytes
    "data",       # bytearray: the IPv4 datagram, IP header first
    "eth",        # bytes | None: the 14-byte Ethernet header it came with
    # where it is
    "indev", "outdev",  # interface names ("" when none)
    "hook",       # current hook name
    "time",       # float seconds on the engine's clock
    "pkttype",    # PACKET_HOST, BROADCAST, MULTICAST, OTHERHOST
    "local",      # True when the host itself sent it (OUTPUT path)
    "uid", "gid",  # owner of the local socket (None when not local)
    # skb state
    "mark", "priority", "trace",
    # conntrack
    "ct",         # pyfw.engine.conntrack.Conn | None
    "ctinfo",     # IP_CT_* (IP_CT_NONE: no entry: INVALID), IP_CT_UNTRACKED
    "ctdir",      # 0 original, 1 reply
    "notrack",    # raw-table NOTRACK / CT --notrack was applied
    "ct_template",  # CT target settings for the connection about to be made
    # IPv4 header fields
    "ihl", "tos", "tot_len", "ip_id", "frag_off", "ttl", "proto", "src", "dst",
    "options",    # bytes of IP options (b"" when none)
    # layer 4 (valid when `l4ok`; ports 0 for non-TCP/UDP)
    "l4", "l4ok", "sport", "dport", "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win",
    "tcp_doff", "icmp_type", "icmp_code", "icmp_id",
    # the routing decision's next hop (rt_nexthop of skb_dst) where the
    # path that made it knows it is still the packet's; 0: not known
    "nexthop",
    # engine scratch (per-packet annotations)
    "extra",
)


class Packet:
    """One IPv4 packet in flight through the hooks."""

    __slots__ = _PACKET_SLOTS

    # The header fields' types, declared: compiled, a field of a known type
    # is a machine int (or a str) to every reader, not an object whose
    # every `&` and `==` is a generic call.  (The rest are set in __init__.)
    ihl: int
    tos: int
    tot_len: int
    ip_id: int
    frag_off: int
    ttl: int
    proto: int
    src: int
    dst: int
    options: bytes
    l4: int
    l4ok: bool
    sport: int
    dport: int
    tcp_flags: int
    tcp_seq: int
    tcp_ack: int
    tcp_win: int
    tcp_doff: int
    icmp_type: int
    icmp_code: int
    icmp_id: int

    def __init__(self, data: bytearray, indev: str = "", outdev: str = "", time: float = 0.0,
                 eth: bytes | None = None) -> None:
        self.data: Any = data  # bytearray; the fast path's trackers also read bytes
        self.eth = eth
        self.indev: str = indev
        self.outdev: str = outdev
        self.hook: str = ""
        self.time = time
        self.pkttype: int = PACKET_HOST
        self.local: bool = False
        self.uid: int | None = None
        self.gid: int | None = None
        self.mark: int = 0
        self.priority: int = 0
        self.trace: bool = False
        self.ct: Any = None
        self.ctinfo: int = IP_CT_NONE
        self.ctdir: int = 0
        self.notrack: bool = False
        self.ct_template: Any = None
        self.extra: dict[str, Any] | None = None
        self.nexthop: int = 0
        if data:
            self.parse()

    # ------------------------------------------------------------------ parse
    def parse(self) -> None:
        """Read the header fields from `data` (assumed sane: see
        pyfw.wire.ipv4.validate for what is dropped before the hooks)."""
        d = self.data
        vihl, tos, tot_len, ip_id, frag_off, ttl, proto, _csum, src, dst = _IP.unpack_from(d, 0)
        ihl = (vihl & 0x0F) * 4
        self.ihl = ihl
        self.tos = tos
        self.tot_len = tot_len
        self.ip_id = ip_id
        self.frag_off = frag_off
        self.ttl = ttl
        self.proto = proto
        self.src = src
        self.dst = dst
        self.options = bytes(d[20:ihl]) if ihl > 20 else b""
        self.l4 = ihl
        self.parse_l4()

    def parse_l4(self) -> None:
        d = self.data
        ihl = self.ihl
        if self.proto == IPPROTO_TCP and not self.frag_off & IP_OFFMASK and min(len(d), self.tot_len) - ihl >= 20:
            # the common case in one unpack (the same fields as below)
            self.sport, self.dport, self.tcp_seq, self.tcp_ack, off, flags, self.tcp_win = _TCP.unpack_from(d, ihl)
            self.tcp_doff = (off >> 4) * 4
            self.tcp_flags = flags | ((off & 1) << 8)
            self.icmp_type = self.icmp_code = self.icmp_id = -1
            self.l4ok = True
            return
        self.sport = self.dport = 0
        self.tcp_flags = self.tcp_seq = self.tcp_ack = self.tcp_win = self.tcp_doff = 0
        self.icmp_type = self.icmp_code = self.icmp_id = -1
        self.l4ok = False
        if self.frag_off & IP_OFFMASK:
            return  # a non-first fragment has no layer-4 header
        end = min(len(d), self.tot_len)
        proto = self.proto
        if proto == IPPROTO_TCP:
            if end - ihl >= 20:
                self.sport, self.dport = _PORTS.unpack_from(d, ihl)
                self.tcp_seq = _U32.unpack_from(d, ihl + 4)[0]
                self.tcp_ack = _U32.unpack_from(d, ihl + 8)[0]
                self.tcp_doff = (d[ihl + 12] >> 4) * 4
                self.tcp_flags = d[ihl + 13] | ((d[ihl + 12] & 1) << 8)
                self.tcp_win = d[ihl + 14] << 8 | d[ihl + 15]
                self.l4ok = True
        elif proto == IPPROTO_UDP or proto == 136:  # udp, udplite
            if end - ihl >= 8:
                self.sport, self.dport = _PORTS.unpack_from(d, ihl)
                self.l4ok = True
        elif proto == IPPROTO_ICMP:
            if end - ihl >= 4:
                self.icmp_type = d[ihl]
                self.icmp_code = d[ihl + 1]
                if end - ihl >= 8:
                    self.icmp_id = d[ihl + 4] << 8 | d[ihl + 5]
                self.l4ok = True
        elif proto in (132, 33):  # sctp, dccp: ports first
            if end - ihl >= 4:
                self.sport, self.dport = _PORTS.unpack_from(d, ihl)
                self.l4ok = True

    # ------------------------------------------------------------------ info
    @property
    def fragment(self) -> bool:
        """A second or later fragment (what `-f` matches)."""
        return bool(self.frag_off & IP_OFFMASK)

    @property
    def payload_len(self) -> int:
        return self.tot_len - self.ihl

    def copy(self) -> Packet:
        # (made through __init__: a compiled class's __new__ runs it too)
        p = Packet(bytearray(self.data))
        for name in _PACKET_SLOTS:
            if name != "data":
                setattr(p, name, getattr(self, name))
        return p

    def __repr__(self) -> str:
        from pyfw.ext.types import ip_to_str

        return (f"Packet({ip_to_str(self.src)}:{self.sport} > {ip_to_str(self.dst)}:{self.dport} "
                f"proto {self.proto} len {self.tot_len} in={self.indev!r} out={self.outdev!r})")

