"""TCPMSS: rewrite the MSS option of TCP SYN packets.

`--set-mss N` stores N, `--clamp-mss-to-pmtu` stores 0xffff; both options
may be given and the later one wins.  The kernel registers TCPMSS for
`-p tcp` only (any table) and its checkentry refuses a rule that has no
`tcp` match requiring SYN (flags compare value with SYN, not inverted), and
clamping in a rule reachable from PREROUTING or INPUT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target, fail

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


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

    def compile(self, data: TcpmssData, env: Env) -> TargetFn:
        """tcpmss_tg4: lower the MSS option of the segment (never raise it),
        or add one to a segment that has none and carries no data; the TCP
        and IP checksums updated as the kernel does.  A segment too short
        for its own header, or a path MTU of 40 or less, is dropped."""
        from pyfw.engine.api import NF_DROP, XT_CONTINUE

        mss = data.mss
        clamp = mss == CLAMP_PMTU
        host = env.host

        def target(pkt: Packet) -> int:
            if pkt.frag_off & 0x1FFF:
                return XT_CONTINUE
            if clamp:
                mtu = min(_route_mtu(host, pkt.outdev), _reverse_mtu(host, pkt.src))
                if mtu <= IPHDR_SIZE + 20:
                    return NF_DROP
                newmss = mtu - IPHDR_SIZE - 20
            else:
                newmss = mss
            return tcpmss_mangle(pkt, newmss)

        return target


def _route_mtu(host: Any, dev: str) -> int:
    """dst_mtu of the packet's route: its out interface's MTU."""
    if not dev:
        return 0xFFFFFFFF
    if dev == "lo":
        return 65536
    try:
        return int(host.mtu(dev))
    except Exception:
        return 1500


def _reverse_mtu(host: Any, src: int) -> int:
    """tcpmss_reverse_mtu: the MTU of the route back to the source
    (65536 through lo for a local source, ~0 without a route)."""
    try:
        if hasattr(host, "output_route"):
            r = host.output_route(src)
            return _route_mtu(host, r.dev) if r.ok else 0xFFFFFFFF
        if host.is_local(src):
            return 65536
        route = host.route(src)
    except Exception:
        return 0xFFFFFFFF
    if route is None:
        return 0xFFFFFFFF
    return _route_mtu(host, route.dev)


def tcpmss_mangle(pkt: Packet, newmss: int) -> int:
    """tcpmss_mangle_packet + the IP length update (verdict returned)."""
    from pyfw.engine.api import NF_DROP, XT_CONTINUE
    from pyfw.ext._csum import csum_replace2, proto_csum_replace

    d = pkt.data
    th = pkt.ihl
    length = len(d) - th
    if length < 20:
        return NF_DROP
    hlen = (d[th + 12] >> 4) * 4
    if length < hlen or hlen < 20:
        return NF_DROP
    check = d[th + 16] << 8 | d[th + 17]
    i = 20
    while i <= hlen - 4:
        o = th + i
        if d[o] == 2 and d[o + 1] == 4:
            old = d[o + 2] << 8 | d[o + 3]
            if old <= newmss:
                return XT_CONTINUE
            d[o + 2], d[o + 3] = newmss >> 8, newmss & 0xFF
            check = proto_csum_replace(check, (old,), (newmss,))
            d[th + 16], d[th + 17] = check >> 8, check & 0xFF
            return XT_CONTINUE
        i += 1 if d[o] <= 1 or d[o + 1] == 0 else d[o + 1]
    if length > hlen or hlen >= 60:
        return XT_CONTINUE
    newmss = min(newmss, 536)
    opt = bytes((2, 4, newmss >> 8, newmss & 0xFF))
    d[th + 20:th + 20] = opt
    check = proto_csum_replace(check, (length,), (length + 4,))
    check = proto_csum_replace(check, (0, 0), (0x0204, newmss))
    oldword = d[th + 12] << 8 | d[th + 13]
    d[th + 12] = (d[th + 12] + 0x10) & 0xFF
    check = proto_csum_replace(check, (oldword,), (d[th + 12] << 8 | d[th + 13],))
    d[th + 16], d[th + 17] = check >> 8, check & 0xFF
    tot = d[2] << 8 | d[3]
    ipcheck = csum_replace2(d[10] << 8 | d[11], tot, (tot + 4) & 0xFFFF)
    d[2], d[3] = ((tot + 4) >> 8) & 0xFF, (tot + 4) & 0xFF
    d[10], d[11] = ipcheck >> 8, ipcheck & 0xFF
    pkt.tot_len = (tot + 4) & 0xFFFF
    pkt.tcp_doff = hlen + 4
    return XT_CONTINUE


EXTENSIONS = [Tcpmss()]
