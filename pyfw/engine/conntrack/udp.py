"""UDP (and UDP-Lite) tracking as nf_conntrack_proto_udp.c: a short
timeout until the other side answers, the stream timeout and ASSURED once
traffic in both directions lasts more than two seconds; udp_error's length
and checksum checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.engine.api import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from pyfw.engine.conntrack.table import CT_ACCEPT, CT_INVALID, IPPROTO_UDP, IPS_NAT_CLASH, checksum_ok

if TYPE_CHECKING:
    from pyfw.engine.conntrack import Conntrack
    from pyfw.engine.conntrack.conn import Conn
    from pyfw.engine.packet import Packet

STREAM_DELAY = 2.0  # seconds after the first packet before a stream is ASSURED


def udp_error(ctk: Conntrack, pkt: Packet, prerouting: bool) -> bool:
    d = pkt.data
    off = pkt.ihl
    udplen = pkt.tot_len - off
    if udplen < 8:
        return True  # short packet
    hlen = d[off + 4] << 8 | d[off + 5]
    if hlen > udplen or hlen < 8:
        return True  # truncated/malformed
    if d[off + 6] == 0 and d[off + 7] == 0:
        return False  # no checksum
    return prerouting and ctk.cfg.checksum and not checksum_ok(d, pkt.tot_len, pkt.src, pkt.dst, off, IPPROTO_UDP)


def udp_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    """nf_conntrack_udp_packet"""
    if udp_error(ctk, pkt, prerouting):
        return CT_INVALID
    cfg = ctk.cfg
    now = pkt.time
    status = conn.status
    if not status & IPS_CONFIRMED:
        conn.proto_state = now + STREAM_DELAY  # stream_ts
    if status & IPS_SEEN_REPLY:
        extra = cfg.udp_timeout
        stream = False
        if now > conn.proto_state:  # still active after two seconds
            extra = cfg.udp_timeout_stream
            stream = not status & IPS_ASSURED
        ctk.refresh(conn, extra, pkt, direction)
        if status & IPS_NAT_CLASH:
            return CT_ACCEPT  # never ASSURED: it times out soon
        if stream:
            conn.status |= IPS_ASSURED
    else:
        ctk.refresh(conn, cfg.udp_timeout, pkt, direction)
    return CT_ACCEPT


def udplite_error(pkt: Packet) -> bool:
    """Checksum coverage and a missing checksum (the checksum itself is not
    verified here)."""
    d = pkt.data
    off = pkt.ihl
    udplen = pkt.tot_len - off
    if udplen < 8:
        return True
    cscov = d[off + 4] << 8 | d[off + 5]
    if cscov != 0 and (cscov < 8 or cscov > udplen):
        return True
    return d[off + 6] == 0 and d[off + 7] == 0


def udplite_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    """nf_conntrack_udplite_packet: replied at once means a stream."""
    if udplite_error(pkt):
        return CT_INVALID
    if conn.status & IPS_SEEN_REPLY:
        ctk.refresh(conn, ctk.cfg.udp_timeout_stream, pkt, direction)
        if conn.status & IPS_NAT_CLASH:
            return CT_ACCEPT
        conn.status |= IPS_ASSURED
    else:
        ctk.refresh(conn, ctk.cfg.udp_timeout, pkt, direction)
    return CT_ACCEPT
