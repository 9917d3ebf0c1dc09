"""tcp: TCP ports, flags and options (`-p tcp --dport 22`).

libxt_tcp is an old-style extension with its own messages ("Only one
`--source-port' allowed"), so every option is RAW/multi and checked here.
Ports go through xtables_parse_port (strtoul base 0, then a tcp service
name); a range "a:b" with a > b is refused.  The kernel match is registered
for IPPROTO_TCP, so the core refuses it without `-p tcp`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, Hotdrop, MatchFn
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp, fail
from pyfw.ext.types import parse_port, port_to_service, strtoul

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# struct xt_tcp invflags (XT_TCP_INV_*).
INV_SRCPT = 0x01
INV_DSTPT = 0x02
INV_FLAGS = 0x04
INV_OPTION = 0x08
INV_MASK = 0x0F

# tcp_flag_names: order matters for printing (lowest bit first, ALL last).
FLAG_NAMES: tuple[tuple[str, int], ...] = (
    ("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08),
    ("ACK", 0x10), ("URG", 0x20), ("ALL", 0x3F), ("NONE", 0x00),
)


@dataclass
class TcpData:
    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    option: int = 0
    flg_mask: int = 0
    flg_cmp: int = 0
    invflags: int = 0
    # Which of the old-style flags (ports, flags, option) were given; not
    # part of the rule's identity (iptables compares the kernel blob).
    seen: set[str] = field(default_factory=set, compare=False, repr=False)


def parse_ports(arg: str, proto: str) -> tuple[int, int]:
    """parse_tcp_ports: "p", "a:b", ":b", "a:" with names of `proto`."""
    if ":" not in arg:
        port = parse_port(arg, proto)
        return port, port
    lo_s, hi_s = arg.split(":", 1)
    lo = parse_port(lo_s, proto) if lo_s else 0
    hi = parse_port(hi_s, proto) if hi_s else 0xFFFF
    if lo > hi:
        raise fail("invalid portrange (min > max)")
    return lo, hi


def parse_flags(spec: str) -> int:
    """parse_tcp_flag: comma list of flag names, case-insensitive (strtok:
    empty items are skipped)."""
    value = 0
    for word in spec.split(","):
        if word == "":
            continue
        for name, bit in FLAG_NAMES:
            if ascii_lower(name) == ascii_lower(word):
                value |= bit
                break
        else:
            raise fail(f"Unknown TCP flag `{word}'")
    return value


def ascii_lower(s: str) -> str:
    """What strcasecmp folds: ASCII letters only."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def flags_to_str(flags: int) -> str:
    """print_tcpf: names lowest bit first, NONE for no flag."""
    names: list[str] = []
    while flags:
        for name, bit in FLAG_NAMES:
            if flags & bit:
                names.append(name)
                flags &= ~bit
                break
    return ",".join(names) if names else "NONE"


def save_ports(opt: str, pts: tuple[int, int], inverted: bool) -> str:
    """The tcp/udp save text of one port range (dropped when full)."""
    if pts == (0, 0xFFFF):
        return ""
    inv = " !" if inverted else ""
    if pts[0] != pts[1]:
        return f"{inv} --{opt} {pts[0]}:{pts[1]}"
    return f"{inv} --{opt} {pts[0]}"


def print_port(port: int, proto: str | None, numeric: bool) -> str:
    name = None if numeric else port_to_service(port, proto)
    return name if name is not None else str(port)


def print_ports(label: str, pts: tuple[int, int], inverted: bool, numeric: bool,
                proto: str) -> str:
    """The tcp/udp -L text of one port range ("spt:22", "dpts:!1:2")."""
    if pts == (0, 0xFFFF) and not inverted:
        return ""
    inv = "!" if inverted else ""
    if pts[0] == pts[1]:
        return f" {label}:{inv}{print_port(pts[0], proto, numeric)}"
    return (f" {label}s:{inv}{print_port(pts[0], proto, numeric)}"
            f":{print_port(pts[1], proto, numeric)}")


class Tcp(Match):
    name = "tcp"
    proto = 6
    options = (
        Opt("source-port", ArgType.RAW, invert=True, multi=True),
        Opt("sport", ArgType.RAW, invert=True, multi=True),
        Opt("destination-port", ArgType.RAW, invert=True, multi=True),
        Opt("dport", ArgType.RAW, invert=True, multi=True),
        Opt("syn", ArgType.NONE, invert=True, multi=True),
        Opt("tcp-flags", ArgType.RAW, invert=True, multi=True),
        Opt("tcp-option", ArgType.RAW, invert=True, multi=True),
    )

    def new_data(self) -> TcpData:
        return TcpData()

    def parse(self, call: Call) -> None:
        data: TcpData = call.data
        name = call.opt.name
        arg = call.arg if call.arg is not None else ""
        if name in ("source-port", "sport"):
            if "sport" in data.seen:
                raise fail("Only one `--source-port' allowed")
            data.spts = parse_ports(arg, "tcp")
            if call.invert:
                data.invflags |= INV_SRCPT
            data.seen.add("sport")
        elif name in ("destination-port", "dport"):
            if "dport" in data.seen:
                raise fail("Only one `--destination-port' allowed")
            data.dpts = parse_ports(arg, "tcp")
            if call.invert:
                data.invflags |= INV_DSTPT
            data.seen.add("dport")
        elif name in ("syn", "tcp-flags"):
            if "flags" in data.seen:
                raise fail("Only one of `--syn' or `--tcp-flags'  allowed")
            if name == "syn":
                mask_s, cmp_s = "SYN,RST,ACK,FIN", "SYN"
            else:
                if not call.argv.has_arg():
                    raise fail("--tcp-flags requires two args.")
                mask_s, cmp_s = arg, call.argv.take() or ""
            data.flg_mask = parse_flags(mask_s)
            data.flg_cmp = parse_flags(cmp_s)
            if call.invert:
                data.invflags |= INV_FLAGS
            data.seen.add("flags")
        elif name == "tcp-option":
            if "option" in data.seen:
                raise fail("Only one `--tcp-option' allowed")
            value = strtoul(arg, 1, 0xFF)
            if value is None:
                raise fail(f'Bad TCP option "{arg}"')
            data.option = value
            if call.invert:
                data.invflags |= INV_OPTION
            data.seen.add("option")

    def check(self, data: TcpData, ctx: CheckContext) -> None:
        # tcp_mt_check: no unknown invflags.
        if data.invflags & ~INV_MASK:
            raise KernelError(EINVAL)

    def save(self, data: TcpData, ip: RuleIp) -> str:
        out = save_ports("sport", data.spts, bool(data.invflags & INV_SRCPT))
        out += save_ports("dport", data.dpts, bool(data.invflags & INV_DSTPT))
        if data.option or data.invflags & INV_OPTION:
            out += (" !" if data.invflags & INV_OPTION else "") + f" --tcp-option {data.option}"
        if data.flg_mask or data.invflags & INV_FLAGS:
            out += (" !" if data.invflags & INV_FLAGS else "")
            out += f" --tcp-flags {flags_to_str(data.flg_mask)} {flags_to_str(data.flg_cmp)}"
        return out

    def print(self, data: TcpData, ip: RuleIp, numeric: bool) -> str:
        out = " tcp"
        out += print_ports("spt", data.spts, bool(data.invflags & INV_SRCPT), numeric, "tcp")
        out += print_ports("dpt", data.dpts, bool(data.invflags & INV_DSTPT), numeric, "tcp")
        inv = bool(data.invflags & INV_OPTION)
        if data.option or inv:
            out += f" option={'!' if inv else ''}{data.option}"
        inv = bool(data.invflags & INV_FLAGS)
        if data.flg_mask or inv:
            out += f" flags:{'!' if inv else ''}"
            if numeric:
                out += f"0x{data.flg_mask:02X}/0x{data.flg_cmp:02X}"
            else:
                out += f"{flags_to_str(data.flg_mask)}/{flags_to_str(data.flg_cmp)}"
        if data.invflags & ~INV_MASK:
            out += f" Unknown invflags: 0x{data.invflags & ~INV_MASK:X}"
        return out

    def compile(self, data: TcpData, env: Env) -> MatchFn:
        """tcp_mt: see compile_tcp."""
        return compile_tcp(data)


IP_OFFMASK = 0x1FFF


def tcp_find_option(d: bytearray, start: int, optlen: int, end: int, option: int,
                    invert: bool) -> bool:
    """tcp_find_option: walk the option bytes d[start:start+optlen] (kind,
    length pairs; kinds 0 and 1 are one byte).  Options past the end of the
    packet are a hot drop.  Like the kernel, the length byte of a last
    option that starts on the final byte is read past the options."""
    if not optlen:
        return invert
    if start + optlen > end:
        raise Hotdrop()
    i = 0
    size = len(d)
    while i < optlen:
        kind = d[start + i]
        if kind == option:
            return not invert
        if kind < 2:
            i += 1
        else:
            j = start + i + 1
            i += (d[j] if j < size else 0) or 1
    return invert


def compile_tcp(data: TcpData) -> MatchFn:
    """tcp_mt for one rule.  A non-first fragment never matches, and the one
    at offset 1 (8 bytes in: it could rewrite the flags of the first) is a
    hot drop; so is a first fragment or packet too short for a 20-byte TCP
    header, and a data offset below 5 when an option is tested.  Only the
    low 8 flag bits (byte 13) are compared, as the kernel does."""
    slo, shi = data.spts
    dlo, dhi = data.dpts
    inv = data.invflags
    sinv = bool(inv & INV_SRCPT)
    dinv = bool(inv & INV_DSTPT)
    finv = bool(inv & INV_FLAGS)
    oinv = bool(inv & INV_OPTION)
    fmask, fcmp = data.flg_mask, data.flg_cmp
    option = data.option
    any_sport = (slo, shi) == (0, 0xFFFF) and not sinv
    flags_always = fmask == 0 and fcmp == 0 and not finv

    def short(pkt: Packet) -> bool:
        off = pkt.frag_off & IP_OFFMASK
        if off <= 1:
            raise Hotdrop()
        return False

    if any_sport and flags_always and not option:
        def match_dport(pkt: Packet) -> bool:
            if not pkt.l4ok:
                return short(pkt)
            return (dlo <= pkt.dport <= dhi) != dinv
        return match_dport

    def match(pkt: Packet) -> bool:
        if not pkt.l4ok:
            return short(pkt)
        if ((slo <= pkt.sport <= shi) == sinv or (dlo <= pkt.dport <= dhi) == dinv
                or ((pkt.tcp_flags & fmask) == fcmp) == finv):
            return False
        if option:
            doff = pkt.tcp_doff
            if doff < 20:
                raise Hotdrop()
            d = pkt.data
            return tcp_find_option(d, pkt.l4 + 20, doff - 20, min(len(d), pkt.tot_len),
                                   option, oinv)
        return True

    return match


EXTENSIONS = [Tcp()]
