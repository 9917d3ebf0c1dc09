"""TCPMSS: rewrite the MSS option of TCP SYN packets.

`--set-mss N` stores N, `--clamp-mss-to-pmtu` stores 0xffff; both options
may be given and the later one wins.  The kernel registers TCPMSS for
`-p tcp` only (any table) and its checkentry refuses a rule that has no
`tcp` match requiring SYN (flags compare value with SYN, not inverted), and
clamping in a rule reachable from PREROUTING or INPUT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target, fail

CLAMP_PMTU = 0xFFFF  # XT_TCPMSS_CLAMP_PMTU
IPHDR_SIZE = 20      # sizeof(struct iphdr): the largest MSS is 65535 - 20

TCPHDR_SYN = 0x02    # the SYN bit of struct xt_tcp's flg_cmp
TCP_INV_FLAGS = 0x04  # XT_TCP_INV_FLAGS in struct xt_tcp's invflags

CLAMP_HOOKS = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})


@dataclass
class TcpmssData:
    mss: int = 0


def requires_syn(name: str, data: Any) -> bool:
    """find_syn_match: a `tcp` match whose --tcp-flags/--syn compare value
    has SYN and is not inverted.  Reads only the tcp data's `flg_cmp` and
    `invflags` (the xt_tcp fields, see match_tcp.TcpData)."""
    if name != "tcp":
        return False
    flg_cmp = getattr(data, "flg_cmp", 0)
    invflags = getattr(data, "invflags", 0)
    return bool(flg_cmp & TCPHDR_SYN) and not invflags & TCP_INV_FLAGS


class Tcpmss(Target):
    name = "TCPMSS"
    proto = 6
    options = (
        Opt("set-mss", ArgType.UINT16, min=0, max=0xFFFF - IPHDR_SIZE),
        Opt("clamp-mss-to-pmtu"),
    )

    def new_data(self) -> TcpmssData:
        return TcpmssData()

    def parse(self, call: Call) -> None:
        if call.opt.name == "set-mss":
            call.data.mss = call.value
        else:
            call.data.mss = CLAMP_PMTU

    def final_check(self, data: TcpmssData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise fail("TCPMSS target: At least one parameter is required")

    def check(self, data: TcpmssData, ctx: CheckContext) -> None:
        if data.mss == CLAMP_PMTU and ctx.hooks - CLAMP_HOOKS:
            raise KernelError(EINVAL)
        if not any(requires_syn(name, mdata) for name, mdata in ctx.matches):
            raise KernelError(EINVAL)

    def save(self, data: TcpmssData, ip: RuleIp) -> str:
        if data.mss == CLAMP_PMTU:
            return " --clamp-mss-to-pmtu"
        return f" --set-mss {data.mss}"

    def print(self, data: TcpmssData, ip: RuleIp, numeric: bool) -> str:
        if data.mss == CLAMP_PMTU:
            return " TCPMSS clamp to PMTU"
        return f" TCPMSS set {data.mss}"


EXTENSIONS = [Tcpmss()]
