"""Building the stack's outgoing IPv4+TCP datagrams in one buffer.

One struct pack for both headers and the pyfw.wire.checksum helpers for
the two checksums: the per-segment cost in pure Python is a few calls, not
per-byte work.  Headers as Linux's tcp_transmit_skb / ip_queue_xmit fill
them for a connected socket: DF set, TTL 64, TOS 0, IP ID from a
per-connection counter.
"""

from __future__ import annotations

import struct

from pyfw.wire.checksum import Buffer, checksum, l4_checksum
from pyfw.wire.tcp import (
    TCPOLEN_MSS,
    TCPOLEN_SACK_PERM,
    TCPOLEN_WINDOW,
    TCPOPT_MSS,
    TCPOPT_NOP,
    TCPOPT_SACK_PERM,
    TCPOPT_WINDOW,
)

_IPTCP = struct.Struct("!BBHHHBBHIIHHIIBBHHH")
_H = struct.Struct("!H")
IPPROTO_TCP = 6
IP_DF = 0x4000
DEFAULT_TTL = 64
M32 = 0xFFFFFFFF


def build(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
          ident: int, payload: Buffer = b"", options: bytes = b"", ttl: int = DEFAULT_TTL) -> bytes:
    """An IPv4 datagram carrying one TCP segment, both checksums filled.
    `seq`/`ack` may be unwrapped (any size): they are taken mod 2**32."""
    thl = 20 + len(options)
    tot = 20 + thl + len(payload)
    pkt = bytearray(tot)
    _IPTCP.pack_into(pkt, 0, 0x45, 0, tot, ident & 0xFFFF, IP_DF, ttl, IPPROTO_TCP, 0, src, dst,
                     sport, dport, seq & M32, ack & M32, thl << 2, flags, window, 0, 0)
    if options:
        pkt[40:20 + thl] = options
    if payload:
        pkt[20 + thl:] = payload
    mv = memoryview(pkt)
    _H.pack_into(pkt, 36, l4_checksum(src, dst, IPPROTO_TCP, mv[20:]))
    _H.pack_into(pkt, 10, checksum(mv[:20]))
    mv.release()
    return bytes(pkt)


def syn_options(mss: int, wscale: int | None, sack: bool = False) -> bytes:
    """MSS, NOP NOP SACK-permitted when offered, NOP + window scale when
    offered: the options of our SYN and SYN-ACK (no timestamps: optional
    and declined, RFC 7323)."""
    opts = bytes((TCPOPT_MSS, TCPOLEN_MSS, mss >> 8 & 0xFF, mss & 0xFF))
    if sack:
        opts += bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM))
    if wscale is not None:
        opts += bytes((TCPOPT_NOP, TCPOPT_WINDOW, TCPOLEN_WINDOW, wscale))
    return opts
