"""Helpers for the conntrack tests: scapy packets -> Packet -> in_hook/confirm."""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP, TCP  # type: ignore[import-untyped]

from pyfw.engine.api import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IP_CT_NONE,
    IP_CT_RELATED,
    IP_CT_UNTRACKED,
)
from pyfw.engine.conntrack import Conntrack
from pyfw.engine.packet import Packet

A = "10.0.0.1"
B = "10.0.1.2"

NAMES = {IP_CT_NEW: "NEW", IP_CT_ESTABLISHED: "EST", IP_CT_ESTABLISHED_REPLY: "EST_REPLY",
         IP_CT_RELATED: "REL", IP_CT_RELATED + 3: "REL_REPLY", IP_CT_UNTRACKED: "UNTRACKED",
         IP_CT_NONE: "INVALID"}


def mkpkt(scapy_pkt: Any, t: float = 1000.0, hook: str = "PREROUTING") -> Packet:
    p = Packet(bytearray(bytes(scapy_pkt)), indev="eth0", time=t)
    p.hook = hook
    p.local = hook == "OUTPUT"
    return p


def feed(ct: Conntrack, scapy_pkt: Any, t: float = 1000.0, hook: str = "PREROUTING",
         notrack: bool = False) -> tuple[str, Packet, bool]:
    """One packet through in_hook then confirm: (ctinfo name, packet, confirmed ok)."""
    p = mkpkt(scapy_pkt, t, hook)
    p.notrack = notrack
    ct.in_hook(p)
    name = NAMES[p.ctinfo]
    ok = ct.confirm(p)
    return name, p, ok


class TcpFlow:
    """A scripted TCP conversation between A:sport and B:dport."""

    def __init__(self, sport: int = 40000, dport: int = 80, a: str = A, b: str = B,
                 iss_a: int = 1000, iss_b: int = 5000) -> None:
        self.a, self.b, self.sport, self.dport = a, b, sport, dport
        self.seq = [iss_a, iss_b]
        self.ack = [0, 0]

    def seg(self, d: int, flags: str, data: bytes = b"", seq: int | None = None, ack: int | None = None,
            win: int = 64240, options: list[Any] | None = None, advance: bool = True) -> Any:
        src, dst = (self.a, self.b) if d == 0 else (self.b, self.a)
        sp, dp = (self.sport, self.dport) if d == 0 else (self.dport, self.sport)
        s = self.seq[d] if seq is None else seq
        a = self.ack[d] if ack is None else ack
        if "A" not in flags:
            a = 0 if ack is None else ack
        p = IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=s & 0xFFFFFFFF,
                                       ack=a & 0xFFFFFFFF, window=win, options=options or [])
        if data:
            p = p / data
        if advance:
            n = len(data) + ("S" in flags) + ("F" in flags)
            self.seq[d] = (s + n) & 0xFFFFFFFF
            self.ack[1 - d] = self.seq[d]
        return p

    def handshake(self, ct: Conntrack, t: float = 1000.0) -> list[str]:
        out = [feed(ct, self.seg(0, "S"), t)[0]]
        out.append(feed(ct, self.seg(1, "SA"), t + 0.01)[0])
        out.append(feed(ct, self.seg(0, "A"), t + 0.02)[0])
        return out


def only(ct: Conntrack) -> Any:
    es = ct.entries()
    assert len(es) == 1, es
    return es[0]


def tcp_state(conn: Any) -> str:
    from pyfw.engine.conntrack.tcp import STATE_NAMES

    return STATE_NAMES[conn.proto_state.state]


__all__ = ["A", "B", "IP", "TCP", "TcpFlow", "feed", "mkpkt", "only", "tcp_state"]
