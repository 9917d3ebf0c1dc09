"""Protocols without a tracker of their own (nf_conntrack_proto_generic:
one timeout, addresses only in the tuple) and GRE
(nf_conntrack_proto_gre.c: unreplied and stream timeouts, ASSURED once
answered; a PPTP call id is the tuple's key)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.engine.api import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from pyfw.engine.conntrack.table import CT_ACCEPT, IPS_NAT_CLASH

if TYPE_CHECKING:
    from pyfw.engine.conntrack import Conntrack
    from pyfw.engine.conntrack.conn import Conn
    from pyfw.engine.packet import Packet


def generic_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    ctk.refresh(conn, ctk.cfg.generic_timeout, pkt, direction)
    return CT_ACCEPT


def gre_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    if not conn.status & IPS_CONFIRMED:
        # (timeout, stream timeout), fixed when the connection is made
        conn.proto_state = (ctk.cfg.gre_timeout, ctk.cfg.gre_timeout_stream)
    timeout, stream = conn.proto_state
    if conn.status & IPS_SEEN_REPLY:
        ctk.refresh(conn, stream, pkt, direction)
        if conn.status & IPS_NAT_CLASH:
            return CT_ACCEPT
        conn.status |= IPS_ASSURED
    else:
        ctk.refresh(conn, timeout, pkt, direction)
    return CT_ACCEPT
