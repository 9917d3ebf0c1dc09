"""pkttype: the link-layer packet type (`-m pkttype --pkt-type broadcast`).

Names are case-insensitive, with the aliases bcast, mcast and host; the
first name of a type is what save and -L show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp, fail
from pyfw.ext.match_tcp import ascii_lower

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# PACKET_* from linux/if_packet.h
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3

TYPES: tuple[tuple[str, int], ...] = (
    ("unicast", PACKET_HOST), ("broadcast", PACKET_BROADCAST),
    ("multicast", PACKET_MULTICAST), ("otherhost", PACKET_OTHERHOST),
    ("bcast", PACKET_BROADCAST), ("mcast", PACKET_MULTICAST), ("host", PACKET_HOST),
)


@dataclass
class PkttypeData:
    pkttype: int = PACKET_HOST
    invert: bool = False


def type_name(pkttype: int) -> str:
    for name, value in TYPES:
        if value == pkttype:
            return name
    return str(pkttype)


class Pkttype(Match):
    name = "pkttype"
    options = (Opt("pkt-type", ArgType.STRING, mand=True, invert=True),)

    def new_data(self) -> PkttypeData:
        return PkttypeData()

    def parse(self, call: Call) -> None:
        data: PkttypeData = call.data
        arg = call.arg if call.arg is not None else ""
        for name, value in TYPES:
            if ascii_lower(arg) == name:
                data.pkttype = value
                break
        else:
            raise fail(f"Bad packet type '{arg}'")
        if call.invert:
            data.invert = True

    def save(self, data: PkttypeData, ip: RuleIp) -> str:
        return f"{' !' if data.invert else ''} --pkt-type {type_name(data.pkttype)}"

    def print(self, data: PkttypeData, ip: RuleIp, numeric: bool) -> str:
        return f" PKTTYPE {'!' if data.invert else ''}= {type_name(data.pkttype)}"

    def compile(self, data: PkttypeData, env: Env) -> MatchFn:
        """pkttype_mt: skb->pkt_type; a looped-back packet (PACKET_LOOPBACK)
        counts as multicast for a multicast destination, else broadcast."""
        want, invert = data.pkttype, data.invert

        def match(pkt: Packet) -> bool:
            kind = pkt.pkttype
            if kind == PACKET_LOOPBACK:
                kind = PACKET_MULTICAST if pkt.dst >> 28 == 0xE else PACKET_BROADCAST
            return (kind == want) != invert

        return match


PACKET_LOOPBACK = 5


EXTENSIONS = [Pkttype()]
