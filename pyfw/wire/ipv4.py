"""IPv4 header: a checked view over a bytearray, the receive checks Linux
makes before any netfilter hook, and the header rewrites the forwarding
path and the mangle targets do.

- `validate` / `rcv_core` mirror ip_rcv_core (net/ipv4/ip_input.c): what
  is dropped before PREROUTING and which SNMP counter says so.  Bad IP
  options are *not* among them: ip_rcv_options runs in ip_rcv_finish, after
  PREROUTING, so `compile_options` is for the engine to call there (it
  mirrors __ip_options_compile, with the in-place RR/TS updates of a
  received packet when asked).
- `decrease_ttl` is ip_decrease_ttl, `change_dsfield` ipv4_change_dsfield
  (DSCP/TOS targets), `set_src`/`set_dst` the address part of NAT
  (nf_nat_ipv4_manip_pkt plus the pseudo-header fix of the L4 checksum);
  all update the checksums incrementally with the kernel's result.
- `build` makes a header the way ip_build_and_send_pkt /
  ip_push_pending_frames fill it (ID and DF are the caller's choice).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pyfw.wire.checksum import Buffer, checksum, udp_update32, update16, update32, verify

# Offsets into the header (struct iphdr).
VER_IHL: Final = 0
TOS: Final = 1
TOT_LEN: Final = 2
ID: Final = 4
FRAG_OFF: Final = 6
TTL: Final = 8
PROTO: Final = 9
CHECK: Final = 10
SRC: Final = 12
DST: Final = 16
HLEN: Final = 20
MAX_HLEN: Final = 60

IP_CE: Final = 0x8000
IP_DF: Final = 0x4000
IP_MF: Final = 0x2000
IP_OFFSET: Final = 0x1FFF

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_UDPLITE: Final = 136

INET_ECN_MASK: Final = 3
IPTOS_TOS_MASK: Final = 0x1E
IPTOS_PREC_INTERNETCONTROL: Final = 0xC0
IPV4_MIN_MTU: Final = 68
IP_MAX_MTU: Final = 0xFFFF

# skb->pkt_type values (as in pyfw.engine.api)
PACKET_HOST: Final = 0
PACKET_OTHERHOST: Final = 3

# Drop reasons of ip_rcv_core (the SKB_DROP_REASON_* names) ...
DROP_OTHERHOST = "OTHERHOST"
DROP_IP_INHDR = "IP_INHDR"
DROP_IP_CSUM = "IP_CSUM"
DROP_PKT_TOO_SMALL = "PKT_TOO_SMALL"
# ... and the counters each one increments (/proc/net/snmp "Ip:" and
# /proc/net/netstat "IpExt:" names).  InReceives is counted for every
# packet that gets past the OTHERHOST check, whatever happens next.
DROP_MIBS: dict[str, tuple[str, ...]] = {
    DROP_OTHERHOST: (),  # dev rx_otherhost_dropped only
    DROP_IP_INHDR: ("InHdrErrors",),
    DROP_IP_CSUM: ("InCsumErrors", "InHdrErrors"),
    DROP_PKT_TOO_SMALL: ("InTruncatedPkts",),
}

_HDR = struct.Struct("!BBHHHBBH4s4s")
_H = struct.Struct("!H")
_I = struct.Struct("!I")


# ------------------------------------------------------------------ receive
def validate(data: Buffer, pkttype: int = PACKET_HOST) -> str | None:
    """Why ip_rcv_core drops this datagram (a DROP_* reason), or None when
    it goes on to PREROUTING.  `data` starts at the IP header and runs to
    the end of the frame (link-layer padding included).  Never raises."""
    if pkttype == PACKET_OTHERHOST:
        return DROP_OTHERHOST
    n = len(data)
    if n < HLEN:
        return DROP_IP_INHDR
    vihl = data[0]
    ihl = (vihl & 0x0F) * 4
    if ihl < HLEN or vihl >> 4 != 4:
        return DROP_IP_INHDR
    if n < ihl:
        return DROP_IP_INHDR
    v = int.from_bytes(data[:ihl], "big")  # (verify, inline: ihl is even)
    if not v or v % 0xFFFF:
        return DROP_IP_CSUM
    tot_len = data[2] << 8 | data[3]
    if n < tot_len:
        return DROP_PKT_TOO_SMALL
    if tot_len < ihl:
        return DROP_IP_INHDR
    return None


def rcv_core(buf: bytearray, pkttype: int = PACKET_HOST) -> str | None:
    """`validate`, then trim the link-layer padding past tot_len in place
    (pskb_trim_rcsum) when the datagram is kept."""
    reason = validate(buf, pkttype)
    if reason is None:
        tot_len = buf[2] << 8 | buf[3]
        if len(buf) > tot_len:
            del buf[tot_len:]
    return reason


# ------------------------------------------------------------------ fields
def ihl(buf: Buffer, off: int = 0) -> int:
    """Header length in bytes."""
    return (buf[off] & 0x0F) * 4


def tot_len(buf: Buffer, off: int = 0) -> int:
    return buf[off + 2] << 8 | buf[off + 3]


def src(buf: Buffer, off: int = 0) -> int:
    return int(_I.unpack_from(buf, off + SRC)[0])


def dst(buf: Buffer, off: int = 0) -> int:
    return int(_I.unpack_from(buf, off + DST)[0])


def is_fragment(buf: Buffer, off: int = 0) -> bool:
    """MF set or a non-zero offset (ip_is_fragment)."""
    return bool((buf[off + 6] << 8 | buf[off + 7]) & (IP_MF | IP_OFFSET))


def frag_offset(buf: Buffer, off: int = 0) -> int:
    """Fragment offset in bytes."""
    return ((buf[off + 6] << 8 | buf[off + 7]) & IP_OFFSET) << 3


def header_checksum(buf: Buffer, off: int = 0) -> int:
    """The header checksum the header should carry."""
    h = bytearray(buf[off:off + ihl(buf, off)])
    h[10] = h[11] = 0
    return checksum(h)


def send_check(buf: bytearray, off: int = 0) -> None:
    """Recompute the header checksum (ip_send_check)."""
    buf[off + 10] = buf[off + 11] = 0
    _H.pack_into(buf, off + 10, checksum(buf[off:off + ihl(buf, off)]))


class Ipv4:
    """A view over an IPv4 header at `off` in `buf` (smoltcp style).

    Construct with `Ipv4.checked(buf)` to get None instead of a view whose
    accessors could read past the end; setters of the TTL, TOS and address
    fields keep the header checksum (and for addresses, the TCP/UDP
    checksum) right."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: bytearray, off: int = 0) -> None:
        self.buf = buf
        self.off = off

    @classmethod
    def checked(cls, buf: bytearray, off: int = 0) -> Ipv4 | None:
        if len(buf) - off < HLEN or (buf[off] >> 4) != 4:
            return None
        h = (buf[off] & 0x0F) * 4
        if h < HLEN or len(buf) - off < h:
            return None
        return cls(buf, off)

    # getters
    @property
    def version(self) -> int:
        return self.buf[self.off] >> 4

    @property
    def ihl(self) -> int:
        return (self.buf[self.off] & 0x0F) * 4

    @property
    def tos(self) -> int:
        return self.buf[self.off + TOS]

    @tos.setter
    def tos(self, value: int) -> None:
        change_dsfield(self.buf, 0, value, self.off)

    @property
    def tot_len(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + TOT_LEN)[0])

    @property
    def ident(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + ID)[0])

    @property
    def frag_off(self) -> int:
        """The raw flags + offset field."""
        return int(_H.unpack_from(self.buf, self.off + FRAG_OFF)[0])

    @property
    def df(self) -> bool:
        return bool(self.buf[self.off + FRAG_OFF] & 0x40)

    @property
    def mf(self) -> bool:
        return bool(self.buf[self.off + FRAG_OFF] & 0x20)

    @property
    def frag_offset(self) -> int:
        """Offset of this fragment's data in bytes."""
        return (self.frag_off & IP_OFFSET) << 3

    @property
    def ttl(self) -> int:
        return self.buf[self.off + TTL]

    @ttl.setter
    def ttl(self, value: int) -> None:
        set_ttl(self.buf, value, self.off)

    @property
    def proto(self) -> int:
        return self.buf[self.off + PROTO]

    @property
    def check(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + CHECK)[0])

    @property
    def src(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + SRC)[0])

    @src.setter
    def src(self, value: int) -> None:
        set_src(self.buf, value, self.off)

    @property
    def dst(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + DST)[0])

    @dst.setter
    def dst(self, value: int) -> None:
        set_dst(self.buf, value, self.off)

    @property
    def options(self) -> bytes:
        return bytes(self.buf[self.off + HLEN:self.off + self.ihl])

    @property
    def payload_offset(self) -> int:
        return self.off + self.ihl

    def checksum_ok(self) -> bool:
        return verify(self.buf[self.off:self.off + self.ihl])

    def fill_checksum(self) -> None:
        send_check(self.buf, self.off)


# ------------------------------------------------------------------ rewrites
def decrease_ttl(buf: bytearray | Any, off: int = 0) -> int:
    """ip_decrease_ttl: TTL - 1 with the checksum fixed up; returns the new
    TTL.  The caller checks TTL <= 1 first (ip_forward's too_many_hops).
    `buf` may also be a pyfw.engine.packet.Packet: its `data` is rewritten
    and its `ttl` field kept in step."""
    if type(buf) is bytearray:
        return _decrease_ttl(buf, off)
    if not isinstance(buf, (bytearray, memoryview)):
        pkt = buf
        new_ttl = decrease_ttl(pkt.data, off)
        pkt.ttl = new_ttl
        return new_ttl
    hdr = bytearray(buf[off:off + HLEN])  # (a memoryview: the header's copy, written back)
    new = _decrease_ttl(hdr, 0)
    buf[off + TTL:off + CHECK + 2] = hdr[TTL:CHECK + 2]
    return new


def _decrease_ttl(buf: bytearray, off: int) -> int:
    """decrease_ttl on the bytes themselves (typed: compiled, the
    arithmetic is on machine ints)."""
    ttl: int = buf[off + TTL]
    new = (ttl - 1) & 0xFF
    proto: int = buf[off + PROTO]
    # (update16 written out: every forwarded packet comes here)
    hi: int = buf[off + CHECK]
    lo: int = buf[off + CHECK + 1]
    c = ((hi << 8 | lo) + (ttl << 8 | proto) - (new << 8 | proto)) % 0xFFFF
    buf[off + TTL] = new
    buf[off + CHECK] = c >> 8
    buf[off + CHECK + 1] = c & 0xFF
    return new


def set_ttl(buf: bytearray, ttl: int, off: int = 0) -> None:
    """TTL target: csum_replace2 over the TTL/protocol word."""
    old = buf[off + TTL]
    if old == ttl:
        return
    proto = buf[off + PROTO]
    c = update16(_H.unpack_from(buf, off + CHECK)[0], old << 8 | proto, ttl << 8 | proto)
    buf[off + TTL] = ttl
    _H.pack_into(buf, off + CHECK, c)


def change_dsfield(buf: bytearray, mask: int, value: int, off: int = 0) -> None:
    """ipv4_change_dsfield: tos = (tos & mask) | value, checksum updated."""
    old = buf[off + TOS]
    new = ((old & mask) | value) & 0xFF
    vihl = buf[off]
    c = update16(_H.unpack_from(buf, off + CHECK)[0], vihl << 8 | old, vihl << 8 | new)
    buf[off + TOS] = new
    _H.pack_into(buf, off + CHECK, c)


def set_tos(buf: bytearray, tos: int, off: int = 0) -> None:
    """Set the whole TOS byte (ipv4_change_dsfield(iph, 0, tos))."""
    change_dsfield(buf, 0, tos, off)


def _fix_l4(buf: bytearray, off: int, old: int, new: int) -> None:
    """The L4 checksum covers the addresses through the pseudo-header: fix
    it as the NAT manip functions do (not for non-first fragments, not when
    the header is cut short as in an ICMP error's quote)."""
    if (buf[off + 6] << 8 | buf[off + 7]) & IP_OFFSET:
        return
    h = (buf[off] & 0x0F) * 4
    l4 = off + h
    avail = len(buf) - l4
    proto = buf[off + PROTO]
    if proto == IPPROTO_TCP:
        if avail >= 20:
            c = _H.unpack_from(buf, l4 + 16)[0]
            _H.pack_into(buf, l4 + 16, update32(c, old, new))
    elif proto == IPPROTO_UDP:
        if avail >= 8:
            c = _H.unpack_from(buf, l4 + 6)[0]
            _H.pack_into(buf, l4 + 6, udp_update32(c, old, new))
    elif proto == IPPROTO_UDPLITE:
        if avail >= 8:
            c = _H.unpack_from(buf, l4 + 6)[0]
            _H.pack_into(buf, l4 + 6, update32(c, old, new) or 0xFFFF)


def _set_addr(buf: bytearray, pos: int, value: int, off: int, l4: bool) -> None:
    old = _I.unpack_from(buf, off + pos)[0]
    if old == value:
        return
    if l4:
        _fix_l4(buf, off, old, value)
    c = update32(_H.unpack_from(buf, off + CHECK)[0], old, value)
    _I.pack_into(buf, off + pos, value)
    _H.pack_into(buf, off + CHECK, c)


def set_src(buf: bytearray, addr: int, off: int = 0, l4: bool = True) -> None:
    """Rewrite the source address; header checksum and (with `l4`) the
    TCP/UDP checksum updated incrementally."""
    _set_addr(buf, SRC, addr, off, l4)


def set_dst(buf: bytearray, addr: int, off: int = 0, l4: bool = True) -> None:
    """Rewrite the destination address (see set_src)."""
    _set_addr(buf, DST, addr, off, l4)


# ------------------------------------------------------------------ build
def build(src: int, dst: int, proto: int, payload: Buffer, ttl: int = 64, ident: int = 0,
          tos: int = 0, df: bool = False, options: bytes = b"", frag_off: int = 0) -> bytearray:
    """A datagram with a fresh header (checksum filled).  `options` must be
    a multiple of 4 bytes (ip_options_build pads with END)."""
    olen = len(options)
    if olen & 3 or olen > 40:
        raise ValueError("IP options must be padded to 4 bytes, at most 40")
    h = HLEN + olen
    flags = frag_off | (IP_DF if df else 0)
    out = bytearray(h + len(payload))
    _HDR.pack_into(out, 0, 0x40 | h // 4, tos & 0xFF, h + len(payload), ident & 0xFFFF, flags,
                   ttl & 0xFF, proto, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    if olen:
        out[HLEN:h] = options
    out[h:] = payload
    _H.pack_into(out, CHECK, checksum(out[:h]))
    return out


# ------------------------------------------------------------------ options
IPOPT_END: Final = 0
IPOPT_NOOP: Final = 1
IPOPT_RR: Final = 7
IPOPT_TIMESTAMP: Final = 68
IPOPT_SEC: Final = 130
IPOPT_LSRR: Final = 131
IPOPT_CIPSO: Final = 134
IPOPT_SID: Final = 136
IPOPT_SSRR: Final = 137
IPOPT_RA: Final = 148
IPOPT_TS_TSONLY: Final = 0
IPOPT_TS_TSANDADDR: Final = 1
IPOPT_TS_PRESPEC: Final = 3
RTN_UNICAST: Final = 1


def option_copied(opt_type: int) -> bool:
    """IPOPT_COPIED: the option goes into every fragment."""
    return bool(opt_type & 0x80)


@dataclass
class IpOptions:
    """struct ip_options as __ip_options_compile fills it: offsets are from
    the start of the IP header, 0 when the option is absent."""

    optlen: int = 0
    srr: int = 0
    rr: int = 0
    ts: int = 0
    router_alert: int = 0
    cipso: int = 0
    is_strictroute: bool = False
    rr_needaddr: bool = False
    ts_needaddr: bool = False
    ts_needtime: bool = False
    is_changed: bool = False
    # Offset (from the IP header) of the octet at fault, for ICMP parameter
    # problem (info = error << 24); None when the options are good.
    error: int | None = None


def inet_timestamp(now: float) -> int:
    """inet_current_timestamp: milliseconds since midnight UTC."""
    return int(now * 1000) % 86400000


def compile_options(buf: Buffer, off: int = 0, *, spec_dst: int | None = None,
                    now: float | None = None,
                    addr_type: Callable[[int], int] | None = None) -> IpOptions:
    """Parse and check the options of the header at `off` as
    __ip_options_compile does for a received packet.

    With `spec_dst` (the local address as fib_compute_spec_dst picks it)
    the option bytes are updated in place as the kernel does for a routed
    packet: record-route and timestamp slots filled, pointers advanced,
    timestamp overflow counted, bytes after END set to END.  `now` is the
    clock for timestamps and `addr_type(addr)` the route type of an address
    (RTN_LOCAL for the host's own) for pre-specified timestamps; the
    defaults treat every address as not ours.  Never raises."""
    opt = IpOptions()
    if len(buf) - off < HLEN:
        return opt
    h = (buf[off] & 0x0F) * 4
    end_hdr = min(off + h, len(buf))
    opt.optlen = max(0, end_hdr - off - HLEN)
    mangle = spec_dst is not None and isinstance(buf, bytearray)
    midtime = inet_timestamp(now or 0.0)
    p = off + HLEN
    left = opt.optlen
    pp: int | None = None
    while left > 0:
        t = buf[p]
        if t == IPOPT_END:
            q = p + 1
            while q < end_hdr:
                if buf[q] != IPOPT_END:
                    if mangle:
                        buf[q] = IPOPT_END  # type: ignore[index]
                    opt.is_changed = True
                q += 1
            break
        if t == IPOPT_NOOP:
            left -= 1
            p += 1
            continue
        if left < 2:
            pp = p
            break
        olen = buf[p + 1]
        if olen < 2 or olen > left:
            pp = p
            break
        if t in (IPOPT_SSRR, IPOPT_LSRR):
            if olen < 3:
                pp = p + 1
                break
            if buf[p + 2] < 4:
                pp = p + 2
                break
            if opt.srr:
                pp = p
                break
            opt.is_strictroute = t == IPOPT_SSRR
            opt.srr = p - off
        elif t == IPOPT_RR:
            if opt.rr:
                pp = p
                break
            if olen < 3:
                pp = p + 1
                break
            ptr = buf[p + 2]
            if ptr < 4:
                pp = p + 2
                break
            if ptr <= olen:
                if ptr + 3 > olen:
                    pp = p + 2
                    break
                if mangle:
                    assert spec_dst is not None
                    _I.pack_into(buf, p + ptr - 1, spec_dst)  # type: ignore[arg-type]
                    opt.is_changed = True
                    buf[p + 2] = ptr + 4  # type: ignore[index]
                opt.rr_needaddr = True
            opt.rr = p - off
        elif t == IPOPT_TIMESTAMP:
            if opt.ts:
                pp = p
                break
            if olen < 4:
                pp = p + 1
                break
            ptr = buf[p + 2]
            if ptr < 5:
                pp = p + 2
                break
            if ptr <= olen:
                if ptr + 3 > olen:
                    pp = p + 2
                    break
                flag = buf[p + 3] & 0x0F
                timeptr: int | None = None
                if flag == IPOPT_TS_TSONLY:
                    timeptr = p + ptr - 1
                    opt.ts_needtime = True
                    advance = 4
                elif flag == IPOPT_TS_TSANDADDR:
                    if ptr + 7 > olen:
                        pp = p + 2
                        break
                    if mangle:
                        assert spec_dst is not None
                        _I.pack_into(buf, p + ptr - 1, spec_dst)  # type: ignore[arg-type]
                        timeptr = p + ptr + 3
                    opt.ts_needaddr = True
                    opt.ts_needtime = True
                    advance = 8
                elif flag == IPOPT_TS_PRESPEC:
                    if ptr + 7 > olen:
                        pp = p + 2
                        break
                    addr = int(_I.unpack_from(buf, p + ptr - 1)[0])
                    kind = addr_type(addr) if addr_type else RTN_UNICAST
                    if kind == RTN_UNICAST:
                        advance = 0
                    else:
                        timeptr = p + ptr + 3
                        opt.ts_needtime = True
                        advance = 8
                else:
                    advance = 0
                if mangle:
                    if advance:
                        buf[p + 2] = ptr + advance  # type: ignore[index]
                    if timeptr is not None:
                        _I.pack_into(buf, timeptr, midtime)  # type: ignore[arg-type]
                        opt.is_changed = True
            elif (buf[p + 3] & 0x0F) != IPOPT_TS_PRESPEC:
                overflow = buf[p + 3] >> 4
                if overflow == 15:
                    pp = p + 3
                    break
                if mangle:
                    buf[p + 3] = (buf[p + 3] & 0x0F) | ((overflow + 1) << 4)  # type: ignore[index]
                    opt.is_changed = True
            opt.ts = p - off
        elif t == IPOPT_RA:
            if olen < 4:
                pp = p + 1
                break
            if buf[p + 2] == 0 and buf[p + 3] == 0:
                opt.router_alert = p - off
        elif t == IPOPT_CIPSO:
            if opt.cipso:
                pp = p
                break
            opt.cipso = p - off
            # cipso_v4_validate with no CIPSO DOI configured (the default):
            # too short at the length octet, else unknown DOI.
            pp = p + 1 if olen < 8 else p + 2
            break
        # SEC, SID and unknown options are accepted on received packets.
        left -= olen
        p += olen
    if pp is not None:
        opt.error = pp - off
    return opt


def options_fragment(options: Buffer) -> bytearray:
    """ip_options_fragment: the options for the second and later fragments,
    options without the copied flag overwritten with NOOP."""
    out = bytearray(options)
    i = 0
    n = len(out)
    while i < n:
        t = out[i]
        if t == IPOPT_END:
            break
        if t == IPOPT_NOOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        olen = out[i + 1]
        if olen < 2 or olen > n - i:
            break
        if not option_copied(t):
            out[i:i + olen] = b"\x01" * olen
        i += olen
    return out


@dataclass
class EchoOptions:
    """The options of a reply (ICMP error, echo reply, RST) as
    __ip_options_echo derives them from the received packet's: offsets are
    from the start of the reply's IP header."""

    data: bytearray
    srr: int = 0
    rr: int = 0
    ts: int = 0
    cipso: int = 0
    rr_needaddr: bool = False
    ts_needaddr: bool = False
    ts_needtime: bool = False
    is_strictroute: bool = False
    faddr: int | None = None     # first hop of a reversed source route


def options_echo(buf: Buffer, opts: IpOptions, off: int = 0,
                 addr_type: Callable[[int], int] | None = None) -> EchoOptions | None:
    """__ip_options_echo: the reply options for the packet at `off` whose
    options `compile_options` gave `opts` (after its in-place updates).
    None where the kernel refuses to answer (-EINVAL).  Record route and
    timestamp are copied with room claimed for the reply's own entry, a
    source route is reversed, CIPSO copied, everything else dropped."""
    out = EchoOptions(bytearray())
    if opts.optlen == 0 or opts.error is not None:
        return out
    d = out.data
    base = off
    if opts.rr:
        p = base + opts.rr
        olen = buf[p + 1]
        soff = buf[p + 2]
        out.rr = len(d) + HLEN
        start = len(d)
        d += buf[p:p + olen]
        if opts.rr_needaddr and soff <= olen:
            if soff + 3 > olen:
                return None
            d[start + 2] = soff + 4
            out.rr_needaddr = True
    if opts.ts:
        p = base + opts.ts
        olen = buf[p + 1]
        soff = buf[p + 2]
        out.ts = len(d) + HLEN
        start = len(d)
        d += buf[p:p + olen]
        if soff <= olen:
            if opts.ts_needaddr:
                if soff + 3 > olen:
                    return None
                out.ts_needaddr = True
                soff += 4
            if opts.ts_needtime:
                if soff + 3 > olen:
                    return None
                if (d[start + 3] & 0x0F) != IPOPT_TS_PRESPEC:
                    out.ts_needtime = True
                    soff += 4
                else:
                    out.ts_needtime = False
                    if soff + 7 <= olen:
                        addr = int.from_bytes(d[start + soff - 1:start + soff + 3], "big")
                        kind = addr_type(addr) if addr_type else RTN_UNICAST
                        if kind != RTN_UNICAST:
                            out.ts_needtime = True
                            soff += 8
            d[start + 2] = soff & 0xFF
    if opts.srr:
        p = base + opts.srr
        olen = buf[p + 1]
        soff = buf[p + 2]
        doff = 0
        if soff > olen:
            soff = olen + 1
        soff -= 4
        faddr = 0
        hops = bytearray(olen + 4)
        if soff > 3:
            faddr = int.from_bytes(buf[p + soff - 1:p + soff + 3], "big")
            soff -= 4
            doff = 4
            while soff > 3:
                hops[doff - 1:doff + 3] = buf[p + soff - 1:p + soff + 3]
                soff -= 4
                doff += 4
            # RFC 1812: drop a last hop that is the packet's own source
            if bytes(buf[base + SRC:base + SRC + 4]) == bytes(buf[p + soff + 3:p + soff + 7]):
                doff -= 4
        if doff > 3:
            out.faddr = faddr
            start = len(d)
            d += hops[:doff + 3]
            d[start] = buf[p]
            d[start + 1] = doff + 3
            d[start + 2] = 4
            out.srr = start + HLEN
            out.is_strictroute = opts.is_strictroute
    if opts.cipso:
        p = base + opts.cipso
        olen = buf[p + 1]
        out.cipso = len(d) + HLEN
        d += buf[p:p + olen]
    while len(d) & 3:
        d.append(IPOPT_END)
    return out


def options_build(echo: EchoOptions, daddr: int, saddr: int, now: float = 0.0) -> bytes:
    """ip_options_build: the option bytes of the reply, with the final
    destination put in a source route's last slot, the reply's source in
    the claimed record-route/timestamp slots and the time in the timestamp
    (milliseconds since midnight UTC of `now`)."""
    d = bytearray(echo.data)
    if not d:
        return b""

    def put(pos: int, value: int) -> None:
        i = pos - HLEN
        if 0 <= i and i + 4 <= len(d):
            d[i:i + 4] = value.to_bytes(4, "big")

    if echo.srr:
        put(echo.srr + d[echo.srr - HLEN + 1] - 4, daddr)
    if echo.rr_needaddr:
        put(echo.rr + d[echo.rr - HLEN + 2] - 5, saddr)
    if echo.ts_needaddr:
        put(echo.ts + d[echo.ts - HLEN + 2] - 9, saddr)
    if echo.ts_needtime:
        put(echo.ts + d[echo.ts - HLEN + 2] - 5, inet_timestamp(now))
    return bytes(d)


def reply_options(received: Buffer, opts: IpOptions, saddr: int, now: float = 0.0,
                  off: int = 0) -> tuple[bytes, int | None] | None:
    """The options a reply to `received` carries and the address it goes
    to when a source route is reversed (else None); None altogether where
    the kernel sends no reply.  `saddr` is the reply's source."""
    echo = options_echo(received, opts, off)
    if echo is None:
        return None
    daddr = int(_I.unpack_from(received, off + SRC)[0])
    return options_build(echo, daddr, saddr, now), echo.faddr
