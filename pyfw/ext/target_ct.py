"""CT: attach a conntrack template (helper, timeout policy, event mask,
zone) to the packet, or mark it untracked.

iptables 1.8.9 uses revision 2 (xt_ct_target_info_v1 layout), shared with
`-j NOTRACK` (target_notrack), which is CT with the NOTRACK and NOTRACK_ALIAS
flags.  The kernel allows CT in the raw table only.  Its checkentry accepts
anything once --notrack is given; otherwise a helper needs a layer-4
protocol (`-p`, not inverted) and a helper of that name for it (else ENOENT),
and a timeout policy needs a protocol (EINVAL) and an existing policy
(ENOENT; pyfw has no way to create one, so there never is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.errors import EINVAL, ENOENT_CHAIN, KernelError, ParameterProblem
from pyfw.ext.base import INV_PROTO, ArgType, Call, CheckContext, Opt, RuleIp, Target
from pyfw.ext.types import strtoul

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


# XT_CT_* flags
CT_NOTRACK = 1 << 0
CT_NOTRACK_ALIAS = 1 << 1
CT_ZONE_DIR_ORIG = 1 << 2
CT_ZONE_DIR_REPL = 1 << 3
CT_ZONE_MARK = 1 << 4

HELPER_SIZE = 16   # char helper[16], NUL included
TIMEOUT_SIZE = 32  # char timeout[32]

# Conntrack event names and their bit numbers (IPCT_*), in print order.
CT_EVENTS: tuple[tuple[str, int], ...] = (
    ("new", 0), ("related", 1), ("destroy", 2), ("reply", 3), ("assured", 4),
    ("protoinfo", 5), ("helper", 6), ("mark", 7), ("natseqinfo", 8), ("secmark", 9),
)
EXP_EVENTS: tuple[tuple[str, int], ...] = (("new", 0),)  # IPEXP_NEW

TCP, UDP = 6, 17
# The conntrack helpers the kernel registers (nf_conntrack_* modules, loaded
# on demand) and the layer-4 protocols each is registered for.  Names are
# compared case-sensitively, as the kernel does.
KERNEL_HELPERS: dict[str, frozenset[int]] = {
    "ftp": frozenset({TCP}),
    "irc": frozenset({TCP}),
    "sip": frozenset({TCP, UDP}),
    "tftp": frozenset({UDP}),
    "amanda": frozenset({UDP}),
    "pptp": frozenset({TCP}),
    "RAS": frozenset({UDP}),
    "Q.931": frozenset({TCP}),
    "H.245": frozenset({UDP}),
    "snmp": frozenset({UDP}),
    "snmp_trap": frozenset({UDP}),
    "netbios-ns": frozenset({UDP}),
    "sane": frozenset({TCP}),
}


@dataclass
class CTData:
    """xt_ct_target_info_v1 without the kernel's template pointer."""

    flags: int = 0
    zone: int = 0
    ct_events: int = 0   # bit mask of 1 << IPCT_*
    exp_events: int = 0  # bit mask of 1 << IPEXP_*
    helper: str = ""
    timeout: str = ""


def parse_events(table: tuple[tuple[str, int], ...], arg: str) -> int:
    """A comma list of event names (empty items are unknown too)."""
    mask = 0
    for word in arg.split(","):
        for name, bit in table:
            if name == word:
                mask |= 1 << bit
                break
        else:
            raise ParameterProblem(f'Unknown event type "{word}"')
    return mask


def events_text(prefix: str, table: tuple[tuple[str, int], ...], mask: int) -> str:
    return f" {prefix} " + ",".join(name for name, bit in table if mask & (1 << bit))


def zone_text(prefix: str, data: CTData) -> str:
    dirs = data.flags & (CT_ZONE_DIR_ORIG | CT_ZONE_DIR_REPL)
    text = " " + prefix
    if dirs == CT_ZONE_DIR_ORIG:
        text += "-orig"
    elif dirs == CT_ZONE_DIR_REPL:
        text += "-reply"
    return text + (" mark" if data.flags & CT_ZONE_MARK else f" {data.zone}")


def ct_text(data: CTData, save: bool) -> str:
    """The option list as `-S` (save) or `-L` prints it."""
    dash = "--" if save else ""
    out = ""
    if data.flags & CT_NOTRACK:
        out += f" {dash}notrack"
    if data.helper:
        out += f" {dash}helper {data.helper}"
    if data.timeout:
        out += f" {dash}timeout {data.timeout}"
    if data.ct_events:
        out += events_text(f"{dash}ctevents", CT_EVENTS, data.ct_events)
    if data.exp_events:
        out += events_text(f"{dash}expevents", EXP_EVENTS, data.exp_events)
    if data.flags & CT_ZONE_MARK or data.zone:
        out += zone_text(f"{dash}zone", data)
    return out


def ct_save_name(data: CTData) -> str:
    """ct_print_name_alias: the alias flag makes the rule save as NOTRACK."""
    return "NOTRACK" if data.flags & CT_NOTRACK_ALIAS else "CT"


def ct_check(data: CTData, ctx: CheckContext) -> None:
    """xt_ct_tg_check: what the kernel refuses when building the template."""
    if data.flags & CT_NOTRACK:
        return
    proto = 0 if ctx.ip.invflags & INV_PROTO else ctx.ip.proto
    # No protocol, or no helper of that name for it: both ENOENT.
    if data.helper and proto not in KERNEL_HELPERS.get(data.helper, frozenset()):
        raise KernelError(ENOENT_CHAIN)
    if data.timeout:
        if not proto:
            raise KernelError(EINVAL)
        raise KernelError(ENOENT_CHAIN)


class CT(Target):
    name = "CT"
    revision = 2
    table = "raw"
    options = (
        Opt("notrack"),
        Opt("helper", ArgType.STRING),
        Opt("timeout", ArgType.STRING),
        Opt("ctevents", ArgType.STRING),
        Opt("expevents", ArgType.STRING),
        Opt("zone-orig", ArgType.STRING),
        Opt("zone-reply", ArgType.STRING),
        Opt("zone", ArgType.STRING),
    )

    def new_data(self) -> CTData:
        return CTData()

    def parse(self, call: Call) -> None:
        d: CTData = call.data
        name = call.opt.name
        arg: str = call.value if call.value is not None else ""
        if name == "notrack":
            d.flags |= CT_NOTRACK
        elif name == "helper":
            # XTOPT_PUT into a fixed buffer: silently cut to fit.
            d.helper = _cut(arg, HELPER_SIZE - 1)
        elif name == "timeout":
            d.timeout = _cut(arg, TIMEOUT_SIZE - 1)
        elif name == "ctevents":
            d.ct_events = parse_events(CT_EVENTS, arg)
        elif name == "expevents":
            d.exp_events = parse_events(EXP_EVENTS, arg)
        else:
            if name == "zone-orig":
                d.flags |= CT_ZONE_DIR_ORIG
            elif name == "zone-reply":
                d.flags |= CT_ZONE_DIR_REPL
            d.zone = 0
            if arg.lower() == "mark":
                d.flags |= CT_ZONE_MARK
            else:
                value = strtoul(arg, 0, 0xFFFF)
                if value is None:
                    raise ParameterProblem(f"Cannot parse {arg} as a zone ID")
                d.zone = value

    def check(self, data: CTData, ctx: CheckContext) -> None:
        ct_check(data, ctx)

    def save_name(self, data: CTData) -> str:
        return ct_save_name(data)

    def save(self, data: CTData, ip: RuleIp) -> str:
        if data.flags & CT_NOTRACK_ALIAS:
            return ""
        return ct_text(data, save=True)

    def print(self, data: CTData, ip: RuleIp, numeric: bool) -> str:
        if data.flags & CT_NOTRACK_ALIAS:
            return " NOTRACK"
        return " CT" + ct_text(data, save=False)

    def compile(self, data: CTData, env: Env) -> TargetFn:
        return ct_compile(data)


def _cut(text: str, limit: int) -> str:
    """strncpy of at most `limit` bytes (the C string is bytes, not chars)."""
    raw = text.encode(errors="surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="surrogateescape")


def ct_compile(data: CTData) -> TargetFn:
    """xt_ct_target: attach the template (pkt.ct_template, the CTData
    itself) or mark the packet untracked; a packet that already has
    conntrack state or a template is left alone, as the kernel does."""
    from pyfw.engine.api import IP_CT_UNTRACKED, XT_CONTINUE

    notrack = bool(data.flags & CT_NOTRACK)

    def target(pkt: Packet) -> int:
        if pkt.ct is not None or pkt.notrack or pkt.ct_template is not None:
            return XT_CONTINUE
        if notrack:
            pkt.notrack = True
            pkt.ctinfo = IP_CT_UNTRACKED
        else:
            pkt.ct_template = data
        return XT_CONTINUE

    return target


EXTENSIONS = [CT()]
