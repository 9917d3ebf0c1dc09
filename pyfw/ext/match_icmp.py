"""icmp: ICMP type and code (`-p icmp --icmp-type echo-request`).

Names are matched as case-insensitive prefixes of iptables' table (an
ambiguous prefix is refused), otherwise "type[/code[:code]]" numbers (strtoul
base 0, 0-255).  Type 255 with codes 0-255 is "any".  The kernel match is
registered for IPPROTO_ICMP, so it needs `-p icmp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, Hotdrop, MatchFn
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp, fail
from pyfw.ext.match_tcp import ascii_lower
from pyfw.ext.types import strtoul_end

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

INV = 0x01  # IPT_ICMP_INV

# (name, type, code_min, code_max), in libxt_icmp.h order (used for prefix
# matching and for printing the first name of a type/code range).
ICMP_CODES: tuple[tuple[str, int, int, int], ...] = (
    ("any", 0xFF, 0, 0xFF),
    ("echo-reply", 0, 0, 0xFF),
    ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xFF),
    ("redirect", 5, 0, 0xFF),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xFF),
    ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF),
    ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF),
    ("ttl-exceeded", 11, 0, 0xFF),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xFF),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF),
    ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF),
    ("address-mask-reply", 18, 0, 0xFF),
)


@dataclass
class IcmpData:
    type: int = 0xFF
    code: tuple[int, int] = (0, 0xFF)
    invflags: int = 0


def _parse_range(s: str) -> tuple[tuple[int, int], str] | None:
    """parse_range: "n" or "n:m", each 0-255 (strtoul base 0)."""
    lo, rest = strtoul_end(s, 0, 0xFF)
    if lo is None:
        return None
    hi = lo
    if rest.startswith(":"):
        value, rest = strtoul_end(rest[1:], 0, 0xFF)
        if value is None:
            return None
        hi = value
    return (lo, hi), rest


def parse_icmp(spec: str) -> tuple[int, tuple[int, int]]:
    """ipt_parse_icmp: (type, (code_min, code_max))."""
    found: tuple[str, int, int, int] | None = None
    low = ascii_lower(spec)
    for entry in ICMP_CODES:
        if not ascii_lower(entry[0]).startswith(low):
            continue
        if found is not None:
            raise fail(f"Ambiguous ICMP type `{spec}': `{found[0]}' or `{entry[0]}'?")
        found = entry
    if found is not None:
        return found[1], (found[2], found[3])
    parsed = _parse_range(spec)
    if parsed is None:
        raise fail(f"Unknown ICMP type `{spec}'")
    types, rest = parsed
    code = (0, 0xFF)
    if rest.startswith("/"):
        parsed = _parse_range(rest[1:])
        if parsed is None:
            raise fail(f"Unknown ICMP code `{spec}'")
        code, rest = parsed
    if rest != "":
        raise fail(f"unknown character {rest[0]}")
    if types[0] != types[1]:
        raise fail("ICMP type range not supported")
    return types[0], code


class Icmp(Match):
    name = "icmp"
    proto = 1
    options = (Opt("icmp-type", ArgType.STRING, mand=True, invert=True),)

    def new_data(self) -> IcmpData:
        return IcmpData()

    def parse(self, call: Call) -> None:
        data: IcmpData = call.data
        data.type, data.code = parse_icmp(call.arg if call.arg is not None else "")
        if call.invert:
            data.invflags |= INV

    def check(self, data: IcmpData, ctx: CheckContext) -> None:
        # icmp_checkentry: no unknown invflags.
        if data.invflags & ~INV:
            raise KernelError(EINVAL)

    def save(self, data: IcmpData, ip: RuleIp) -> str:
        out = " !" if data.invflags & INV else ""
        if data.type == 0xFF:
            return out + " --icmp-type any"
        out += f" --icmp-type {data.type}"
        if data.code != (0, 0xFF):
            out += f"/{data.code[0]}"
        return out

    def print(self, data: IcmpData, ip: RuleIp, numeric: bool) -> str:
        inv = bool(data.invflags & INV)
        out = " icmp"
        if not numeric:
            for name, typ, cmin, cmax in ICMP_CODES:
                if (typ, cmin, cmax) == (data.type, data.code[0], data.code[1]):
                    return f"{out} {'!' if inv else ''}{name}" + self._unknown(data)
        if inv:
            out += " !"
        out += f"type {data.type}"
        if data.code[0] == data.code[1]:
            out += f" code {data.code[0]}"
        elif data.code != (0, 0xFF):
            out += f" codes {data.code[0]}-{data.code[1]}"
        return out + self._unknown(data)

    @staticmethod
    def _unknown(data: IcmpData) -> str:
        if data.invflags & ~INV:
            return f" Unknown invflags: 0x{data.invflags & ~INV:X}"
        return ""

    def compile(self, data: IcmpData, env: Env) -> MatchFn:
        """icmp_match: see compile_icmp."""
        return compile_icmp(data)


def compile_icmp(data: IcmpData) -> MatchFn:
    """icmp_match: a fragment never matches; fewer than 8 bytes of ICMP
    header (struct icmphdr) is a hot drop.  Type 0xFF ("any") matches every
    type and code."""
    typ = data.type
    cmin, cmax = data.code
    inv = bool(data.invflags & INV)

    def short(pkt: Packet) -> bool:
        if pkt.frag_off & 0x1FFF:
            return False
        d = pkt.data
        if min(len(d), pkt.tot_len) - pkt.ihl < 8:
            raise Hotdrop()
        return True

    if typ == 0xFF:
        def match_any(pkt: Packet) -> bool:
            if not pkt.l4ok or pkt.icmp_id < 0:
                if not short(pkt):
                    return False
            return not inv
        return match_any

    def match(pkt: Packet) -> bool:
        if not pkt.l4ok or pkt.icmp_id < 0:
            if not short(pkt):
                return False
        return (pkt.icmp_type == typ and cmin <= pkt.icmp_code <= cmax) != inv

    return match


EXTENSIONS = [Icmp()]
