"""addrtype: match the routing type of the source/destination address
(revision 1, struct xt_addrtype_info_v1, the one iptables 1.8.9 uses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.types import strncasecmp_eq

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# flags (XT_ADDRTYPE_*)
INVERT_SOURCE = 0x0001
INVERT_DEST = 0x0002
LIMIT_IFACE_IN = 0x0004
LIMIT_IFACE_OUT = 0x0008

# Route types in rtnetlink order: bit i of a type mask is RTN_NAMES[i].
RTN_NAMES = (
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST",
    "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
)


@dataclass
class AddrtypeInfo:
    source: int = 0  # type bit masks, 0 = not tested
    dest: int = 0
    flags: int = 0


def _one(word: str) -> int | None:
    for i, name in enumerate(RTN_NAMES):
        if strncasecmp_eq(word, name, len(word)):
            return 1 << i
    return None


def parse_types(arg: str) -> int:
    """parse_types: comma list of (abbreviated) type names.  iptables quotes
    a bad word in the middle with `...' and the last one with "..."."""
    mask = 0
    rest = arg
    while "," in rest:
        word, tail = rest.split(",", 1)
        bit = _one(word) if word else None
        if bit is None:
            raise ParameterProblem(f"addrtype: bad type `{rest}'")
        mask |= bit
        rest = tail
    bit = _one(rest) if rest else None
    if bit is None:
        raise ParameterProblem(f'addrtype: bad type "{rest}"')
    return mask | bit


def type_names(mask: int) -> str:
    return ",".join(name for i, name in enumerate(RTN_NAMES) if mask & (1 << i))


class Addrtype(Match):
    name = "addrtype"
    revision = 1
    options = (
        Opt("src-type", ArgType.STRING, invert=True),
        Opt("dst-type", ArgType.STRING, invert=True),
        Opt("limit-iface-in", ArgType.NONE, excl=("limit-iface-out",)),
        Opt("limit-iface-out", ArgType.NONE, excl=("limit-iface-in",)),
    )

    def new_data(self) -> AddrtypeInfo:
        return AddrtypeInfo()

    def parse(self, call: Call) -> None:
        d: AddrtypeInfo = call.data
        name = call.opt.name
        if name == "src-type":
            d.source |= parse_types(call.arg or "")
            if call.invert:
                d.flags |= INVERT_SOURCE
        elif name == "dst-type":
            d.dest |= parse_types(call.arg or "")
            if call.invert:
                d.flags |= INVERT_DEST
        elif name == "limit-iface-in":
            d.flags |= LIMIT_IFACE_IN
        else:
            d.flags |= LIMIT_IFACE_OUT

    def final_check(self, data: AddrtypeInfo, xflags: set[str], udata: dict[str, object]) -> None:
        if "src-type" not in xflags and "dst-type" not in xflags:
            raise ParameterProblem("addrtype: you must specify --src-type or --dst-type")

    def check(self, data: AddrtypeInfo, ctx: CheckContext) -> None:
        """addrtype_mt_checkentry_v1: an interface limit needs a hook that
        has that interface."""
        if data.flags & LIMIT_IFACE_IN and data.flags & LIMIT_IFACE_OUT:
            raise KernelError(EINVAL)
        if data.flags & LIMIT_IFACE_OUT and ctx.hooks & {"PREROUTING", "INPUT"}:
            raise KernelError(EINVAL)
        if data.flags & LIMIT_IFACE_IN and ctx.hooks & {"POSTROUTING", "OUTPUT"}:
            raise KernelError(EINVAL)

    def save(self, data: AddrtypeInfo, ip: RuleIp) -> str:
        out = ""
        if data.source:
            out += " !" if data.flags & INVERT_SOURCE else ""
            out += " --src-type " + type_names(data.source)
        if data.dest:
            out += " !" if data.flags & INVERT_DEST else ""
            out += " --dst-type " + type_names(data.dest)
        if data.flags & LIMIT_IFACE_IN:
            out += " --limit-iface-in"
        if data.flags & LIMIT_IFACE_OUT:
            out += " --limit-iface-out"
        return out

    def print(self, data: AddrtypeInfo, ip: RuleIp, numeric: bool) -> str:
        out = " ADDRTYPE match"
        if data.source:
            out += " src-type " + ("!" if data.flags & INVERT_SOURCE else "") + type_names(data.source)
        if data.dest:
            out += " dst-type " + ("!" if data.flags & INVERT_DEST else "") + type_names(data.dest)
        if data.flags & LIMIT_IFACE_IN:
            out += " limit-in"
        if data.flags & LIMIT_IFACE_OUT:
            out += " limit-out"
        return out

    def compile(self, data: AddrtypeInfo, env: Env) -> MatchFn:
        """addrtype_mt_v1: the route type of the source and/or destination
        (inet_dev_addr_type, asked of env.host.addr_type: a RTN_* number)
        must be in the type set, `!` inverting each test.  With
        --limit-iface-in/-out the lookup is restricted to the packet's in or
        out interface (a local address of another interface is UNICAST)."""
        host = env.host
        src_types, dst_types, flags = data.source, data.dest, data.flags
        sinv = bool(flags & INVERT_SOURCE)
        dinv = bool(flags & INVERT_DEST)
        limit_in = bool(flags & LIMIT_IFACE_IN)
        limit_out = bool(flags & LIMIT_IFACE_OUT)

        def match(pkt: Packet) -> bool:
            dev: str | None = None
            if limit_in:
                dev = pkt.indev or None
            elif limit_out:
                dev = pkt.outdev or None
            if src_types and bool(src_types & (1 << host.addr_type(pkt.src, dev))) == sinv:
                return False
            if dst_types and bool(dst_types & (1 << host.addr_type(pkt.dst, dev))) == dinv:
                return False
            return True

        return match


EXTENSIONS = [Addrtype()]
