"""conntrack: match on the connection tracking entry of a packet.

iptables 1.8.9 uses revision 3 (struct xt_conntrack_mtinfo3), the highest
the kernel has: port ranges, addresses with masks.  `-m state` is an alias of
this same kernel match (see match_state), so the data, the state-list parser
and the text routines here are shared with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.engine.api import (
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_UNTRACKED,
    IPS_DST_NAT,
    IPS_SRC_NAT,
    IPS_TEMPLATE,
    Env,
    MatchFn,
)
from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.types import (
    ip_to_str,
    ipaddr_to_anyname,
    ipmask_to_numeric,
    parse_hostmask_xt,
    parse_portrc_gai,
    strncasecmp_eq,
)

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# match_flags / invert_flags bits (XT_CONNTRACK_*).
F_STATE = 1 << 0
F_PROTO = 1 << 1
F_ORIGSRC = 1 << 2
F_ORIGDST = 1 << 3
F_REPLSRC = 1 << 4
F_REPLDST = 1 << 5
F_STATUS = 1 << 6
F_EXPIRES = 1 << 7
F_ORIGSRC_PORT = 1 << 8
F_ORIGDST_PORT = 1 << 9
F_REPLSRC_PORT = 1 << 10
F_REPLDST_PORT = 1 << 11
F_DIRECTION = 1 << 12  # inverted: REPLY
F_STATE_ALIAS = 1 << 13  # the rule said -m state

# state_mask bits: 1 << (ctinfo % IP_CT_IS_REPLY + 1), plus the extras.
STATE_INVALID = 1 << 0
STATE_ESTABLISHED = 1 << 1
STATE_RELATED = 1 << 2
STATE_NEW = 1 << 3
STATE_SNAT = 1 << 6
STATE_DNAT = 1 << 7
STATE_UNTRACKED = 1 << 8

# status_mask bits (IPS_*).
IPS_EXPECTED = 1 << 0
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3

# The parse order decides abbreviations ("N" is NEW), the print order is
# iptables' own: INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT.
CT_STATES: tuple[tuple[str, int], ...] = (
    ("INVALID", STATE_INVALID), ("NEW", STATE_NEW), ("ESTABLISHED", STATE_ESTABLISHED),
    ("RELATED", STATE_RELATED), ("UNTRACKED", STATE_UNTRACKED), ("SNAT", STATE_SNAT),
    ("DNAT", STATE_DNAT),
)
_STATE_PRINT_ORDER: tuple[tuple[str, int], ...] = (
    ("INVALID", STATE_INVALID), ("NEW", STATE_NEW), ("RELATED", STATE_RELATED),
    ("ESTABLISHED", STATE_ESTABLISHED), ("UNTRACKED", STATE_UNTRACKED),
    ("SNAT", STATE_SNAT), ("DNAT", STATE_DNAT),
)
CT_STATUSES: tuple[tuple[str, int], ...] = (
    ("NONE", 0), ("EXPECTED", IPS_EXPECTED), ("SEEN_REPLY", IPS_SEEN_REPLY),
    ("ASSURED", IPS_ASSURED), ("CONFIRMED", IPS_CONFIRMED),
)
_STATUS_PRINT_ORDER = CT_STATUSES[1:]


@dataclass
class ConntrackInfo:
    """struct xt_conntrack_mtinfo3, host byte order.  Addresses are kept
    unmasked, as the kernel stores them; port ranges are inclusive."""

    match_flags: int = 0
    invert_flags: int = 0
    origsrc_addr: int = 0
    origsrc_mask: int = 0
    origdst_addr: int = 0
    origdst_mask: int = 0
    replsrc_addr: int = 0
    replsrc_mask: int = 0
    repldst_addr: int = 0
    repldst_mask: int = 0
    l4proto: int = 0
    origsrc_port: int = 0
    origsrc_port_high: int = 0
    origdst_port: int = 0
    origdst_port_high: int = 0
    replsrc_port: int = 0
    replsrc_port_high: int = 0
    repldst_port: int = 0
    repldst_port_high: int = 0
    state_mask: int = 0
    status_mask: int = 0
    expires_min: int = 0
    expires_max: int = 0


def _parse_list(arg: str, names: tuple[tuple[str, int], ...], what: str) -> int:
    """conntrack's comma list: each word a case-insensitive abbreviation of
    a name; the error quotes the rest of the list from the bad word on."""
    mask = 0
    rest = arg
    while "," in rest:
        word, tail = rest.split(",", 1)
        bits = _lookup(word, names)
        if word == "" or bits is None:
            raise ParameterProblem(f'Bad {what} "{rest}"')
        mask |= bits
        rest = tail
    bits = _lookup(rest, names)
    if rest == "" or bits is None:
        raise ParameterProblem(f'Bad {what} "{rest}"')
    return mask | bits


def _lookup(word: str, names: tuple[tuple[str, int], ...]) -> int | None:
    for name, bits in names:
        if strncasecmp_eq(word, name, len(word)):
            return bits
    return None


def parse_ct_states(arg: str) -> int:
    """--ctstate list (conntrack_ps_states)."""
    return _parse_list(arg, CT_STATES, "ctstate")


def parse_ct_statuses(arg: str) -> int:
    """--ctstatus list (conntrack_ps_statuses)."""
    return _parse_list(arg, CT_STATUSES, "ctstatus")


def state_names(mask: int) -> str:
    """The state list as iptables prints it, without a leading space."""
    return ",".join(name for name, bit in _STATE_PRINT_ORDER if mask & bit)


def _status_names(mask: int) -> str:
    if mask == 0:
        return "NONE"
    return ",".join(name for name, bit in _STATUS_PRINT_ORDER if mask & bit)


def _addr_text(addr: int, mask: int, numeric: bool) -> str:
    if not numeric and addr == 0:
        return " anywhere"
    name = ip_to_str(addr) if numeric else ipaddr_to_anyname(addr)
    return f" {name}{ipmask_to_numeric(mask)}"


def _ports_text(prefix: str, opt: str, low: int, high: int) -> str:
    if high == 0 or low == high:
        return f" {prefix}{opt} {low}"
    return f" {prefix}{opt} {low}:{high}"


def conntrack_dump(d: ConntrackInfo, prefix: str, numeric: bool) -> str:
    """conntrack_dump for IPv4 rev 3: the save text with prefix "--" and
    numeric, the -L text with prefix ""."""
    mf, inv = d.match_flags, d.invert_flags
    out: list[str] = []

    def bang(flag: int) -> None:
        if inv & flag:
            out.append(" !")

    if mf & F_STATE:
        bang(F_STATE)
        word = "state" if mf & F_STATE_ALIAS else "ctstate"
        names = state_names(d.state_mask)
        out.append(f" {prefix}{word}" + (f" {names}" if names else ""))
    if mf & F_PROTO:
        bang(F_PROTO)
        out.append(f" {prefix}ctproto {d.l4proto}")
    for flag, opt, addr, mask in (
        (F_ORIGSRC, "ctorigsrc", d.origsrc_addr, d.origsrc_mask),
        (F_ORIGDST, "ctorigdst", d.origdst_addr, d.origdst_mask),
        (F_REPLSRC, "ctreplsrc", d.replsrc_addr, d.replsrc_mask),
        (F_REPLDST, "ctrepldst", d.repldst_addr, d.repldst_mask),
    ):
        if mf & flag:
            bang(flag)
            out.append(f" {prefix}{opt}" + _addr_text(addr, mask, numeric))
    for flag, opt, low, high in (
        (F_ORIGSRC_PORT, "ctorigsrcport", d.origsrc_port, d.origsrc_port_high),
        (F_ORIGDST_PORT, "ctorigdstport", d.origdst_port, d.origdst_port_high),
        (F_REPLSRC_PORT, "ctreplsrcport", d.replsrc_port, d.replsrc_port_high),
        (F_REPLDST_PORT, "ctrepldstport", d.repldst_port, d.repldst_port_high),
    ):
        if mf & flag:
            bang(flag)
            out.append(_ports_text(prefix, opt, low, high))
    if mf & F_STATUS:
        bang(F_STATUS)
        out.append(f" {prefix}ctstatus {_status_names(d.status_mask)}")
    if mf & F_EXPIRES:
        bang(F_EXPIRES)
        if d.expires_min == d.expires_max:
            out.append(f" {prefix}ctexpire {d.expires_min}")
        else:
            out.append(f" {prefix}ctexpire {d.expires_min}:{d.expires_max}")
    if mf & F_DIRECTION:
        direction = "REPLY" if inv & F_DIRECTION else "ORIGINAL"
        out.append(f" {prefix}ctdir {direction}")
    return "".join(out)


_ADDR_OPTS = {
    "ctorigsrc": (F_ORIGSRC, "origsrc"),
    "ctorigdst": (F_ORIGDST, "origdst"),
    "ctreplsrc": (F_REPLSRC, "replsrc"),
    "ctrepldst": (F_REPLDST, "repldst"),
}
_PORT_OPTS = {
    "ctorigsrcport": (F_ORIGSRC_PORT, "origsrc_port"),
    "ctorigdstport": (F_ORIGDST_PORT, "origdst_port"),
    "ctreplsrcport": (F_REPLSRC_PORT, "replsrc_port"),
    "ctrepldstport": (F_REPLDST_PORT, "repldst_port"),
}


class Conntrack(Match):
    name = "conntrack"
    revision = 3
    # Addresses and ports are STRING here and parsed by this module: the
    # generic HOSTMASK / PORTRC pre-parsers differ from libxtables in corner
    # cases ("/33", getaddrinfo port numbers).
    options = (
        Opt("ctstate", ArgType.STRING, invert=True),
        Opt("ctproto", ArgType.PROTOCOL, invert=True),
        Opt("ctorigsrc", ArgType.STRING, invert=True),
        Opt("ctorigdst", ArgType.STRING, invert=True),
        Opt("ctreplsrc", ArgType.STRING, invert=True),
        Opt("ctrepldst", ArgType.STRING, invert=True),
        Opt("ctstatus", ArgType.STRING, invert=True),
        Opt("ctexpire", ArgType.UINT32RC, invert=True),
        Opt("ctorigsrcport", ArgType.STRING, invert=True),
        Opt("ctorigdstport", ArgType.STRING, invert=True),
        Opt("ctreplsrcport", ArgType.STRING, invert=True),
        Opt("ctrepldstport", ArgType.STRING, invert=True),
        Opt("ctdir", ArgType.STRING),
    )

    def new_data(self) -> ConntrackInfo:
        return ConntrackInfo()

    def parse(self, call: Call) -> None:
        d: ConntrackInfo = call.data
        name = call.opt.name
        arg = call.arg if call.arg is not None else ""
        flag = 0
        if name == "ctstate":
            d.state_mask |= parse_ct_states(arg)
            flag = F_STATE
        elif name == "ctproto":
            d.l4proto = call.value
            # iptables tests XT_INV_PROTO (0x40), which in these flags is
            # the --ctstatus bit: "! --ctstatus X --ctproto 0" is refused.
            if d.l4proto == 0 and d.invert_flags & 0x40:
                raise ParameterProblem("conntrack: rule would never match protocol")
            flag = F_PROTO
        elif name in _ADDR_OPTS:
            flag, field = _ADDR_OPTS[name]
            addr, mask = parse_hostmask_xt(self.name, name, arg)
            setattr(d, field + "_addr", addr)
            setattr(d, field + "_mask", mask)
        elif name == "ctstatus":
            d.status_mask |= parse_ct_statuses(arg)
            flag = F_STATUS
        elif name == "ctexpire":
            values = call.value
            d.expires_min = values[0]
            d.expires_max = values[1] if len(values) >= 2 else values[0]
            flag = F_EXPIRES
        elif name in _PORT_OPTS:
            flag, field = _PORT_OPTS[name]
            low, high = parse_portrc_gai(self.name, name, arg)
            setattr(d, field, low)
            setattr(d, field + "_high", high)
        elif name == "ctdir":
            if arg.translate(_UPPER) == "ORIGINAL":
                d.invert_flags &= ~F_DIRECTION
            elif arg.translate(_UPPER) == "REPLY":
                d.invert_flags |= F_DIRECTION
            else:
                raise ParameterProblem(f'conntrack: Bad value for "--ctdir" option: "{arg}"')
            d.match_flags |= F_DIRECTION
            return
        d.match_flags |= flag
        if call.invert:
            d.invert_flags |= flag

    def final_check(self, data: ConntrackInfo, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise ParameterProblem("conntrack: At least one option is required")

    # The kernel's conntrack_mt_check only takes a conntrack reference.

    def save(self, data: ConntrackInfo, ip: RuleIp) -> str:
        return conntrack_dump(data, "--", True)

    def print(self, data: ConntrackInfo, ip: RuleIp, numeric: bool) -> str:
        return conntrack_dump(data, "", numeric)

    def compile(self, data: ConntrackInfo, env: Env) -> MatchFn:
        """conntrack_mt (revision 3): see compile_conntrack."""
        return compile_conntrack(data)


_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

IPS_CONFIRMED_BIT = 1 << 3
# Protocols whose tuples carry ports (NAT changes them).
_PORT_PROTOS = frozenset((6, 17, 33, 132, 136))


def nat_state_bits(ct: Any) -> int:
    """The SNAT/DNAT virtual states: the kernel tests IPS_SRC_NAT and
    IPS_DST_NAT, which NAT sets exactly when it changed the reply tuple
    (a binding that changes nothing sets neither).  Either the status bit or
    a reply tuple that is not the inverted original counts."""
    bits = 0
    status = ct.status
    o, r = ct.orig, ct.reply
    ports = o.proto in _PORT_PROTOS
    if status & IPS_SRC_NAT or r.dst != o.src or (ports and r.dport != o.sport):
        bits |= STATE_SNAT
    if status & IPS_DST_NAT or r.src != o.dst or (ports and r.sport != o.dport):
        bits |= STATE_DNAT
    return bits


def ct_expires(ct: Any, now: float) -> int:
    """nf_ct_expires(ct) / HZ.  An unconfirmed entry (the first packet,
    before the confirm at the end of INPUT / POSTROUTING) holds its timeout
    relative, so the kernel computes 0 for it (for any uptime between a few
    minutes and ~99 days)."""
    if not ct.status & IPS_CONFIRMED_BIT:
        return 0
    return int(ct.remaining(now))


_TEMPLATE: list[Any] = []


def template_conn() -> Any:
    """The conntrack entry a CT template looks like to matches (made on
    first use: importing the tracker is for the packet path only)."""
    if not _TEMPLATE:
        from pyfw.engine.conntrack.conn import Conn, Tuple

        zero = Tuple(0, 0, 0, 0, 0)
        _TEMPLATE.append(Conn(orig=zero, reply=zero, status=IPS_TEMPLATE | IPS_CONFIRMED_BIT))
    return _TEMPLATE[0]


CtTest = Callable[[Any, int, "Packet"], bool]


def _ct_tests(d: ConntrackInfo) -> list[CtTest]:
    """The per-entry tests after the state test, in the kernel's order;
    each returns True when the packet passes."""
    mf, inv = d.match_flags, d.invert_flags
    tests: list[CtTest] = []
    if mf & F_DIRECTION:
        want_reply = bool(inv & F_DIRECTION)
        tests.append(lambda ct, ctinfo, pkt: (ctinfo >= IP_CT_IS_REPLY) == want_reply)

    def addr_test(flag: int, addr: int, mask: int, get: Callable[[Any], int]) -> None:
        if mf & flag:
            neg = bool(inv & flag)
            tests.append(lambda ct, ctinfo, pkt: (((get(ct) ^ addr) & mask) == 0) != neg)

    addr_test(F_ORIGSRC, d.origsrc_addr, d.origsrc_mask, lambda ct: ct.orig.src)
    addr_test(F_ORIGDST, d.origdst_addr, d.origdst_mask, lambda ct: ct.orig.dst)
    addr_test(F_REPLSRC, d.replsrc_addr, d.replsrc_mask, lambda ct: ct.reply.src)
    addr_test(F_REPLDST, d.repldst_addr, d.repldst_mask, lambda ct: ct.reply.dst)
    if mf & F_PROTO:
        proto, neg = d.l4proto, bool(inv & F_PROTO)
        tests.append(lambda ct, ctinfo, pkt: (ct.orig.proto == proto) != neg)

    def port_test(flag: int, lo: int, hi: int, get: Callable[[Any], int]) -> None:
        if mf & flag:
            neg = bool(inv & flag)
            tests.append(lambda ct, ctinfo, pkt: (lo <= get(ct) <= hi) != neg)

    port_test(F_ORIGSRC_PORT, d.origsrc_port, d.origsrc_port_high, lambda ct: ct.orig.sport)
    port_test(F_ORIGDST_PORT, d.origdst_port, d.origdst_port_high, lambda ct: ct.orig.dport)
    port_test(F_REPLSRC_PORT, d.replsrc_port, d.replsrc_port_high, lambda ct: ct.reply.sport)
    port_test(F_REPLDST_PORT, d.repldst_port, d.repldst_port_high, lambda ct: ct.reply.dport)
    if mf & F_STATUS:
        smask, neg = d.status_mask, bool(inv & F_STATUS)
        tests.append(lambda ct, ctinfo, pkt: bool(ct.status & smask) != neg)
    if mf & F_EXPIRES:
        emin, emax, neg = d.expires_min, d.expires_max, bool(inv & F_EXPIRES)
        tests.append(lambda ct, ctinfo, pkt: (emin <= ct_expires(ct, pkt.time) <= emax) != neg)
    return tests


def compile_conntrack(d: ConntrackInfo) -> MatchFn:
    """conntrack_mt for one rule (also `-m state`, the same kernel match).

    The state bit: ESTABLISHED/RELATED/NEW from ctinfo when the packet has
    an entry, UNTRACKED for NOTRACK/CT --notrack, INVALID otherwise; SNAT and
    DNAT are added for a NATed entry.  Without an entry the match is true
    only if it tested the state (and that test passed): every other option
    needs an entry.  --ctexpire reads the engine clock (pkt.time); --ctdir
    the direction of ctinfo.  Between a CT target and conntrack (the raw
    table) the packet carries the CT template, which the kernel's match sees
    as a NEW entry with zero tuples, status CONFIRMED and no time left."""
    mf, inv = d.match_flags, d.invert_flags
    template = template_conn()
    want_state = bool(mf & F_STATE)
    state_mask = d.state_mask
    state_inv = bool(inv & F_STATE)
    nat_wanted = bool(state_mask & (STATE_SNAT | STATE_DNAT))
    tests = tuple(_ct_tests(d))

    def match(pkt: Packet) -> bool:
        ct = pkt.ct
        if ct is not None:
            ctinfo = pkt.ctinfo
            statebit = 1 << (ctinfo % IP_CT_IS_REPLY + 1)
        elif pkt.ctinfo == IP_CT_UNTRACKED or pkt.notrack:
            statebit = STATE_UNTRACKED
        elif pkt.ct_template is not None:
            ct, ctinfo, statebit = template, IP_CT_NEW, STATE_NEW
        else:
            statebit = STATE_INVALID
        if want_state:
            if ct is not None and nat_wanted:
                statebit |= nat_state_bits(ct)
            if bool(state_mask & statebit) == state_inv:
                return False
        if ct is None:
            return want_state
        for test in tests:
            if not test(ct, ctinfo, pkt):
                return False
        return True

    return match


EXTENSIONS = [Conntrack()]
