"""multiport: up to 15 ports or port ranges (`-m multiport --dports 22,80`).

iptables 1.8.9 uses revision 1 (ranges, `!`) because the kernel has it.
The option checks the rule's `-p` *while parsing*, so `-p` must come first;
ports are xtables_parse_port numbers or service names of that protocol.  A
range counts as two of the 15 slots and needs lo < hi.  The three options
share iptables' exclusion group; aliases report the first name of their id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, Hotdrop, MatchFn
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import INV_PROTO, ArgType, Call, CheckContext, Match, Opt, RuleIp, fail
from pyfw.ext.types import parse_port, port_to_service

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

MULTI_PORTS = 15  # XT_MULTI_PORTS

# enum xt_multiport_flags
SOURCE = 0
DESTINATION = 1
EITHER = 2

PROTO_NAMES = {6: "tcp", 17: "udp", 136: "udplite", 132: "sctp", 33: "dccp"}

# option name -> id (the id's first option name is what iptables reports)
_IDS = {
    "source-ports": SOURCE, "sports": SOURCE,
    "destination-ports": DESTINATION, "dports": DESTINATION,
    "ports": EITHER,
}
_ID_NAMES = {SOURCE: "source-ports", DESTINATION: "destination-ports", EITHER: "ports"}
_SAVE_NAMES = {SOURCE: "sports", DESTINATION: "dports", EITHER: "ports"}


@dataclass
class MultiportData:
    flags: int = SOURCE
    count: int = 0
    # ports[i] with pflags[i] == 1 starts a range ending at ports[i + 1].
    ports: tuple[int, ...] = ()
    pflags: tuple[int, ...] = ()
    invert: bool = False
    seen: set[int] = field(default_factory=set, compare=False, repr=False)


def check_proto(ip: RuleIp) -> str:
    """check_proto: the protocol name for service lookups, or the error."""
    if ip.invflags & INV_PROTO:
        raise fail("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")
    name = PROTO_NAMES.get(ip.proto)
    if name is not None:
        return name
    if not ip.proto:
        raise fail("multiport needs `-p tcp', `-p udp', `-p udplite', "
                   "`-p sctp' or `-p dccp'")
    raise fail("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")


def parse_multi_ports(spec: str, proto: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """parse_multi_ports_v1: comma list of ports and lo:hi ranges."""
    ports: list[int] = []
    pflags: list[int] = []
    items = spec.split(",")
    for index, item in enumerate(items):
        if len(ports) >= MULTI_PORTS:
            break
        if ":" in item:
            if len(ports) == MULTI_PORTS - 1:
                raise fail("too many ports specified")
            lo_s, hi_s = item.split(":", 1)
            lo = parse_port(lo_s, proto)
            hi = parse_port(hi_s, proto)
            ports += [lo, hi]
            pflags += [1, 0]
            if lo >= hi:
                raise fail("invalid portrange specified")
        else:
            ports.append(parse_port(item, proto))
            pflags.append(0)
        if index == len(items) - 1:
            return tuple(ports), tuple(pflags)
    raise fail("too many ports specified")


def _port_text(port: int, proto: int, numeric: bool) -> str:
    name = None if numeric else port_to_service(port, PROTO_NAMES.get(proto))
    return name if name is not None else str(port)


def _ports_text(data: MultiportData, proto: int, numeric: bool) -> str:
    out: list[str] = []
    i = 0
    while i < data.count:
        text = _port_text(data.ports[i], proto, numeric)
        if data.pflags[i] and i + 1 < data.count:
            i += 1
            text += ":" + _port_text(data.ports[i], proto, numeric)
        out.append(text)
        i += 1
    return ",".join(out)


class Multiport(Match):
    name = "multiport"
    revision = 1
    options = tuple(Opt(n, ArgType.RAW, invert=True, multi=True) for n in _IDS)

    def new_data(self) -> MultiportData:
        return MultiportData()

    def parse(self, call: Call) -> None:
        data: MultiportData = call.data
        ident = _IDS[call.opt.name]
        # The options exclude each other and themselves: "once" is by id.
        if ident in data.seen:
            raise fail(f'multiport: option "--{_ID_NAMES[ident]}" can only be used once.\n')
        proto = check_proto(call.ip)
        data.ports, data.pflags = parse_multi_ports(call.arg if call.arg is not None else "", proto)
        data.count = len(data.ports)
        data.flags = ident
        if call.invert:
            data.invert = True
        data.seen.add(ident)

    def final_check(self, data: MultiportData, xflags: set[str], udata: dict[str, object]) -> None:
        if not data.seen:
            raise fail("multiport expection an option")
        # xtables_options_fcheck's exclusion test, in option-table order.
        for first in sorted(data.seen):
            for other in sorted(data.seen):
                if other != first:
                    raise fail(f'multiport: option "--{_ID_NAMES[first]}" cannot be used '
                               f'together with "--{_ID_NAMES[other]}".\n')

    def check(self, data: MultiportData, ctx: CheckContext) -> None:
        # multiport_mt_check: a port protocol, not inverted, sane flags/count.
        if (ctx.ip.proto not in PROTO_NAMES or ctx.ip.invflags & INV_PROTO
                or data.flags not in (SOURCE, DESTINATION, EITHER)
                or data.count > MULTI_PORTS):
            raise KernelError(EINVAL)

    def save(self, data: MultiportData, ip: RuleIp) -> str:
        out = " !" if data.invert else ""
        return out + f" --{_SAVE_NAMES[data.flags]} " + _ports_text(data, ip.proto, True)

    def print(self, data: MultiportData, ip: RuleIp, numeric: bool) -> str:
        label = {SOURCE: "sports", DESTINATION: "dports", EITHER: "ports"}.get(data.flags, "ERROR")
        out = f" multiport {label} "
        if data.invert:
            out += " !"
        return out + _ports_text(data, ip.proto, numeric)

    def compile(self, data: MultiportData, env: Env) -> MatchFn:
        """multiport_mt (revision 1): see compile_multiport."""
        return compile_multiport(data)


def port_ranges(data: MultiportData) -> list[tuple[int, int]]:
    """The (lo, hi) ranges of the port list, single ports as (p, p)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < data.count:
        lo = data.ports[i]
        if data.pflags[i]:
            i += 1
            hi = data.ports[i] if i < len(data.ports) else 0
            out.append((lo, hi))
        else:
            out.append((lo, lo))
        i += 1
    return out


def compile_multiport(data: MultiportData) -> MatchFn:
    """multiport_mt: a fragment never matches; fewer than 4 bytes of layer 4
    (the two ports) is a hot drop.  Any listed port or range that holds the
    source (--sports), destination (--dports) or either (--ports) matches;
    `!` inverts the result."""
    ranges = port_ranges(data)
    singles = frozenset(lo for lo, hi in ranges if lo == hi)
    spans = tuple((lo, hi) for lo, hi in ranges if lo != hi)
    invert = data.invert
    flags = data.flags

    def hit(port: int) -> bool:
        if port in singles:
            return True
        for lo, hi in spans:
            if lo <= port <= hi:
                return True
        return False

    def match(pkt: Packet) -> bool:
        if pkt.l4ok:
            sport, dport = pkt.sport, pkt.dport
        else:
            if pkt.frag_off & 0x1FFF:
                return False
            d = pkt.data
            th = pkt.ihl
            if min(len(d), pkt.tot_len) - th < 4:
                raise Hotdrop()
            sport = d[th] << 8 | d[th + 1]
            dport = d[th + 2] << 8 | d[th + 3]
        if flags == SOURCE:
            found = hit(sport)
        elif flags == DESTINATION:
            found = hit(dport)
        elif flags == EITHER:
            found = hit(dport) or hit(sport)
        else:
            found = False
        return found != invert

    return match


EXTENSIONS = [Multiport()]
