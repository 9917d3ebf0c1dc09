"""REJECT: drop the packet and answer with an ICMP error or a TCP RST.

The kernel allows it in the filter table only (INPUT, FORWARD, OUTPUT) and
refuses `tcp-reset` unless the rule says `-p tcp` without `!`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import INV_PROTO, ArgType, Call, CheckContext, Opt, RuleIp, Target, warn

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


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

    def compile(self, data: RejectData, env: Env) -> TargetFn:
        """reject_tg: send the chosen answer (when the kernel would) through
        env.send_local, and drop the packet."""
        from pyfw.engine.api import NF_DROP

        with_ = data.with_
        send = env.send_local
        fired = getattr(env, "reject_sent", None)
        closing = getattr(env, "ct_set_closing", None)
        view = HostView(env.host)
        if with_ == TCP_RESET:
            def target(pkt: Packet) -> int:
                reply = build_reset(pkt, view)
                if reply is not None:
                    send(reply, pkt)
                    if closing is not None:
                        closing(pkt)
                if fired is not None:
                    fired()
                return NF_DROP
            return target
        code = UNREACH_CODES.get(with_)
        from pyfw.engine.peers import Peers

        limiter = env.shared("icmp", "peers", Peers)

        def target_icmp(pkt: Packet) -> int:
            if code is not None:
                reply = build_unreach(pkt, code, view, limiter)
                if reply is not None:
                    send(reply, pkt)
            if fired is not None:
                fired()
            return NF_DROP

        return target_icmp


# ipt_reject_with -> ICMP destination unreachable code
UNREACH_CODES = {
    ICMP_NET_UNREACHABLE: 0, ICMP_HOST_UNREACHABLE: 1, ICMP_PROT_UNREACHABLE: 2,
    ICMP_PORT_UNREACHABLE: 3, ICMP_NET_PROHIBITED: 9, ICMP_HOST_PROHIBITED: 10,
    ICMP_ADMIN_PROHIBITED: 13,
}

# ICMP types icmp_send counts as errors (it never answers one with another).
ICMP_ERROR_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12})
# Protocols whose checksum nf_reject does not verify before answering.
_NO_CSUM_CHECK = frozenset({47, 50, 51, 132, 136})  # GRE ESP AH SCTP UDPLITE
XRLIM_BURST_FACTOR = 6


class HostView:
    """The few host facts REJECT needs, with the defaults a fresh network
    namespace has where the host description says nothing."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def sysctl(self, name: str, default: int) -> int:
        try:
            value = self.host.sysctl_int(name)
        except Exception:
            return default
        return default if value is None else int(value)

    def is_local(self, addr: int) -> bool:
        try:
            return bool(self.host.is_local(addr))
        except Exception:
            return False

    def is_broadcast(self, addr: int, dev: str) -> bool:
        """An address the route marks broadcast or multicast (RTCF_*)."""
        if addr == 0xFFFFFFFF or addr >> 28 == 0xE:
            return True
        try:
            return bool(self.host.is_broadcast(addr, dev))
        except Exception:
            return False

    def reply_route(self, daddr: int) -> tuple[int | None, int] | None:
        """(source, MTU) of the route the host would send to daddr on
        (ip_route_output_key with no source), None without one."""
        host = self.host
        try:
            if hasattr(host, "output_route"):
                r = host.output_route(daddr)
                if not r.ok:
                    return None
                dev, src = r.dev, r.src
            elif self.is_local(daddr):
                return daddr, 65536
            else:
                route = host.route(daddr)
                if route is None:
                    return None
                dev = route.dev
                src = getattr(route, "src", None) or host.primary_address(dev)
            mtu = 65536 if dev == "lo" else int(host.mtu(dev))
        except Exception:
            return None
        return src, mtu


    def error_source(self, pkt: Packet, route_src: int | None) -> int | None:
        """icmp_send's source address: the original destination when it is
        local, else (icmp_errors_use_inbound_ifaddr) the address of the
        interface the packet came in on, else the reply route's source."""
        if self.is_local(pkt.dst):
            return pkt.dst
        if hasattr(self.host, "icmp_source"):
            try:
                return int(self.host.icmp_source(pkt.src, pkt.dst, None if pkt.local else pkt.indev))
            except Exception:
                return route_src
        return route_src


def _csum_ok(pkt: Packet) -> bool:
    """nf_ip_checksum on a received packet (no checksum offload): the
    transport checksum, with the pseudo header for TCP and UDP, checks out.
    The kernel sums the skb from skb->data, which in INPUT and FORWARD is
    still the IP header: a header whose checksum went stale (the record
    route / timestamp slots ip_rcv_options filled in) fails it too.
    Locally made packets (checksum left to the device) always pass, and so
    do those whose device vouched for it (CHECKSUM_PARTIAL/UNNECESSARY)."""
    from pyfw.ext._csum import sum16, verifies

    if pkt.local or (pkt.extra is not None and pkt.extra.get("csum_unnecessary")):
        return True
    d = pkt.data
    ihl = pkt.ihl
    total = sum16(d, 0)
    proto = pkt.proto
    if proto in (6, 17):
        total += sum16(d, 12, 20) + proto + len(d) - ihl
    return verifies(total)


def _ip_header(tos: int, length: int, frag: int, ttl: int, proto: int, src: int, dst: int,
               options: bytes = b"") -> bytearray:
    from pyfw.ext._csum import checksum, sum16

    h = bytearray(struct.pack("!BBHHHBBHII", 0x45 + len(options) // 4, tos, length, 0, frag, ttl, proto, 0,
                              src, dst)) + options
    c = checksum(sum16(h))
    h[10], h[11] = c >> 8, c & 0xFF
    return h


def build_reset(pkt: Packet, host: HostView) -> bytearray | None:
    """nf_send_reset: the RST answering a TCP segment, or None where the
    kernel sends none (a later fragment, no full TCP header, a RST, a bad
    checksum, a broadcast or multicast destination)."""
    from pyfw.ext._csum import checksum, sum16

    d = pkt.data
    if pkt.frag_off & 0x1FFF or pkt.proto != 6:
        return None
    th = pkt.ihl
    if len(d) < th + 20 or d[th + 13] & 0x04:
        return None
    if not _csum_ok(pkt):
        return None
    if host.is_broadcast(pkt.dst, pkt.outdev if pkt.local else pkt.indev):
        return None
    sport, dport, seq, ack_seq = struct.unpack_from("!HHII", d, th)
    flags = d[th + 13]
    if flags & 0x10:
        rseq, rack, rflags = ack_seq, 0, 0x04
    else:
        doff = (d[th + 12] >> 4) * 4
        rseq = 0
        rack = (seq + (flags & 0x02 and 1) + (flags & 0x01) + len(d) - th - doff) & 0xFFFFFFFF
        rflags = 0x14
    ttl = host.sysctl("net.ipv4.ip_default_ttl", 64)
    ip = _ip_header(0, 40, 0x4000, ttl, 6, pkt.dst, pkt.src)
    tcp = bytearray(struct.pack("!HHIIBBHHH", dport, sport, rseq, rack, 0x50, rflags, 0, 0, 0))
    c = checksum(sum16(tcp) + sum16(ip, 12, 20) + 6 + 20)
    tcp[16], tcp[17] = c >> 8, c & 0xFF
    return ip + tcp


def build_unreach(pkt: Packet, code: int, host: HostView, limiter: Any = None) -> bytearray | None:
    """nf_send_unreach + icmp_send: the ICMP destination unreachable that
    quotes the packet, or None where the kernel sends none."""
    from pyfw.engine.api import PACKET_HOST
    from pyfw.ext._csum import checksum, sum16

    d = pkt.data
    if pkt.frag_off & 0x1FFF:
        return None
    ihl = pkt.ihl
    proto = pkt.proto
    verify = proto not in _NO_CSUM_CHECK
    if proto == 17 and len(d) >= ihl + 8 and d[ihl + 6] == 0 and d[ihl + 7] == 0:
        verify = False  # no UDP checksum to check
    if verify and not _csum_ok(pkt):
        return None
    # icmp_send's own refusals
    if pkt.pkttype != PACKET_HOST:
        return None
    if host.is_broadcast(pkt.dst, pkt.outdev if pkt.local else pkt.indev):
        return None
    if proto == 1:
        if len(d) < ihl + 1:
            return None
        if d[ihl] > 18 or d[ihl] in ICMP_ERROR_TYPES:
            return None
    route = host.reply_route(pkt.src)
    if route is None:
        return None
    saddr = host.error_source(pkt, route[0])
    mtu = route[1]
    # icmp_send echoes the IP options ip_rcv_options compiled (record route
    # with a slot for us, timestamps, a reversed source route)
    ropt = b""
    opts = pkt.extra.get("ipopt") if pkt.extra else None
    if opts is not None and opts.optlen:
        from pyfw.wire.ipv4 import reply_options

        got = reply_options(d, opts, saddr or 0xC0000008, pkt.time)
        if got is None:
            return None
        ropt = got[0]
    if limiter is not None and not host.is_local(pkt.src):  # no limit through lo
        from pyfw.engine.peers import jiffies, ms_to_jiffies

        # icmpv4_xrlim_allow, on the inet_peer state the host's own ICMP
        # errors share (pyfw.engine.peers)
        timeout = host.sysctl("net.ipv4.icmp_ratelimit", 1000)
        mask = host.sysctl("net.ipv4.icmp_ratemask", 0x1818)
        if mask & (1 << 3) and not limiter.xrlim_allow(pkt.src, jiffies(pkt.time), ms_to_jiffies(timeout)):
            return None
    room = min(mtu, 576) - 20 - len(ropt) - 8
    if room <= 20:
        return None
    quoted = bytes(d[:room])
    tos = (pkt.tos & 0x1E) | 0xC0
    ttl = host.sysctl("net.ipv4.ip_default_ttl", 64)
    icmp = bytearray(b"\x03" + bytes((code,)) + b"\x00" * 6) + quoted
    c = checksum(sum16(icmp))
    icmp[2], icmp[3] = c >> 8, c & 0xFF
    ip = _ip_header(tos, 28 + len(ropt) + len(quoted), 0, ttl, 1, saddr or 0xC0000008, pkt.src, ropt)
    return ip + icmp


EXTENSIONS = [Reject()]
