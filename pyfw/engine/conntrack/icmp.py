"""ICMP tracking as nf_conntrack_proto_icmp.c: requests and their replies
(echo, timestamp, info, address mask) are connections keyed by the id; an
error message (unreachable, source quench, redirect, time exceeded,
parameter problem) belongs to the connection of the packet it quotes and
is RELATED to it (nf_conntrack_inet_error); the rest is INVALID."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pyfw.engine.api import IP_CT_IS_REPLY, IP_CT_RELATED
from pyfw.engine.conntrack.table import CT_ACCEPT, CT_INVALID, IPPROTO_ICMP, checksum_ok, get_tuple, invert

if TYPE_CHECKING:
    from pyfw.engine.conntrack import Conntrack
    from pyfw.engine.conntrack.conn import Conn
    from pyfw.engine.packet import Packet

NR_ICMP_TYPES: Final = 18
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})   # icmp_is_err()
VALID_NEW = frozenset({8, 13, 15, 17})       # echo, timestamp, info, address mask requests

# nf_conntrack_icmpv4_error results
ICMP_TRACK: Final = 1      # not an error message: track it as its own connection
ICMP_ERROR: Final = -1     # broken, or quoting nothing we know: no connection
ICMP_RELATED: Final = 2    # the packet now belongs to a connection (pkt.ct set)


def icmp_error(ctk: Conntrack, pkt: Packet, prerouting: bool, zone: int, zdir: int) -> int:
    d = pkt.data
    off = pkt.ihl
    end = pkt.tot_len
    if end - off < 8:
        return ICMP_ERROR  # short packet
    if prerouting and ctk.cfg.checksum and not checksum_ok(d, end, pkt.src, pkt.dst, off, IPPROTO_ICMP):
        return ICMP_ERROR
    itype = d[off]
    if itype > NR_ICMP_TYPES:
        return ICMP_ERROR
    if itype not in ICMP_ERRORS:
        return ICMP_TRACK
    # the quoted IP header and the start of its layer 4
    inner = off + 8
    if end - inner < 20:
        return ICMP_ERROR
    if (d[inner + 6] << 8 | d[inner + 7]) & 0x1FFF:
        return ICMP_ERROR  # a quoted non-first fragment
    ihl = (d[inner] & 0x0F) * 4
    l4 = inner + ihl
    if l4 > end or ihl == 0:
        return ICMP_ERROR
    src = int.from_bytes(d[inner + 12:inner + 16], "big")
    dst = int.from_bytes(d[inner + 16:inner + 20], "big")
    orig = get_tuple(d, l4, end, d[inner + 9], src, dst)
    if orig is None:
        return ICMP_ERROR
    want = invert(orig)
    if want is None:
        return ICMP_ERROR
    hit = ctk.table.find(want, zone, zdir, pkt.time)
    if hit is None:
        return ICMP_ERROR
    conn, direction = hit
    # the error must go where the connection's packets in that direction go
    if (conn.orig if direction == 0 else conn.reply).dst != pkt.dst:
        return ICMP_ERROR
    pkt.ct = conn
    pkt.ctinfo = IP_CT_RELATED + (IP_CT_IS_REPLY if direction else 0)
    pkt.ctdir = direction
    return ICMP_RELATED


def icmp_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    """nf_conntrack_icmp_packet: only a request may start a connection."""
    if conn.orig.dport >> 8 not in VALID_NEW:
        return CT_INVALID
    ctk.refresh(conn, ctk.cfg.icmp_timeout, pkt, direction)
    return CT_ACCEPT
