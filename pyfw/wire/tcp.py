"""TCP header: a view, option parsing the way netfilter reads options, the
TCPMSS rewrite, and the RSTs Linux sends.

- `parse_options` reads MSS, window scale, SACK-permitted, SACK blocks and
  timestamps with the loop of nf_conntrack_proto_tcp's tcp_options()
  (stop at EOL, at a length < 2 or one running past the header; a window
  scale above 14 is clamped to 14).  `sack_right_edge` is its tcp_sack().
- `clamp_mss` is xt_TCPMSS's tcpmss_mangle_packet + tcpmss_tg4: lower an
  MSS option (never raise it), or add one (at most 536) to a SYN that has
  none and no data, fixing the TCP checksum, IP tot_len and IP checksum.
- `build_rst_for` is tcp_v4_send_reset (the host's answer for a closed
  port) and, with `reject=True`, nf_send_reset (REJECT --reject-with
  tcp-reset): seq from the segment's ACK field, or ACK of
  seq + SYN + FIN + data length; window 0, no options, DF, IP ID 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pyfw.wire import ipv4
from pyfw.wire.checksum import Buffer, l4_checksum, update16, update32, verify_l4

SPORT = 0
DPORT = 2
SEQ = 4
ACK = 8
DOFF = 12
FLAGS = 13
WINDOW = 14
CHECK = 16
URG_PTR = 18
HLEN = 20
IPPROTO_TCP = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACKF = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCPOLEN_MSS = 4
TCPOLEN_WINDOW = 3
TCPOLEN_SACK_PERM = 2
TCPOLEN_TIMESTAMP = 10
TCPOLEN_SACK_BASE = 2
TCPOLEN_SACK_PERBLOCK = 8
TCP_MAX_WSCALE = 14
TCPMSS_CLAMP_PMTU = 0xFFFF

_H = struct.Struct("!H")
_I = struct.Struct("!I")
_HDR = struct.Struct("!HHIIBBHHH")


class Tcp:
    """A view over a TCP header at `off` in `buf`."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: bytearray, off: int = 0) -> None:
        self.buf = buf
        self.off = off

    @classmethod
    def checked(cls, buf: bytearray, off: int = 0) -> Tcp | None:
        if len(buf) - off < HLEN:
            return None
        doff = (buf[off + DOFF] >> 4) * 4
        if doff < HLEN or len(buf) - off < doff:
            return None
        return cls(buf, off)

    @property
    def sport(self) -> int:
        return int(_H.unpack_from(self.buf, self.off)[0])

    @sport.setter
    def sport(self, value: int) -> None:
        set_port(self.buf, self.off, SPORT, value)

    @property
    def dport(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + DPORT)[0])

    @dport.setter
    def dport(self, value: int) -> None:
        set_port(self.buf, self.off, DPORT, value)

    @property
    def seq(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + SEQ)[0])

    @property
    def ack(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + ACK)[0])

    @property
    def doff(self) -> int:
        """Header length in bytes."""
        return (self.buf[self.off + DOFF] >> 4) * 4

    @property
    def flags(self) -> int:
        """The eight flag bits (FIN .. CWR)."""
        return self.buf[self.off + FLAGS]

    @property
    def window(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + WINDOW)[0])

    @property
    def check(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + CHECK)[0])

    @property
    def urg_ptr(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + URG_PTR)[0])

    @property
    def options(self) -> bytes:
        return bytes(self.buf[self.off + HLEN:self.off + max(HLEN, self.doff)])

    def checksum_ok(self, src: int, dst: int, end: int | None = None) -> bool:
        return verify_l4(src, dst, IPPROTO_TCP, self.buf[self.off:end])


def set_port(buf: bytearray, off: int, which: int, port: int) -> None:
    """Rewrite the port at `which` (SPORT/DPORT) of the header at `off`,
    checksum updated (inet_proto_csum_replace2, no pseudo-header part)."""
    old = buf[off + which] << 8 | buf[off + which + 1]
    if old == port:
        return
    c = buf[off + CHECK] << 8 | buf[off + CHECK + 1]
    _H.pack_into(buf, off + which, port)
    _H.pack_into(buf, off + CHECK, update16(c, old, port))


def set_u32(buf: bytearray, off: int, pos: int, value: int) -> None:
    """Rewrite seq (SEQ) or ack (ACK) with the checksum updated."""
    old = int(_I.unpack_from(buf, off + pos)[0])
    c = buf[off + CHECK] << 8 | buf[off + CHECK + 1]
    _I.pack_into(buf, off + pos, value & 0xFFFFFFFF)
    _H.pack_into(buf, off + CHECK, update32(c, old, value & 0xFFFFFFFF))


# ------------------------------------------------------------------ options
@dataclass
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None          # clamped to 14 as conntrack does
    sack_perm: bool = False
    sack: list[tuple[int, int]] = field(default_factory=list)
    ts_val: int | None = None
    ts_ecr: int | None = None


def parse_options(opts: Buffer) -> TcpOptions:
    """The options (the bytes after the fixed 20-byte header).  Never raises."""
    out = TcpOptions()
    i = 0
    n = len(opts)
    while n - i > 0:
        kind = opts[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if n - i < 2:
            break
        size = opts[i + 1]
        if size < 2 or size > n - i:
            break
        if kind == TCPOPT_MSS and size == TCPOLEN_MSS:
            out.mss = opts[i + 2] << 8 | opts[i + 3]
        elif kind == TCPOPT_WINDOW and size == TCPOLEN_WINDOW:
            out.wscale = min(opts[i + 2], TCP_MAX_WSCALE)
        elif kind == TCPOPT_SACK_PERM and size == TCPOLEN_SACK_PERM:
            out.sack_perm = True
        elif kind == TCPOPT_TIMESTAMP and size == TCPOLEN_TIMESTAMP:
            out.ts_val = int(_I.unpack_from(opts, i + 2)[0])
            out.ts_ecr = int(_I.unpack_from(opts, i + 6)[0])
        elif kind == TCPOPT_SACK and size >= TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK \
                and (size - TCPOLEN_SACK_BASE) % TCPOLEN_SACK_PERBLOCK == 0:
            for j in range(i + 2, i + size, 8):
                out.sack.append((int(_I.unpack_from(opts, j)[0]), int(_I.unpack_from(opts, j + 4)[0])))
        i += size
    return out


def _after(a: int, b: int) -> bool:
    """after(seq1, seq2): seq1 is later than seq2 in sequence space."""
    return ((b - a) & 0xFFFFFFFF) > 0x7FFFFFFF


_TS_ALIGNED = bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP))


def sack_right_edge(opts: Buffer, start: int) -> int:
    """conntrack's tcp_sack(): the highest SACK right edge after `start`
    (the segment's ACK), else `start`."""
    n = len(opts)
    if n == 12 and bytes(opts[:4]) == _TS_ALIGNED:
        return start
    edge = start
    i = 0
    while n - i > 0:
        kind = opts[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if n - i < 2:
            break
        size = opts[i + 1]
        if size < 2 or size > n - i:
            break
        if kind == TCPOPT_SACK and size >= TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK \
                and (size - TCPOLEN_SACK_BASE) % TCPOLEN_SACK_PERBLOCK == 0:
            for j in range(i + 2, i + size, 8):
                right = int(_I.unpack_from(opts, j + 4)[0])
                if _after(right, edge):
                    edge = right
            return edge
        i += size
    return edge


def _optlen(b: Buffer, i: int) -> int:
    """xt_TCPMSS's optlen(): a zero length still makes progress."""
    if b[i] <= TCPOPT_NOP or b[i + 1] == 0:
        return 1
    return int(b[i + 1])


def clamp_mss(buf: bytearray, newmss: int) -> int:
    """TCPMSS on the IPv4 datagram `buf` (IP header first, trimmed): lower
    the MSS option to `newmss`, or add one when there is none.  Returns the
    number of bytes added (0 or 4), or -1 where the target drops the packet
    (truncated TCP header).  Non-first fragments are left alone."""
    if len(buf) < ipv4.HLEN:
        return -1
    if (buf[6] << 8 | buf[7]) & ipv4.IP_OFFSET:
        return 0
    th = (buf[0] & 0x0F) * 4
    length = len(buf) - th
    if length < HLEN:
        return -1
    hl = (buf[th + DOFF] >> 4) * 4
    if length < hl or hl < HLEN:
        return -1
    newmss &= 0xFFFF
    i = HLEN
    while i <= hl - TCPOLEN_MSS:
        p = th + i
        if buf[p] == TCPOPT_MSS and buf[p + 1] == TCPOLEN_MSS:
            oldmss = buf[p + 2] << 8 | buf[p + 3]
            if oldmss <= newmss:
                return 0
            _H.pack_into(buf, p + 2, newmss)
            c = _H.unpack_from(buf, th + CHECK)[0]
            _H.pack_into(buf, th + CHECK, update16(c, oldmss, newmss))
            return 0
        i += _optlen(buf, p)
    if length > hl:
        return 0
    if hl >= 15 * 4:
        return 0
    newmss = min(newmss, 536)
    opt = th + HLEN
    buf[opt:opt] = bytes((TCPOPT_MSS, TCPOLEN_MSS, newmss >> 8, newmss & 0xFF))
    c = _H.unpack_from(buf, th + CHECK)[0]
    c = update16(c, length, length + TCPOLEN_MSS)          # pseudo-header length
    c = update32(c, 0, int(_I.unpack_from(buf, opt)[0]))   # the new option word
    oldword = buf[th + 12] << 8 | buf[th + 13]
    buf[th + DOFF] = (buf[th + DOFF] + (TCPOLEN_MSS // 4 << 4)) & 0xFF
    c = update16(c, oldword, buf[th + 12] << 8 | buf[th + 13])
    _H.pack_into(buf, th + CHECK, c)
    old_len = buf[2] << 8 | buf[3]
    new_len = (old_len + TCPOLEN_MSS) & 0xFFFF
    ic = _H.unpack_from(buf, ipv4.CHECK)[0]
    _H.pack_into(buf, ipv4.TOT_LEN, new_len)
    _H.pack_into(buf, ipv4.CHECK, update16(ic, old_len, new_len))
    return TCPOLEN_MSS


# ------------------------------------------------------------------ build
def build(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
          window: int = 0, options: bytes = b"", payload: Buffer = b"", urg_ptr: int = 0) -> bytearray:
    """A TCP segment (header + options + payload), checksum filled."""
    if len(options) & 3 or len(options) > 40:
        raise ValueError("TCP options must be padded to 4 bytes, at most 40")
    hl = HLEN + len(options)
    out = bytearray(hl + len(payload))
    _HDR.pack_into(out, 0, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (hl // 4) << 4,
                   flags & 0xFF, window, 0, urg_ptr)
    out[HLEN:hl] = options
    out[hl:] = payload
    _H.pack_into(out, CHECK, l4_checksum(src, dst, IPPROTO_TCP, out))
    return out


def build_rst_for(segment: Buffer, *, reject: bool = False, ttl: int = 64,
                  src: int | None = None, options: bytes = b"") -> bytearray | None:
    """The RST Linux sends for the TCP datagram `segment` (IP header first,
    trimmed to tot_len), or None where it sends none (an RST, a non-first
    fragment, a truncated header).

    Default: tcp_v4_send_reset, TOS = segment TOS without ECN bits.  With
    `reject`: nf_send_reset, TOS 0.  Both: DF, IP ID 0, TTL `ttl`, from the
    segment's destination (or `src`).  Checksum validity of `segment` is
    the caller's check (both paths refuse a bad one).  `options`: the
    echoed IP options (ipv4.reply_options; tcp_v4_send_reset only)."""
    if len(segment) < ipv4.HLEN:
        return None
    if (segment[6] << 8 | segment[7]) & ipv4.IP_OFFSET:
        return None
    h = (segment[0] & 0x0F) * 4
    if len(segment) < h + HLEN:
        return None
    th = h
    flags = segment[th + FLAGS]
    if flags & RST:
        return None
    sport = segment[th] << 8 | segment[th + 1]
    dport = segment[th + 2] << 8 | segment[th + 3]
    doff = (segment[th + DOFF] >> 4) * 4
    if flags & ACKF:
        seq = int(_I.unpack_from(segment, th + ACK)[0])
        ack = 0
        rflags = RST
    else:
        seq = 0
        ack = (int(_I.unpack_from(segment, th + SEQ)[0]) + bool(flags & SYN) + bool(flags & FIN)
               + len(segment) - h - doff) & 0xFFFFFFFF
        rflags = RST | ACKF
    s_src = int(_I.unpack_from(segment, ipv4.SRC)[0])
    s_dst = int(_I.unpack_from(segment, ipv4.DST)[0])
    me = s_dst if src is None else src
    tos = 0 if reject else segment[ipv4.TOS] & ~ipv4.INET_ECN_MASK & 0xFF
    seg = build(me, s_src, dport, sport, seq, ack, rflags)
    return ipv4.build(me, s_src, IPPROTO_TCP, seg, ttl=ttl, ident=0, tos=tos, df=True, options=options)
