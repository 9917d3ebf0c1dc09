"""The whole path of a frame through a Linux host, as netfilter orders it.

    PREROUTING  raw(-300) conntrack(-200) mangle(-150) nat/DNAT(-100)
    routing decision
    INPUT       mangle(-150) filter(0) security(50) nat/SNAT(100) confirm
    FORWARD     mangle(-150) filter(0) security(50)       (TTL and MTU checks first)
    OUTPUT      raw(-300) conntrack(-200) mangle(-150) nat/DNAT(-100) filter(0) security(50)
    POSTROUTING mangle(-150) nat/SNAT(100) confirm

`Engine.receive(frame, iface, now)` and `Engine.send(ipdata, now)` (a
packet the host itself sends) return a `Result`: the verdict, the path, the
egress interface, and every frame the host emitted because of it (the
forwarded packet, REJECT's reply, the host's own answers).  No I/O here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import mypyc_attr

from pyfw.engine.api import (
    NF_ACCEPT,
    NF_DROP,
    NF_QUEUE,
    NF_STOLEN,
    NF_VERDICT_FLAG_QUEUE_BYPASS,
    NF_VERDICT_MASK,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
)
from pyfw.engine.host import (
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_UNICAST,
    RTN_UNSPEC,
    Host,
    RouteResult,
)
from pyfw.engine.packet import IP_DF, IP_MF, IP_OFFMASK, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Packet
from pyfw.engine.peers import Peers, jiffies, ms_to_jiffies, ratelimited_type
from pyfw.engine.result import Emitted, Result
from pyfw.engine.tables import CompiledTable, TraceStep, compile_table, do_table
from pyfw.ruleset.model import Ruleset
from pyfw.wire import ipv4
from pyfw.wire.frag import exceeds_mtu, fragment, needs_fragment
from pyfw.wire.ipv4 import decrease_ttl

if TYPE_CHECKING:
    from pyfw.engine.fastpath import FastPath
    from pyfw.engine.newflow import NewFlow

ETH_P_IP: Final = 0x0800
_NAT_HOOKS = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
ETH_P_ARP: Final = 0x0806
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

# Extensions whose use makes the kernel track connections in the namespace
# (nf_ct_netns_get), besides a nat table being loaded.
CT_USERS = frozenset({
    "match:conntrack", "match:state", "match:connmark", "target:CONNMARK", "target:CT",
    "target:NOTRACK", "target:DNAT", "target:SNAT", "target:MASQUERADE", "target:REDIRECT",
})


VERDICT_NAMES = {NF_ACCEPT: "ACCEPT", NF_DROP: "DROP", NF_STOLEN: "STOLEN", NF_QUEUE: "STOLEN"}


class EngineEnv:
    """The Env services (pyfw.engine.api) bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._shared: dict[tuple[str, str], Any] = {}
        # what an engine that logs elsewhere sets (the daemon's, the TAP
        # gateway's): NFLOG's packets handed to nflog_to rather than kept in
        # engine.nflogs, and LOG's lines with their --log-level (target_log)
        self.nflog_to: Callable[[int, str, Packet], None] | None = None
        self.log_level: Callable[[str, int], None] | None = None

    @property
    def host(self) -> Any:
        return self._engine.host

    def log(self, text: str) -> None:
        e = self._engine
        e.logs.append((e.now, text))

    def send_local(self, data: bytearray, pkt: Packet) -> None:
        # REJECT's answer: nf_send_reset / nf_send_unreach attach it to the
        # connection of the packet it answers (nf_ct_attach)
        self._engine.pending_local.append((data, pkt, True))

    def shared(self, kind: str, name: str, factory: Callable[[], Any]) -> Any:
        key = (kind, name)
        obj = self._shared.get(key)
        if obj is None:
            obj = self._shared[key] = factory()
        return obj

    def nat(self) -> Any:
        return self._engine.nat

    def nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        if self.nflog_to is not None:
            self.nflog_to(group, prefix, pkt)
            return
        self._engine.nflogs.append((self._engine.now, group, prefix))

    def reject_sent(self) -> None:
        self._engine.rejected = True


@mypyc_attr(allow_interpreted_subclasses=True)
class Engine:
    """One simulated host: its tables, connection table and NAT.

    Compiled (pyfw._native), with interpreted subclasses (the daemon's
    LiveEngine, the TAP gateway's TapEngine): an Engine has no __dict__
    (only the attributes its methods assign), and the annotations hold at
    run time (`host` is a pyfw.engine.host.Host)."""

    def __init__(self, ruleset: Ruleset, host: Host, fastpath: bool | None = None,
                 newflow: bool | None = None) -> None:
        """`fastpath`: replay established flows from a cache of their walks
        (pyfw.engine.fastpath); None: on unless PYFW_FASTPATH=0 or a
        subclass overrides a step the fast path replays.  `newflow`: the
        common forwarded packet in one straight line (pyfw.engine.newflow);
        None: on unless PYFW_NEWFLOW=0 or a subclass overrides a step it
        stands in for."""
        self.host = host
        self.ruleset = ruleset
        self.now = 0.0
        self.logs: list[tuple[float, str]] = []
        self.nflogs: list[tuple[float, int, str]] = []
        # (datagram, the packet it answers, attach to its connection?)
        self.pending_local: list[tuple[bytearray, Packet, bool]] = []
        self.rejected = False
        self.env = EngineEnv(self)
        self.stats: dict[str, int] = {}
        from pyfw.engine.conntrack import Conntrack
        from pyfw.engine.nat import Nat
        from pyfw.wire.frag import Defrag

        self.ct = Conntrack(host)
        self.nat = Nat(self.ct, host)
        timeout = host.sysctl_int("net.ipv4.ipfrag_time") if hasattr(host, "sysctl_int") else None
        self.defrag = Defrag(timeout=float(timeout)) if timeout else Defrag()
        self._last_gc = 0.0
        self.rejected_last = False
        self.fastpath: FastPath | None = None
        self._ct_step: Callable[[Packet], int] | None = None
        self.newflow: NewFlow | None = None
        self.load(ruleset)
        from pyfw.engine import newflow as nf

        if newflow or (newflow is None and nf.enabled_by_default() and nf.replaces(type(self))):
            straight = nf.NewFlow(self)
            straight.prepare()
            self.newflow = straight
        from pyfw.engine import fastpath as fp

        if fastpath or (fastpath is None and fp.enabled_by_default() and fp.replays(type(self))):
            cache = fp.FastPath(self)
            cache.clear()
            self.fastpath = cache

    def reset(self) -> None:
        """A clean state (tests): no connections, fragments, logs, rate state."""
        from pyfw.engine.conntrack import Conntrack
        from pyfw.engine.nat import Nat
        from pyfw.wire.frag import Defrag

        self.ct = Conntrack(self.host)
        self.nat = Nat(self.ct, self.host)
        self.defrag = Defrag(timeout=self.defrag.timeout)
        self.logs.clear()
        self.nflogs.clear()
        self.stats.clear()
        self.env = EngineEnv(self)
        self.now = 0.0
        self._last_gc = 0.0
        self.load(self.ruleset)

    # ------------------------------------------------------------ rulesets
    def load(self, ruleset: Ruleset) -> None:
        """Compile a ruleset (a restore swaps it between two packets)."""
        self.ruleset = ruleset
        self.tables: dict[str, CompiledTable] = {
            name: compile_table(t, self.env) for name, t in ruleset.tables.items()}
        self.tracking = "nat" in ruleset.tables or _uses_conntrack(ruleset)
        self.has_nat = "nat" in ruleset.tables
        # (table, hook) -> the compiled table, for the pairs that have a chain
        self._hooked: dict[tuple[str, str], CompiledTable] = {
            (name, hook): t for name, t in self.tables.items() for hook in t.chains}
        # the nat table's walk per hook, for packets that are not traced
        self._nat_walks: dict[str, Callable[[Packet], int]] = {
            hook: self._nat_walk(hook) for hook in _NAT_HOOKS}
        # Routing answers depend only on the host's configuration, which the
        # engine never changes: remember them (cleared with every load).
        self._input_routes: dict[tuple[int, int, str, int], RouteResult] = {}
        self._l2_heads: dict[tuple[Any, ...], bytes] = {}  # (dev, next hop[, dst])
        if self.fastpath is not None:
            self.fastpath.clear()  # its entries are walks of the old tables
        if self.newflow is not None:
            self.newflow.prepare()

    def _nat_walk(self, hook: str) -> Callable[[Packet], int]:
        return lambda p: self._table("nat", hook, p, None)

    def _input_route(self, src: int, dst: int, iif: str, proto: int) -> RouteResult:
        key = (src, dst, iif, proto)
        rr = self._input_routes.get(key)
        if rr is None:
            if len(self._input_routes) > 65536:
                self._input_routes.clear()
            rr = self._input_routes[key] = self.host.input_route(src, dst, iif, proto)
        return rr

    def _table(self, name: str, hook: str, pkt: Packet, trace: list[TraceStep] | None) -> int:
        t = self._hooked.get((name, hook))
        if t is None:
            return NF_ACCEPT
        pkt.hook = hook
        v = do_table(t, hook, pkt, trace)
        if v & NF_VERDICT_MASK == NF_QUEUE and v & NF_VERDICT_FLAG_QUEUE_BYPASS:
            # nobody listens on the queue (offline there is no one): with
            # --queue-bypass nf_queue returns 1 and nf_hook_slow goes on
            # with the hook's next table, not the chain's next rule
            return NF_ACCEPT
        return v

    # ------------------------------------------------------------ entry points
    def _tick(self, now: float) -> None:
        """Timers on the engine clock: conntrack's gc, fragment queues."""
        self.now = now
        self.rejected = False
        if now - self._last_gc >= 1.0 or now < self._last_gc:
            self._last_gc = now
            self.ct.expire(now)
        if self.defrag.queues:
            for exp in self.defrag.expire(now):
                if exp.head is not None and exp.user != 0:
                    self._count("reasm_timeout")

    def receive(self, frame: bytes, iface: str, now: float, trace: bool = False) -> Result:
        """A frame arriving on `iface`."""
        if now - self._last_gc >= 1.0 or now < self._last_gc or self.defrag.queues:
            self._tick(now)
        else:  # (what _tick does when no timer is due)
            self.now = now
            self.rejected = False
        try:
            fp = self.fastpath
            if fp is not None and not trace:
                return fp.receive(frame, iface, now)
            return self._receive(frame, iface, now, trace)
        except Exception as exc:  # never out of the packet loop
            self._count("engine_error")
            return Result(None, "malformed", reason=f"internal: {type(exc).__name__}: {exc}")

    # annotations of the frame receive_vouched is receiving (pkt.extra at PREROUTING)
    _rx: dict[str, Any] | None = None

    def receive_vouched(self, frame: bytes, iface: str, now: float, extra: dict[str, Any]) -> Result:
        """receive() for a frame whose transport checksum the device (or the
        kernel handing it over) vouched for, CHECKSUM_UNNECESSARY or
        CHECKSUM_PARTIAL (skb_csum_unnecessary): nf_conntrack_checksum takes
        its word (the trackers, also the fast path's, skip the check when
        cfg.checksum is off), and the packet carries `extra` from PREROUTING
        on ("csum_unnecessary", "gso_netlen": see pyfw.engine.api)."""
        cfg = self.ct.cfg
        saved = cfg.checksum
        cfg.checksum = False
        self._rx = extra
        try:
            return self.receive(frame, iface, now)
        finally:
            cfg.checksum = saved
            self._rx = None

    def send(self, data: bytes, now: float, trace: bool = False) -> Result:
        """A packet the host itself sends (simulate's `local` interface)."""
        self._tick(now)
        try:
            from pyfw.wire.ipv4 import validate

            reason = validate(bytes(data))
            if reason is not None:
                self._count("malformed:" + reason)
                return Result(None, "malformed", reason=reason)
            res = Result(None, "output")
            tr = res.trace if trace else None
            pkt = Packet(bytearray(data[:_tot_len(data)]), time=now)
            pkt.local = True
            pkt.uid = pkt.gid = 0
            verdict = self._output(pkt, res, tr)
            res.verdict = self._verdict_name(verdict)
            self._flush_local(res, trace)
            return res
        except Exception as exc:
            self._count("engine_error")
            return Result(None, "malformed", reason=f"internal: {type(exc).__name__}: {exc}")

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # ------------------------------------------------------------ receive path
    def _receive(self, frame: bytes, iface: str, now: float, trace: bool,
                 ct_step: Callable[[Packet], int] | None = None) -> Result:
        """The slow path.  `ct_step` stands in for conntrack's PREROUTING
        lookup when the fast path already ran the tracker for this frame
        (it reaches _prerouting_hooks as self._ct_step, for this frame only)."""
        if ct_step is not None:
            self._ct_step = ct_step
            try:
                return self._receive(frame, iface, now, trace)
            finally:
                self._ct_step = None
        elif not trace and self.newflow is not None and self._ct_step is None and self._rx is None:
            # (a frame of receive_vouched carries annotations the straight line would not put on it)
            got = self.newflow.receive(frame, iface, now)
            if got is not None:
                return got
        if len(frame) < 14:
            self._count("malformed:short-ethernet")
            return Result(None, "malformed", reason="short-ethernet")
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == ETH_P_ARP:
            return self._arp(frame, iface)
        if ethertype != ETH_P_IP:
            return Result(None, "ignored")
        ip = bytes(frame[14:])
        reason = ipv4.validate(ip)
        if reason is not None:
            self._count("malformed:" + reason)
            return Result(None, "malformed", reason=reason)
        pkt = Packet(bytearray(ip[:_tot_len(ip)]), indev=iface, time=now, eth=bytes(frame[:14]))
        dst_mac = frame[:6]
        if dst_mac == BROADCAST_MAC:
            pkt.pkttype = PACKET_BROADCAST
        elif dst_mac[0] & 1:
            pkt.pkttype = PACKET_MULTICAST
        else:
            # A frame for another MAC would be dropped by Linux before the
            # hooks; captures replayed here come from other machines, so a
            # unicast frame counts as addressed to this host.
            pkt.pkttype = PACKET_HOST
        res = Result(None, "prerouting")
        tr = res.trace if trace else None
        verdict = self._prerouting(pkt, res, tr)
        if verdict is not None:
            res.verdict = self._verdict_name(verdict)
        self._flush_local(res, trace)
        return res

    def _verdict_name(self, verdict: int) -> str:
        self.rejected_last = self.rejected
        if self.rejected and verdict & NF_VERDICT_MASK == NF_DROP:
            return "REJECT"
        return VERDICT_NAMES.get(verdict & NF_VERDICT_MASK, "DROP")

    def _prerouting(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int | None:
        if self._rx is not None:
            pkt.extra = {**(pkt.extra or {}), **self._rx}
        if self.tracking and (pkt.frag_off & (IP_MF | IP_OFFMASK)):
            whole = self._reassemble(pkt)
            if whole is None:
                res.path = "prerouting"
                return NF_STOLEN
            pkt = whole
        v = self._prerouting_hooks(pkt, tr)
        if v != NF_ACCEPT:
            return v
        return self._route_input(pkt, res, tr)

    def _prerouting_hooks(self, pkt: Packet, tr: list[TraceStep] | None) -> int:
        """PREROUTING in priority order: raw, conntrack, mangle, nat (DNAT)."""
        hooked = self._hooked  # (a table without the chain is not called at all)
        if ("raw", "PREROUTING") in hooked:
            v = self._table("raw", "PREROUTING", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            pkt.hook = "PREROUTING"
            step = self._ct_step
            if step is None:
                v = self.ct.in_hook(pkt)
            else:
                self._ct_step = None
                v = step(pkt)
            if v != NF_ACCEPT:
                return v
        if ("mangle", "PREROUTING") in hooked:
            v = self._table("mangle", "PREROUTING", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            return self.nat.hook(pkt, "PREROUTING", self._nat_chain("PREROUTING", tr))
        return NF_ACCEPT

    def _postrouting_hooks(self, pkt: Packet, tr: list[TraceStep] | None) -> int:
        """POSTROUTING in priority order: mangle, nat (SNAT), conntrack confirm."""
        if ("mangle", "POSTROUTING") in self._hooked:
            v = self._table("mangle", "POSTROUTING", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            v = self.nat.hook(pkt, "POSTROUTING", self._nat_chain("POSTROUTING", tr))
            if v != NF_ACCEPT:
                return v
            if not self.ct.confirm(pkt):
                return NF_DROP
        return NF_ACCEPT

    def _nat_chain(self, hook: str, tr: list[TraceStep] | None) -> Callable[[Packet], int] | None:
        """The nat table's walk for `nat.hook`, or None without a nat table
        (then the kernel has no NAT hooks and makes no null bindings)."""
        if not self.has_nat:
            return None
        if tr is None:
            return self._nat_walks[hook]
        return lambda p: self._table("nat", hook, p, tr)

    def _reassemble(self, pkt: Packet) -> Packet | None:
        whole = self.defrag.add(pkt.data, pkt.time, iif=pkt.indev, local_frag=pkt.local)
        if whole is None:
            return None
        new = Packet(bytearray(whole.datagram), indev=pkt.indev, outdev=pkt.outdev, time=pkt.time, eth=pkt.eth)
        new.pkttype, new.local, new.uid, new.gid = pkt.pkttype, pkt.local, pkt.uid, pkt.gid
        new.extra = {"frag_max_size": whole.frag_max_size, "pmtu_df": whole.pmtu_df, "pieces": whole.pieces}
        return new

    def _route_input(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int | None:
        """ip_rcv_finish's routing decision, then local delivery or forwarding."""
        rr = self._input_route(pkt.src, pkt.dst, pkt.indev, pkt.proto)
        if pkt.ihl > 20 and (rr.error == 0 or rr.type != RTN_UNSPEC) and not self._rcv_options(pkt, rr):
            res.path = "prerouting"
            return NF_DROP
        if rr.error == 0 and rr.type in (RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST):
            res.path = "input"
            if rr.type != RTN_LOCAL and pkt.pkttype == PACKET_HOST:
                pkt.pkttype = PACKET_BROADCAST if rr.type == RTN_BROADCAST else PACKET_MULTICAST
            return self._input(pkt, res, tr)
        if rr.error == 0 and rr.type == RTN_UNICAST:
            if pkt.pkttype != PACKET_HOST:
                res.path = "no-route"
                return NF_DROP
            res.path = "forward"
            return self._forward(pkt, rr, res, tr)
        res.path = "no-route"
        self._ip_error(pkt, rr.error)
        return NF_DROP

    def _rcv_options(self, pkt: Packet, rr: Any) -> bool:
        """ip_rcv_options, after the routing decision: check the options
        (a bad one: ICMP parameter problem, drop), fill in record-route and
        timestamp slots with the address fib_compute_spec_dst picks, refuse
        a source route unless accept_source_route.  False: dropped."""
        host = self.host
        if rr.error == 0 and rr.type == RTN_LOCAL:
            spec = pkt.dst
        elif pkt.src:
            spec = host.source_address(pkt.src) or host.select_addr(pkt.indev, pkt.src, RT_SCOPE_UNIVERSE)
        else:
            spec = host.select_addr(pkt.indev, pkt.src, RT_SCOPE_LINK)
        opts = ipv4.compile_options(pkt.data, spec_dst=spec, now=pkt.time, addr_type=host.addr_type)
        pkt.options = bytes(pkt.data[20:pkt.ihl])
        if opts.error is not None:
            self._icmp_error(pkt, 12, 0, info=opts.error << 24)  # parameter problem
            return False
        if opts.srr and not host.conf(pkt.indev, "accept_source_route"):
            return False  # (an accepted source route is not followed: pyfw models no SRR)
        pkt.extra = {**(pkt.extra or {}), "ipopt": opts}
        return True

    def _forward_options(self, pkt: Packet, rr: Any) -> None:
        """ip_forward_options, after FORWARD: the record-route and timestamp
        slots the input claimed get the address of the way out, and the
        header checksum is computed again when anything changed."""
        if pkt.extra is None:
            return
        opts = pkt.extra.get("ipopt")
        if opts is None or not opts.optlen:
            return
        d = pkt.data
        changed = opts.is_changed
        if opts.rr_needaddr or opts.ts_needaddr:
            src = self.host.output_route(pkt.dst, 0, rr.dev).src or \
                self.host.select_addr(rr.dev, rr.next_hop, RT_SCOPE_UNIVERSE)
            for off, back in ((opts.rr, 5), (opts.ts, 9)):
                if off and (opts.rr_needaddr if back == 5 else opts.ts_needaddr):
                    pos = off + d[off + 2] - back
                    if off < pos and pos + 4 <= pkt.ihl:
                        d[pos:pos + 4] = src.to_bytes(4, "big")
                        changed = True
        if changed:
            opts.is_changed = False
            ipv4.send_check(d)
            pkt.options = bytes(d[20:pkt.ihl])

    def _reply_options(self, pkt: Packet, saddr: int) -> bytes | None:
        """__ip_options_echo + ip_options_build for a reply to `pkt` from
        `saddr` (b"" when it had none; None: the kernel does not reply)."""
        opts = (pkt.extra or {}).get("ipopt")
        if opts is None or not opts.optlen:
            return b""
        got = ipv4.reply_options(pkt.data, opts, saddr, pkt.time)
        return None if got is None else got[0]

    def _ip_error(self, pkt: Packet, err: int) -> None:
        """ip_error: ICMP unreachable for no route -- never from a device
        that does not forward, and at most five in a row, then one a second,
        per source (peers.Peers.error_allow)."""
        import errno

        if not self.host.conf(pkt.indev, "forwarding"):
            return
        code = {errno.ENETUNREACH: 0, errno.EHOSTUNREACH: 1, errno.EACCES: 13}.get(err)
        if code is None:
            return
        if not self._peers().error_allow(pkt.src, jiffies(pkt.time)):
            return
        self._icmp_error(pkt, 3, code)

    def _peers(self) -> Peers:
        """The inet_peer rate state (shared with REJECT's ICMP)."""
        peers: Peers = self.env.shared("icmp", "peers", Peers)
        return peers

    def _forward(self, pkt: Packet, rr: Any, res: Result, tr: list[TraceStep] | None) -> int:
        """ip_forward: TTL and MTU checks, TTL decrement, then FORWARD."""
        if pkt.ttl <= 1:
            self._icmp_error(pkt, 11, 0)  # time exceeded in transit
            return NF_DROP
        mtu = self.host.mtu(rr.dev)
        extra = pkt.extra or {}
        # a GSO super-frame (TAP offload) is checked per segment (skb_gso_validate_network_len);
        # one conntrack's defrag reassembled may go: nf_defrag sets skb->ignore_df
        length = extra.get("gso_netlen") or pkt.tot_len
        fms = extra.get("frag_max_size", 0)
        if length > mtu and exceeds_mtu(length, bool(pkt.frag_off & IP_DF), mtu, fms, ignore_df=bool(fms)):
            self._icmp_error(pkt, 3, 4, mtu=mtu)  # fragmentation needed
            return NF_DROP
        pkt.ttl = decrease_ttl(pkt.data)
        opts = extra.get("ipopt")
        if rr.redirect and not (opts is not None and opts.srr) and \
                self._peers().redirect_allow(pkt.src, jiffies(pkt.time)):
            # back out of the link it came in on: tell the sender (before
            # FORWARD, about the packet with its TTL already decremented)
            self._icmp_error(pkt, 5, 1, info=rr.next_hop)
            self._flush_local(res, False)  # icmp_send transmits it before the packet goes on
        pkt.outdev = rr.dev
        hooked = self._hooked
        for table in ("mangle", "filter", "security"):
            if (table, "FORWARD") in hooked:
                v = self._table(table, "FORWARD", pkt, tr)
                if v != NF_ACCEPT:
                    return v
        self._forward_options(pkt, rr)
        return self._postrouting(pkt, rr, res, tr)

    def _input(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int:
        if not self.tracking and (pkt.frag_off & (IP_MF | IP_OFFMASK)):
            # ip_local_deliver reassembles what is for us before INPUT
            from pyfw.wire.frag import IP_DEFRAG_LOCAL_DELIVER

            whole = self.defrag.add(pkt.data, pkt.time, user=IP_DEFRAG_LOCAL_DELIVER, iif=pkt.indev)
            if whole is None:
                return NF_STOLEN
            nxt = Packet(bytearray(whole.datagram), indev=pkt.indev, time=pkt.time, eth=pkt.eth)
            nxt.pkttype = pkt.pkttype
            pkt = nxt
        for table in ("mangle", "filter", "security"):
            v = self._table(table, "INPUT", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if self.tracking:
            v = self.nat.hook(pkt, "INPUT", self._nat_chain("INPUT", tr))
            if v != NF_ACCEPT:
                return v
            if not self.ct.confirm(pkt):
                return NF_DROP
        self._deliver(pkt)
        return NF_ACCEPT

    def _route_src(self, pkt: Packet) -> int:
        """The source an output route lookup is keyed with: a foreign
        source (REJECT answering a forwarded packet, a raw socket) is not
        checked -- ip_route_me_harder sets FLOWI_FLAG_ANYSRC, a raw socket
        looks up its own (unbound) address."""
        return pkt.src if self.host.is_local(pkt.src) else 0

    def _output(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> int:
        rr = self.host.output_route(pkt.dst, self._route_src(pkt))
        if rr.error:
            res.path = "no-route"
            return NF_DROP
        pkt.outdev = rr.dev
        v = self._table("raw", "OUTPUT", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            if pkt.frag_off & (IP_MF | IP_OFFMASK):
                whole = self._reassemble(pkt)
                if whole is None:
                    return NF_STOLEN
                pkt = whole
            pkt.hook = "OUTPUT"
            v = self.ct.in_hook(pkt)
            if v != NF_ACCEPT:
                return v
        dst, mark = pkt.dst, pkt.mark
        v = self._table("mangle", "OUTPUT", pkt, tr)
        if v != NF_ACCEPT:
            return v
        if self.tracking:
            v = self.nat.hook(pkt, "OUTPUT", self._nat_chain("OUTPUT", tr))
            if v != NF_ACCEPT:
                return v
        for table in ("filter", "security"):
            v = self._table(table, "OUTPUT", pkt, tr)
            if v != NF_ACCEPT:
                return v
        if pkt.dst != dst or pkt.mark != mark:
            # ip_route_me_harder after a DNAT or a mark change
            again = self.host.output_route(pkt.dst, self._route_src(pkt))
            if again.error:
                res.path = "no-route"
                return NF_DROP
            rr = again
            pkt.outdev = rr.dev
        if rr.dev == "lo":
            return self._loopback(pkt, rr, res, tr)
        return self._postrouting(pkt, rr, res, tr)

    def _loopback(self, pkt: Packet, rr: Any, res: Result, tr: list[TraceStep] | None) -> int:
        """To one of our own addresses: POSTROUTING on lo, then in again."""
        pkt.outdev = "lo"
        v = self._postrouting_hooks(pkt, tr)
        if v != NF_ACCEPT:
            return v
        res.out = "lo"
        back = pkt.copy()
        back.indev, back.outdev, back.local = "lo", "", False
        back.pkttype = PACKET_HOST
        # the connection stays attached on the way back in, as skb->_nfct does
        sub = Result(None, "input")
        self._prerouting_lo(back, sub, tr)
        res.emitted.extend(sub.emitted)
        return NF_ACCEPT

    def _prerouting_lo(self, pkt: Packet, res: Result, tr: list[TraceStep] | None) -> None:
        if self._prerouting_hooks(pkt, tr) == NF_ACCEPT:
            self._input(pkt, res, tr)

    def _postrouting(self, pkt: Packet, rr: Any, res: Result, tr: list[TraceStep] | None) -> int:
        v = self._postrouting_hooks(pkt, tr)
        if v != NF_ACCEPT:
            return v
        res.out = rr.dev
        self._transmit(pkt, rr, res)
        return NF_ACCEPT

    # ------------------------------------------------------------ the host's answers
    def _deliver(self, pkt: Packet) -> None:
        """What the host's own stack does with a packet INPUT accepted."""
        from pyfw.wire import tcp

        host = self.host
        if pkt.proto == IPPROTO_ICMP and not _icmp_checksum_ok(pkt):
            return  # icmp_rcv drops it (csum_error)
        if pkt.pkttype != PACKET_HOST or not host.is_local(pkt.dst):
            if pkt.proto == IPPROTO_ICMP and pkt.icmp_type in (8, 13) and \
                    not host.sysctl_int("net.ipv4.icmp_echo_ignore_broadcasts"):
                self._icmp_reply(pkt, host.source_address(pkt.src))
            return  # broadcast / multicast: nothing else answers
        if pkt.proto == IPPROTO_ICMP:
            if pkt.icmp_type == 13 or (pkt.icmp_type == 8 and not host.sysctl_int("net.ipv4.icmp_echo_ignore_all")):
                self._icmp_reply(pkt, pkt.dst)
            return
        if pkt.proto == IPPROTO_TCP:
            if not pkt.l4ok or host.service("tcp", pkt.dst, pkt.dport):
                return
            if not _l4_checksum_ok(pkt):
                return
            if not pkt.tcp_flags & 0x04:  # never answer a RST
                opts = self._reply_options(pkt, pkt.dst)
                if opts is not None:
                    self._send_host(tcp.build_rst_for(bytes(pkt.data), options=opts), pkt)
            return
        if pkt.proto == IPPROTO_UDP:
            if not pkt.l4ok or host.service("udp", pkt.dst, pkt.dport):
                return
            if not _l4_checksum_ok(pkt):
                return
            self._icmp_error(pkt, 3, 3)
            return
        self._icmp_error(pkt, 3, 2)  # protocol unreachable

    def _icmp_reply(self, pkt: Packet, src: int) -> None:
        """icmp_echo / icmp_timestamp and icmp_reply: the answer from `src`
        with the echoed IP options (the timestamp says the engine clock)."""
        from pyfw.wire import icmp

        opts = self._reply_options(pkt, src)
        if opts is None:
            return
        if pkt.icmp_type == 8:
            self._send_host(icmp.build_echo_reply(bytes(pkt.data), src=src, options=opts), pkt)
        else:
            self._send_host(icmp.build_timestamp_reply(bytes(pkt.data), pkt.time, src=src, options=opts), pkt)

    def _icmp_error(self, pkt: Packet, type_: int, code: int, mtu: int | None = None, info: int = 0) -> None:
        """icmp_send about `pkt` (when Linux would answer at all): the
        echoed IP options, the per-peer rate limit of icmp_ratemask types."""
        from pyfw.wire import icmp

        data = bytes(pkt.data)
        if not icmp.may_send_error(data, pkt.pkttype):
            return
        src = self.host.icmp_source(pkt.src, pkt.dst, pkt.indev or None)
        opts = self._reply_options(pkt, src)
        if opts is None:
            return
        if not self._icmp_allowed(type_, code, pkt.src, pkt.time):
            return
        reply = icmp.build_error(type_, code, data, mtu=mtu, src=src, info=info, options=opts)
        if reply is not None:
            # icmp_glue_bits: an ICMP error belongs to the connection of the
            # packet it is about (nf_ct_attach), confirmed yet or not
            self.pending_local.append((reply, pkt, True))

    def _icmp_allowed(self, type_: int, code: int, dst: int, now: float) -> bool:
        """icmpv4_xrlim_allow for an ICMP message to `dst` (none through lo)."""
        host = self.host
        mask = host.sysctl_int("net.ipv4.icmp_ratemask")
        if not ratelimited_type(type_, code, 6168 if mask is None else mask):
            return True
        if host.output_route(dst).dev == "lo":
            return True
        limit = host.sysctl_int("net.ipv4.icmp_ratelimit")
        return self._peers().xrlim_allow(dst, jiffies(now), ms_to_jiffies(1000 if limit is None else limit))

    def _send_host(self, data: bytes | bytearray | None, cause: Packet) -> None:
        if data is not None:
            self.pending_local.append((bytearray(data), cause, False))

    def _flush_local(self, res: Result, trace: bool) -> None:
        """Packets the host made meanwhile go through OUTPUT/POSTROUTING."""
        guard = 0
        while self.pending_local and guard < 16:
            guard += 1
            data, cause, attach = self.pending_local.pop(0)
            sub = Result(None, "output")
            pkt = Packet(data, time=self.now)
            pkt.local = True
            is_rst = pkt.proto == IPPROTO_TCP and bool(pkt.tcp_flags & 0x04)
            # a kernel socket sent it -- except REJECT's TCP reset, which has none
            pkt.extra = {} if (attach and is_rst) else {"kernel_sk": True}
            if attach and self.tracking and cause.ct is not None:
                self.ct.attach(pkt, cause)
            # (the kernel's TRACE does not follow into packets the host makes)
            self._output(pkt, sub, None)
            res.emitted.extend(sub.emitted)

    # ------------------------------------------------------------ transmit
    def _transmit(self, pkt: Packet, rr: Any, res: Result) -> None:
        """ip_finish_output: fragment to the egress MTU, add Ethernet."""
        mtu = self.host.mtu(rr.dev)
        extra = pkt.extra
        if extra is None and pkt.tot_len <= mtu:  # (needs_fragment says no)
            res.emitted.append(Emitted(rr.dev, self._l2_head(rr.dev, rr.next_hop, pkt.dst) + pkt.data))
            return
        extra = extra or {}
        fms = extra.get("frag_max_size", 0)
        datagrams: list[bytearray] = [pkt.data]
        if needs_fragment(pkt.tot_len, mtu, fms):
            if pkt.frag_off & IP_DF and not fms and pkt.tot_len > mtu:
                return
            datagrams = fragment(pkt.data, mtu, frag_max_size=fms, pmtu_df=extra.get("pmtu_df", False),
                                 pieces=extra.get("pieces"))
        head = self._l2_head(rr.dev, rr.next_hop, pkt.dst)
        for d in datagrams:
            res.emitted.append(Emitted(rr.dev, head + bytes(d)))

    def _l2_head(self, dev: str, nexthop: int, dst: int) -> bytes:
        """The Ethernet header towards `nexthop` (static neighbours; the
        broadcast and multicast addresses map as Linux maps them)."""
        # (only a broadcast or multicast destination changes the header: the
        # others share one entry per next hop)
        key: tuple[Any, ...] = (dev, nexthop, dst) if dst >> 28 == 0xE or self.host.is_broadcast(dst, dev) \
            else (dev, nexthop)
        head = self._l2_heads.get(key)
        if head is None:
            src_mac = self.host.mac(dev)
            dst_mac = self.host.neighbor_mac(nexthop, dev) or ZERO_MAC
            if dst == 0xFFFFFFFF or self.host.is_broadcast(dst, dev):
                dst_mac = BROADCAST_MAC
            elif 0xE0000000 <= dst <= 0xEFFFFFFF:
                dst_mac = bytes((0x01, 0x00, 0x5E, (dst >> 16) & 0x7F, (dst >> 8) & 0xFF, dst & 0xFF))
            head = dst_mac + src_mac + b"\x08\x00"
            if len(self._l2_heads) > 65536:
                self._l2_heads.clear()
            self._l2_heads[key] = head
        return head

    def _arp(self, frame: bytes, iface: str) -> Result:
        from pyfw.wire import arp

        reply = arp.answer(frame, self.host, iface)
        res = Result(None, "arp")
        if reply is not None:
            res.emitted.append(Emitted(iface, reply))
        return res


def _l4_checksum_ok(pkt: Packet) -> bool:
    """The stack drops a TCP/UDP segment with a bad checksum before it
    answers (UDP checksum 0: none)."""
    from pyfw.wire.checksum import verify_l4

    seg = bytes(pkt.data[pkt.ihl:pkt.tot_len])
    if pkt.proto == IPPROTO_UDP and len(seg) >= 8 and seg[6:8] == b"\x00\x00":
        return True
    return verify_l4(pkt.src, pkt.dst, pkt.proto, seg)


def _icmp_checksum_ok(pkt: Packet) -> bool:
    from pyfw.wire.checksum import verify

    return bool(verify(bytes(pkt.data[pkt.ihl:pkt.tot_len])))


def _tot_len(data: bytes | bytearray) -> int:
    return int(data[2] << 8 | data[3])


def _uses_conntrack(ruleset: Ruleset) -> bool:
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                for m in rule.matches:
                    if "match:" + m.name in CT_USERS:
                        return True
                if rule.target.kind == "extension" and "target:" + rule.target.name in CT_USERS:
                    return True
    return False
