"""mac: the Ethernet source address (`-m mac --mac-source 00:11:22:33:44:55`).

The address is parsed the way xtopt_parse_ethermac does (strtoul base 16,
at most two characters a part, so "0:1::3:4:5" and "-1" parts are taken);
the kernel only allows the match where a source MAC exists: PREROUTING,
INPUT and FORWARD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.types import mac_to_str, parse_ethermac_strtoul

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet


@dataclass
class MacData:
    srcaddr: bytes = bytes(6)
    invert: bool = False


class Mac(Match):
    name = "mac"
    hooks = frozenset({"PREROUTING", "INPUT", "FORWARD"})
    # RAW so that the C parser's leniency is kept (types.parse_ethermac is
    # stricter); the generic once/invert/mand checks still apply.
    options = (Opt("mac-source", ArgType.RAW, mand=True, invert=True),)

    def new_data(self) -> MacData:
        return MacData()

    def parse(self, call: Call) -> None:
        data: MacData = call.data
        data.srcaddr = parse_ethermac_strtoul(call.arg if call.arg is not None else "")
        if call.invert:
            data.invert = True

    def save(self, data: MacData, ip: RuleIp) -> str:
        return f"{' !' if data.invert else ''} --mac-source {mac_to_str(data.srcaddr)}"

    def print(self, data: MacData, ip: RuleIp, numeric: bool) -> str:
        return f" MAC {'! ' if data.invert else ''}{mac_to_str(data.srcaddr)}"

    def compile(self, data: MacData, env: Env) -> MatchFn:
        """mac_mt: the Ethernet source address.  A packet without an
        Ethernet header (locally made, or through the loopback device, whose
        type is not ARPHRD_ETHER) never matches, even with `!`."""
        addr, invert = bytes(data.srcaddr), data.invert

        def match(pkt: Packet) -> bool:
            eth = pkt.eth
            if eth is None or len(eth) < 14 or pkt.indev == "lo":
                return False
            return (eth[6:12] == addr) != invert

        return match


EXTENSIONS = [Mac()]
