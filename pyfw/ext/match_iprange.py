"""iprange: match the source and/or destination address against an
inclusive range (revision 1, struct xt_iprange_mtinfo).  The kernel has no
checkentry for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp, warn
from pyfw.ext.types import ip_to_str, numeric_to_ipaddr

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# flags (IPRANGE_*)
IPRANGE_SRC = 1 << 0
IPRANGE_DST = 1 << 1
IPRANGE_SRC_INV = 1 << 4
IPRANGE_DST_INV = 1 << 5


@dataclass
class IprangeInfo:
    """Host-order addresses; a reversed range is kept (it never matches)."""

    src_min: int = 0
    src_max: int = 0
    dst_min: int = 0
    dst_max: int = 0
    flags: int = 0


def parse_range(arg: str, optname: str, warnings: list[str] | None = None) -> tuple[int, int]:
    """iprange_parse_range: "a.b.c.d[-a.b.c.d]", numeric only (short forms
    like "10" are completed with zeros); a reversed range only warns."""
    if "-" in arg:
        first, second = arg.split("-", 1)
    else:
        first = second = arg
    values = []
    for spec in (first, second):
        value = numeric_to_ipaddr(spec)
        if value is None:
            raise ParameterProblem(f'iprange: Bad value for "{optname}" option: "{spec}"')
        values.append(value)
    if "-" in arg and values[0] > values[1]:
        text = f"xt_iprange: range {first}-{second} is reversed and will never match\n"
        if warnings is None:
            warn(text)
        else:
            warnings.append(text)
    return values[0], values[1]


class Iprange(Match):
    name = "iprange"
    revision = 1
    options = (
        Opt("src-range", ArgType.STRING, invert=True),
        Opt("dst-range", ArgType.STRING, invert=True),
    )

    def new_data(self) -> IprangeInfo:
        return IprangeInfo()

    def parse(self, call: Call) -> None:
        d: IprangeInfo = call.data
        arg = call.arg if call.arg is not None else ""
        if call.opt.name == "src-range":
            d.src_min, d.src_max = parse_range(arg, "--src-range", call.warnings)
            d.flags |= IPRANGE_SRC | (IPRANGE_SRC_INV if call.invert else 0)
        else:
            d.dst_min, d.dst_max = parse_range(arg, "--dst-range", call.warnings)
            d.flags |= IPRANGE_DST | (IPRANGE_DST_INV if call.invert else 0)

    def final_check(self, data: IprangeInfo, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise ParameterProblem(
                "iprange match: You must specify `--src-range' or `--dst-range'")

    def save(self, data: IprangeInfo, ip: RuleIp) -> str:
        out = ""
        if data.flags & IPRANGE_SRC:
            out += " !" if data.flags & IPRANGE_SRC_INV else ""
            out += f" --src-range {ip_to_str(data.src_min)}-{ip_to_str(data.src_max)}"
        if data.flags & IPRANGE_DST:
            out += " !" if data.flags & IPRANGE_DST_INV else ""
            out += f" --dst-range {ip_to_str(data.dst_min)}-{ip_to_str(data.dst_max)}"
        return out

    def print(self, data: IprangeInfo, ip: RuleIp, numeric: bool) -> str:
        out = ""
        if data.flags & IPRANGE_SRC:
            out += " source IP range" + (" !" if data.flags & IPRANGE_SRC_INV else "")
            out += f" {ip_to_str(data.src_min)}-{ip_to_str(data.src_max)}"
        if data.flags & IPRANGE_DST:
            out += " destination IP range" + (" !" if data.flags & IPRANGE_DST_INV else "")
            out += f" {ip_to_str(data.dst_min)}-{ip_to_str(data.dst_max)}"
        return out

    def compile(self, data: IprangeInfo, env: Env) -> MatchFn:
        """iprange_mt4: each given range must hold (or, with `!`, not hold)
        its address; a reversed range holds nothing."""
        flags = data.flags
        smin, smax, dmin, dmax = data.src_min, data.src_max, data.dst_min, data.dst_max
        src = bool(flags & IPRANGE_SRC)
        dst = bool(flags & IPRANGE_DST)
        sinv = bool(flags & IPRANGE_SRC_INV)
        dinv = bool(flags & IPRANGE_DST_INV)

        def match(pkt: Packet) -> bool:
            if src and (smin <= pkt.src <= smax) == sinv:
                return False
            if dst and (dmin <= pkt.dst <= dmax) == dinv:
                return False
            return True

        return match


EXTENSIONS = [Iprange()]
