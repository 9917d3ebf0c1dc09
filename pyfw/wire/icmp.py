"""ICMP: a view over the header, and the messages the host sends as Linux
builds them.

- `build_error` is __icmp_send (net/ipv4/icmp.c): the error quotes the
  offending datagram from its IP header on, as much as fits in 576 bytes
  (or the route MTU when smaller) after the new IP and ICMP headers; the
  TOS is the quoted one's TOS bits with precedence "internetwork control"
  (0xC0); TTL 64, no DF (the ICMP socket does not do PMTU discovery).
- `may_send_error` is __icmp_send's refusals: no error about a non-first
  fragment, a link-layer broadcast/multicast, or an ICMP error (or an
  unknown ICMP type).  Rate limits are the engine's business.
- `build_echo_reply` is icmp_echo + icmp_reply: the request's header with
  type 0, its data, its TOS, from the address it was sent to.
"""

from __future__ import annotations

import struct

from pyfw.wire import ipv4
from pyfw.wire.checksum import Buffer, checksum, verify

# Offsets into the ICMP header.
TYPE = 0
CODE = 1
CHECK = 2
ID = 4
SEQ = 6
MTU = 6
POINTER = 4
GATEWAY = 4
HLEN = 8

# Types
ECHOREPLY = 0
DEST_UNREACH = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO = 8
ROUTERADVERT = 9
ROUTERSOLICIT = 10
TIME_EXCEEDED = 11
PARAMETERPROB = 12
TIMESTAMP = 13
TIMESTAMPREPLY = 14
INFO_REQUEST = 15
INFO_REPLY = 16
ADDRESS = 17
ADDRESSREPLY = 18
NR_ICMP_TYPES = 18

# Codes for DEST_UNREACH
NET_UNREACH = 0
HOST_UNREACH = 1
PROT_UNREACH = 2
PORT_UNREACH = 3
FRAG_NEEDED = 4
SR_FAILED = 5
NET_UNKNOWN = 6
HOST_UNKNOWN = 7
HOST_ISOLATED = 8
NET_ANO = 9
HOST_ANO = 10
NET_UNR_TOS = 11
HOST_UNR_TOS = 12
PKT_FILTERED = 13
PREC_VIOLATION = 14
PREC_CUTOFF = 15
# Codes for TIME_EXCEEDED
EXC_TTL = 0
EXC_FRAGTIME = 1

# icmp_pointers[].error: the types that are error messages.
ERROR_TYPES = frozenset({DEST_UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETERPROB})

PACKET_HOST = 0
DEFAULT_TTL = 64
ROOM_MAX = 576

_H = struct.Struct("!H")
_I = struct.Struct("!I")
_HDR = struct.Struct("!BBHI")


def is_error(icmp_type: int) -> bool:
    """An ICMP error type (for replying purposes, unknown types count as
    errors too: see `may_send_error`)."""
    return icmp_type in ERROR_TYPES


class Icmp:
    """A view over an ICMP header at `off` in `buf`."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: bytearray, off: int = 0) -> None:
        self.buf = buf
        self.off = off

    @classmethod
    def checked(cls, buf: bytearray, off: int = 0) -> Icmp | None:
        return cls(buf, off) if len(buf) - off >= HLEN else None

    @property
    def type(self) -> int:
        return self.buf[self.off]

    @type.setter
    def type(self, value: int) -> None:
        self._set16(0, value << 8 | self.buf[self.off + 1])

    @property
    def code(self) -> int:
        return self.buf[self.off + 1]

    @code.setter
    def code(self, value: int) -> None:
        self._set16(0, self.buf[self.off] << 8 | value)

    @property
    def check(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + CHECK)[0])

    @property
    def ident(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + ID)[0])

    @ident.setter
    def ident(self, value: int) -> None:
        self._set16(ID, value)

    @property
    def seq(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + SEQ)[0])

    @property
    def mtu(self) -> int:
        """Next-hop MTU of a fragmentation-needed message."""
        return int(_H.unpack_from(self.buf, self.off + MTU)[0])

    @property
    def pointer(self) -> int:
        return self.buf[self.off + POINTER]

    @property
    def gateway(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + GATEWAY)[0])

    @property
    def inner_offset(self) -> int:
        """Where the quoted datagram of an error starts."""
        return self.off + HLEN

    def _set16(self, pos: int, value: int) -> None:
        b = self.buf
        o = self.off
        old = b[o + pos] << 8 | b[o + pos + 1]
        c = b[o + 2] << 8 | b[o + 3]
        _H.pack_into(b, o + pos, value)
        _H.pack_into(b, o + CHECK, (c + old - value) % 0xFFFF)

    def checksum_ok(self, end: int | None = None) -> bool:
        return verify(self.buf[self.off:end])

    def fill_checksum(self, end: int | None = None) -> None:
        """Recompute the checksum over the message up to `end` (the end of
        the buffer by default)."""
        b = self.buf
        o = self.off
        b[o + 2] = b[o + 3] = 0
        _H.pack_into(b, o + 2, checksum(b[o:end]))


def message(icmp_type: int, code: int, rest: int, data: Buffer) -> bytearray:
    """An ICMP message: header (`rest` is the 32-bit second word) + data,
    checksum filled."""
    out = bytearray(HLEN + len(data))
    _HDR.pack_into(out, 0, icmp_type, code, 0, rest & 0xFFFFFFFF)
    out[HLEN:] = data
    _H.pack_into(out, 2, checksum(out))
    return out


def may_send_error(quoted: Buffer, pkttype: int = PACKET_HOST, route_bcast_mcast: bool = False) -> bool:
    """Whether __icmp_send would answer `quoted` with an error at all.
    Never raises."""
    if len(quoted) < ipv4.HLEN:
        return False
    if pkttype != PACKET_HOST or route_bcast_mcast:
        return False
    if (quoted[6] << 8 | quoted[7]) & ipv4.IP_OFFSET:
        return False
    if quoted[9] == ipv4.IPPROTO_ICMP:
        ihl = (quoted[0] & 0x0F) * 4
        if len(quoted) <= ihl:
            return False
        inner_type = quoted[ihl]
        if inner_type > NR_ICMP_TYPES or inner_type in ERROR_TYPES:
            return False
    return True


def error_tos(quoted_tos: int) -> int:
    """TOS of an ICMP error: RT_TOS(tos) | IPTOS_PREC_INTERNETCONTROL."""
    return (quoted_tos & ipv4.IPTOS_TOS_MASK) | ipv4.IPTOS_PREC_INTERNETCONTROL


def quote_len(quoted_len: int, route_mtu: int = 1500, optlen: int = 0) -> int:
    """How many bytes of the offending datagram an error quotes; 0 when the
    route MTU is too small to send one at all."""
    room = min(route_mtu, ROOM_MAX) - ipv4.HLEN - optlen - HLEN
    if room <= ipv4.HLEN:
        return 0
    return min(quoted_len, room)


def build_error(icmp_type: int, code: int, quoted_datagram: Buffer, mtu: int | None = None, *,
                src: int | None = None, info: int = 0, route_mtu: int = 1500,
                ttl: int = DEFAULT_TTL, ident: int = 0, options: bytes = b"") -> bytearray | None:
    """The IP datagram carrying an ICMP error about `quoted_datagram` (the
    offending datagram from its IP header on, trimmed to its tot_len).

    `mtu` is the next-hop MTU of a fragmentation-needed message, `info` the
    32-bit word otherwise (parameter problem: pointer << 24; redirect: the
    gateway).  `src` is the address the host answers from (the quoted
    destination when that is ours, which is the default).  `options` are
    the echoed IP options, if any.  None when the route MTU leaves no room
    (as the kernel then sends nothing)."""
    if len(quoted_datagram) < ipv4.HLEN:
        return None
    q_src = int(_I.unpack_from(quoted_datagram, ipv4.SRC)[0])
    q_dst = int(_I.unpack_from(quoted_datagram, ipv4.DST)[0])
    n = quote_len(len(quoted_datagram), route_mtu, len(options))
    if n == 0:
        return None
    if mtu is not None:
        info = mtu & 0xFFFF
    body = message(icmp_type, code, info, quoted_datagram[:n])
    return ipv4.build(q_dst if src is None else src, q_src, ipv4.IPPROTO_ICMP, body, ttl=ttl,
                      ident=ident, tos=error_tos(quoted_datagram[ipv4.TOS]), df=False, options=options)


def build_echo_reply(request: Buffer, *, src: int | None = None, ttl: int = DEFAULT_TTL,
                     ident: int = 0, options: bytes = b"") -> bytearray | None:
    """The echo reply to the echo request datagram `request` (IP header
    first, trimmed to tot_len): same code, id, sequence and data, the
    request's TOS, from `src` (default: the address it was sent to).  None
    when the request has no full ICMP header."""
    if len(request) < ipv4.HLEN:
        return None
    h = (request[0] & 0x0F) * 4
    if len(request) < h + HLEN:
        return None
    req = bytes(request[h:])
    rest = int(_I.unpack_from(req, 4)[0])
    body = message(ECHOREPLY, req[1], rest, req[HLEN:])
    r_src = int(_I.unpack_from(request, ipv4.SRC)[0])
    r_dst = int(_I.unpack_from(request, ipv4.DST)[0])
    return ipv4.build(r_dst if src is None else src, r_src, ipv4.IPPROTO_ICMP, body, ttl=ttl,
                      ident=ident, tos=request[ipv4.TOS], df=False, options=options)


def build_timestamp_reply(request: Buffer, now: float, *, src: int | None = None, ttl: int = DEFAULT_TTL,
                          ident: int = 0, options: bytes = b"") -> bytearray | None:
    """icmp_timestamp + icmp_reply: type 14 with the request's id and
    sequence, its originate timestamp, and receive = transmit = `now` as
    milliseconds since midnight UTC; twelve bytes of data whatever the
    request carried.  None when the request has less than the originate
    timestamp after its header (the kernel counts an input error)."""
    if len(request) < ipv4.HLEN:
        return None
    h = (request[0] & 0x0F) * 4
    if len(request) < h + HLEN + 4:
        return None
    req = bytes(request[h:])
    rest = int(_I.unpack_from(req, 4)[0])
    stamp = ipv4.inet_timestamp(now).to_bytes(4, "big")
    body = message(TIMESTAMPREPLY, 0, rest, req[HLEN:HLEN + 4] + stamp + stamp)
    r_src = int(_I.unpack_from(request, ipv4.SRC)[0])
    r_dst = int(_I.unpack_from(request, ipv4.DST)[0])
    return ipv4.build(r_dst if src is None else src, r_src, ipv4.IPPROTO_ICMP, body, ttl=ttl,
                      ident=ident, tos=request[ipv4.TOS], df=False, options=options)
