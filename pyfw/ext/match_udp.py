"""udp: UDP ports (`-p udp --dport 53`).

A new-style extension whose ports are XTTYPE_PORTRC: getaddrinfo numbers
(decimal, cut to 16 bits) or service names, no min <= max check.  `--sport`
and `--source-port` share one option id, so iptables names the first of them
("--source-port") in its messages; the aliases are RAW/multi here and the
once-only rule is checked by id.  The kernel match wants `-p udp`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, Hotdrop, MatchFn
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp, fail
from pyfw.ext.match_tcp import print_ports, save_ports
from pyfw.ext.types import parse_portrc_gai

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

INV_SRCPT = 0x01
INV_DSTPT = 0x02
INV_MASK = 0x03

# option name -> (id name used in messages, invflag)
_IDS = {
    "source-port": ("source-port", INV_SRCPT),
    "sport": ("source-port", INV_SRCPT),
    "destination-port": ("destination-port", INV_DSTPT),
    "dport": ("destination-port", INV_DSTPT),
}


@dataclass
class UdpData:
    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    invflags: int = 0
    seen: set[str] = field(default_factory=set, compare=False, repr=False)


class Udp(Match):
    name = "udp"
    proto = 17
    options = tuple(Opt(n, ArgType.RAW, invert=True, multi=True) for n in _IDS)

    def new_data(self) -> UdpData:
        return UdpData()

    def parse(self, call: Call) -> None:
        data: UdpData = call.data
        id_name, flag = _IDS[call.opt.name]
        if id_name in data.seen:
            raise fail(f'udp: option "--{id_name}" can only be used once.\n')
        rng = parse_portrc_gai("udp", id_name, call.arg if call.arg is not None else "")
        if flag == INV_SRCPT:
            data.spts = rng
        else:
            data.dpts = rng
        if call.invert:
            data.invflags |= flag
        data.seen.add(id_name)

    def check(self, data: UdpData, ctx: CheckContext) -> None:
        # udp_mt_check: no unknown invflags.
        if data.invflags & ~INV_MASK:
            raise KernelError(EINVAL)

    def save(self, data: UdpData, ip: RuleIp) -> str:
        return (save_ports("sport", data.spts, bool(data.invflags & INV_SRCPT))
                + save_ports("dport", data.dpts, bool(data.invflags & INV_DSTPT)))

    def print(self, data: UdpData, ip: RuleIp, numeric: bool) -> str:
        out = " udp"
        out += print_ports("spt", data.spts, bool(data.invflags & INV_SRCPT), numeric, "udp")
        out += print_ports("dpt", data.dpts, bool(data.invflags & INV_DSTPT), numeric, "udp")
        if data.invflags & ~INV_MASK:
            out += f" Unknown invflags: 0x{data.invflags & ~INV_MASK:X}"
        return out

    def compile(self, data: UdpData, env: Env) -> MatchFn:
        """udp_mt: see compile_udp."""
        return compile_udp(data)


def compile_udp(data: UdpData) -> MatchFn:
    """udp_mt (also UDP-Lite): a fragment never matches (no hot drop, unlike
    tcp); a packet too short for the 8-byte header is a hot drop."""
    slo, shi = data.spts
    dlo, dhi = data.dpts
    sinv = bool(data.invflags & INV_SRCPT)
    dinv = bool(data.invflags & INV_DSTPT)

    def match(pkt: Packet) -> bool:
        if not pkt.l4ok:
            if pkt.frag_off & 0x1FFF:
                return False
            raise Hotdrop()
        return (slo <= pkt.sport <= shi) != sinv and (dlo <= pkt.dport <= dhi) != dinv

    return match


EXTENSIONS = [Udp()]
