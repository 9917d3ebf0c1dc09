"""REJECT: drop the packet and answer with an ICMP error or a TCP RST.

The kernel allows it in the filter table only (INPUT, FORWARD, OUTPUT) and
refuses `tcp-reset` unless the rule says `-p tcp` without `!`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import INV_PROTO, ArgType, Call, CheckContext, Opt, RuleIp, Target, warn

# enum ipt_reject_with
ICMP_NET_UNREACHABLE = 0
ICMP_HOST_UNREACHABLE = 1
ICMP_PROT_UNREACHABLE = 2
ICMP_PORT_UNREACHABLE = 3
ICMP_ECHOREPLY = 4
ICMP_NET_PROHIBITED = 5
ICMP_HOST_PROHIBITED = 6
TCP_RESET = 7
ICMP_ADMIN_PROHIBITED = 8

# (value, name, alias) in the order iptables searches them.
REJECT_TYPES: tuple[tuple[int, str, str], ...] = (
    (ICMP_NET_UNREACHABLE, "icmp-net-unreachable", "net-unreach"),
    (ICMP_HOST_UNREACHABLE, "icmp-host-unreachable", "host-unreach"),
    (ICMP_PROT_UNREACHABLE, "icmp-proto-unreachable", "proto-unreach"),
    (ICMP_PORT_UNREACHABLE, "icmp-port-unreachable", "port-unreach"),
    (ICMP_NET_PROHIBITED, "icmp-net-prohibited", "net-prohib"),
    (ICMP_HOST_PROHIBITED, "icmp-host-prohibited", "host-prohib"),
    (TCP_RESET, "tcp-reset", "tcp-rst"),
    (ICMP_ADMIN_PROHIBITED, "icmp-admin-prohibited", "admin-prohib"),
)
TYPE_NAMES = {value: name for value, name, _ in REJECT_TYPES}


@dataclass
class RejectData:
    with_: int = ICMP_PORT_UNREACHABLE


def _prefix_of(arg: str, word: str) -> bool:
    """strncasecmp(word, arg, strlen(arg)) == 0: arg abbreviates word."""
    return len(arg) <= len(word) and word[:len(arg)].lower() == arg.lower()


def parse_reject_type(arg: str) -> int:
    """The first type whose name or alias `arg` abbreviates (case-blind)."""
    for value, name, alias in REJECT_TYPES:
        if _prefix_of(arg, name) or _prefix_of(arg, alias):
            return value
    if _prefix_of(arg, "echo-reply") or _prefix_of(arg, "echoreply"):
        # iptables prints this line on stderr before the error itself.
        warn("--reject-with echo-reply no longer supported\n")
    raise ParameterProblem(f'unknown reject type "{arg}"')


class Reject(Target):
    name = "REJECT"
    table = "filter"
    hooks = frozenset({"INPUT", "FORWARD", "OUTPUT"})
    options = (Opt("reject-with", ArgType.STRING),)

    def new_data(self) -> RejectData:
        return RejectData()

    def parse(self, call: Call) -> None:
        call.data.with_ = parse_reject_type(call.arg if call.arg is not None else "")

    def check(self, data: RejectData, ctx: CheckContext) -> None:
        if data.with_ == ICMP_ECHOREPLY:
            raise KernelError(EINVAL)
        if data.with_ == TCP_RESET and (ctx.ip.proto != 6 or ctx.ip.invflags & INV_PROTO):
            raise KernelError(EINVAL)

    def save(self, data: RejectData, ip: RuleIp) -> str:
        return f" --reject-with {TYPE_NAMES.get(data.with_, '(null)')}"

    def print(self, data: RejectData, ip: RuleIp, numeric: bool) -> str:
        return f" reject-with {TYPE_NAMES.get(data.with_, '(null)')}"


EXTENSIONS = [Reject()]
