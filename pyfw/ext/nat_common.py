"""What DNAT, SNAT, MASQUERADE and REDIRECT share (iptables' libxt_NAT):
the NAT range kept numerically as the kernel holds it (struct nf_nat_range2),
the `--to-destination`/`--to-source`/`--to-ports` parsers with their
messages, and the range text of save and -L.

The NAT engine reads `NatRange` directly: addresses and ports are host-order
ints, `flags` are the kernel's NF_NAT_RANGE_* bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target
from pyfw.ext.types import ip_to_str, service_to_port, strtoul_end

# linux/netfilter/nf_nat.h
RANGE_MAP_IPS: Final = 1 << 0
RANGE_PROTO_SPECIFIED: Final = 1 << 1
RANGE_PROTO_RANDOM: Final = 1 << 2
RANGE_PERSISTENT: Final = 1 << 3
RANGE_PROTO_RANDOM_FULLY: Final = 1 << 4
RANGE_PROTO_OFFSET: Final = 1 << 5

# Protocols whose rules may name ports (libxt_NAT's portok; ICMP's "port"
# is the echo id).  The rule's -p at the time the option is read counts,
# inverted or not, as in iptables.
PORT_PROTOS = frozenset({6, 17, 132, 33, 1})


@dataclass(slots=True)  # (slots: NAT reads it per new connection)
class NatRange:
    """One NAT range (nf_nat_range2); the compat revisions keep base_port 0."""

    flags: int = 0
    min_ip: int = 0
    max_ip: int = 0
    min_port: int = 0
    max_port: int = 0
    base_port: int = 0


def inet_pton4(text: str) -> int | None:
    """glibc inet_pton(AF_INET): exactly four decimal octets, no leading
    zeros, nothing else; None when refused."""
    octets = text.split(".")
    if len(octets) != 4:
        return None
    value = 0
    for octet in octets:
        if not octet or not all("0" <= c <= "9" for c in octet):
            return None
        if len(octet) > 1 and octet[0] == "0":
            return None
        n = int(octet)
        if n > 255:
            return None
        value = value << 8 | n
    return value


def _strtoui(text: str, lo: int) -> tuple[int | None, str]:
    """xtables_strtoui with an end pointer, in [lo, 65535]."""
    return strtoul_end(text, lo, 0xFFFF)


def parse_ports(arg: str, portok: bool, rng: NatRange) -> None:
    """libxt_NAT's parse_ports: PORT, PORT-PORT or PORT-PORT/BASE into rng.

    Only the first and the base port may be service names; a range end
    must be numeric.  Text after the base port is ignored, as in iptables.
    """
    if not portok:
        raise ParameterProblem("Need TCP, UDP, SCTP or DCCP with port specification")
    rng.flags |= RANGE_PROTO_SPECIFIED
    port, end = _strtoui(arg, 0)
    if port is None:
        port = service_to_port(arg, None)
        if port == -1:
            raise ParameterProblem(f"Port `{arg}' not valid")
        end = ""
    if end == "":
        rng.min_port = rng.max_port = port
        return
    if end[0] == ":":
        raise ParameterProblem("Invalid port:port syntax - use dash")
    if end[0] != "-":
        raise ParameterProblem(f"Garbage after port value: `{end}'")
    arg = end[1:]
    maxport, end = _strtoui(arg, 0)
    if maxport is None:
        raise ParameterProblem(f"Port `{arg}' not valid")
    if maxport < port:
        raise ParameterProblem(f"Port range `{arg}' funky")
    rng.min_port = port
    rng.max_port = maxport
    if end == "":
        return
    if end[0] != "/":
        raise ParameterProblem(f"Garbage after port range: `{end}'")
    arg = end[1:]
    base, _ = _strtoui(arg, 1)
    if base is None:
        base = service_to_port(arg, None)
        if base == -1:
            raise ParameterProblem(f"Port `{arg}' not valid")
    rng.flags |= RANGE_PROTO_OFFSET
    rng.base_port = base


def parse_to(arg: str, portok: bool, rng: NatRange) -> None:
    """libxt_NAT's parse_to for IPv4: [IP[-IP]][:PORTSPEC] into rng.

    Quirks kept: a second ':' makes the whole text an (IPv6-like) address,
    so it is a bad address; a ':' at offset 0 or 2 means "ports only" (the
    offset 2 is meant for "[]:" but applies to any text).
    """
    if "[" in arg:
        raise ParameterProblem("Invalid address format")
    colon = arg.find(":")
    if colon >= 0 and arg.find(":", colon + 1) >= 0:
        colon = -1
    start = arg
    if colon >= 0:
        parse_ports(arg[colon + 1:], portok, rng)
        if colon in (0, 2):
            return
        start = arg[:colon]
    rng.flags |= RANGE_MAP_IPS
    dash = start.find("-")
    first = start[:dash] if dash >= 0 else start
    lo = inet_pton4(first)
    if lo is None:
        raise ParameterProblem(f'Bad IP address "{first}"')
    if dash >= 0:
        hi = inet_pton4(start[dash + 1:])
        if hi is None:
            raise ParameterProblem(f'Bad IP address "{start[dash + 1:]}"')
    else:
        hi = lo
    rng.min_ip = lo
    rng.max_ip = hi


def range_text(rng: NatRange) -> str:
    """sprint_range: "IP[-IP]" then ":PORT[-PORT][/BASE]"."""
    out = ""
    if rng.flags & RANGE_MAP_IPS:
        out = ip_to_str(rng.min_ip)
        if rng.max_ip != rng.min_ip:
            out += "-" + ip_to_str(rng.max_ip)
    if rng.flags & RANGE_PROTO_SPECIFIED:
        out += f":{rng.min_port}"
        if rng.max_port != rng.min_port:
            out += f"-{rng.max_port}"
        if rng.flags & RANGE_PROTO_OFFSET:
            out += f"/{rng.base_port}"
    return out


def nat_text(rng: NatRange, rangeopt: str, flag_prefix: str, skip_colon: bool) -> str:
    """__NAT_print: the range after `rangeopt`, then the flag words."""
    out = ""
    text = range_text(rng)
    if text:
        if skip_colon and text.startswith(":"):
            text = text[1:]
        out = f" {rangeopt}{text}"
    if rng.flags & RANGE_PROTO_RANDOM:
        out += f" {flag_prefix}random"
    if rng.flags & RANGE_PROTO_RANDOM_FULLY:
        out += f" {flag_prefix}random-fully"
    if rng.flags & RANGE_PERSISTENT:
        out += f" {flag_prefix}persistent"
    return out


FLAG_OPTIONS = {
    "random": RANGE_PROTO_RANDOM,
    "random-fully": RANGE_PROTO_RANDOM_FULLY,
    "persistent": RANGE_PERSISTENT,
}


class NatTarget(Target):
    """Common parse/save/print of the four NAT targets.

    Subclasses set `range_option` (the option carrying the range, or
    "to-ports" for the port-only targets), the save/print prefixes, and
    `compat` (revision 0 struct nf_nat_ipv4_multi_range_compat: no room for
    the base port, which the kernel then reads back as 0).
    """

    table = "nat"
    range_option: ClassVar[str]
    save_prefix: ClassVar[str]
    print_prefix: ClassVar[str]
    skip_colon: ClassVar[bool] = False
    compat: ClassVar[bool] = True

    def new_data(self) -> NatRange:
        return NatRange()

    def parse(self, call: Call) -> None:
        rng: NatRange = call.data
        name = call.opt.name
        if name in FLAG_OPTIONS:
            rng.flags |= FLAG_OPTIONS[name]
            return
        portok = call.ip.proto in PORT_PROTOS
        arg = call.arg if call.arg is not None else ""
        if name == "to-ports":
            parse_ports(arg, portok, rng)
        else:
            parse_to(arg, portok, rng)
        if self.compat:
            rng.base_port = 0

    def check(self, data: NatRange, ctx: CheckContext) -> None:
        # MASQUERADE and REDIRECT's checkentry refuse an address range; the
        # parser never sets one for them, but a hand-built rule could.
        if self.range_option == "to-ports" and data.flags & RANGE_MAP_IPS:
            raise KernelError(EINVAL)

    def save(self, data: NatRange, ip: RuleIp) -> str:
        return nat_text(data, self.save_prefix, "--", self.skip_colon)

    def print(self, data: NatRange, ip: RuleIp, numeric: bool) -> str:
        return nat_text(data, self.print_prefix, "", self.skip_colon)


def range_opt(name: str, mand: bool) -> Opt:
    """A range option: a string the NAT parser reads (XTTYPE_STRING)."""
    return Opt(name, ArgType.STRING, mand=mand)
