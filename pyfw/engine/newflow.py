"""The common path of a forwarded packet in one straight line.

Engine._receive walks a frame through a dozen methods, each asking again
what the ruleset and the packet have (a raw table? fragments? options? a
queue verdict?).  For the usual first packet of a flow -- IPv4 without
options, not a fragment, TCP or UDP, unicast, forwarded, on a ruleset whose
raw, mangle and security tables hook none of PREROUTING, FORWARD and
POSTROUTING -- most of those answers are known before the packet comes.
`NewFlow.receive` runs that path with the same underlying steps (the
connection tracker's in_hook, the compiled chain walks, nf_nat's binding
and rewrite, conntrack's confirm) and only the glue inlined; for anything
else on the way (a non-NEW packet, a local or unroutable destination, a
redirect, an MTU problem, an odd verdict) it hands the packet to the very
Engine method that would have come next, so the two cannot drift apart.

PYFW_NEWFLOW=0 turns it off (A/B runs, tests).
"""

from __future__ import annotations

import os
from typing import Any, Final

from pyfw.engine.api import (
    IP_CT_NEW,
    IP_CT_NONE,
    IPS_DST_NAT,
    IPS_DST_NAT_DONE,
    IPS_SRC_NAT,
    IPS_SRC_NAT_DONE,
    NF_ACCEPT,
    NF_DROP,
    NF_QUEUE,
    NF_VERDICT_FLAG_QUEUE_BYPASS,
    NF_VERDICT_MASK,
)
from pyfw.engine.conntrack import _HANDLERS as CT_HANDLERS
from pyfw.engine.conntrack.conn import Tuple, new_tuple
from pyfw.engine.conntrack.table import CT_REPEAT, ZONE_DIR_BOTH
from pyfw.engine.engine import Emitted, Engine, Result
from pyfw.engine.host import RTN_UNICAST, Host
from pyfw.engine.nat.manip import MANIP_DST, MANIP_SRC
from pyfw.engine.packet import Packet
from pyfw.engine.tables import CompiledTable, do_table
from pyfw.ruleset.model import Counters
from pyfw.wire.ipv4 import decrease_ttl

_M: Final = 0xFFFF
_QUEUE_BYPASS: Final = NF_VERDICT_FLAG_QUEUE_BYPASS

# Engine methods this path stands in for: a subclass overriding one of them
# (the daemon's, the TAP gateway's) does something there that this path
# would skip, so it does not get it.
REPLACED = ("_receive", "_prerouting", "_prerouting_hooks", "_route_input", "_input_route", "_forward",
            "_forward_options", "_table", "_postrouting", "_postrouting_hooks", "_transmit", "_l2_head",
            "_verdict_name", "_flush_local", "_nat_chain")


def replaces(cls: type) -> bool:
    """Whether an engine of class `cls` may take this path."""
    return all(getattr(cls, name) is getattr(Engine, name) for name in REPLACED)


def enabled_by_default() -> bool:
    return os.environ.get("PYFW_NEWFLOW", "1") not in ("0", "off", "no", "false")


def _walk(t: CompiledTable, hook: str, pkt: Packet) -> int:
    """Engine._table for a hooked table (the queue-bypass rule included)."""
    pkt.hook = hook
    v = do_table(t, hook, pkt, None)
    if v & NF_VERDICT_MASK == NF_QUEUE and v & _QUEUE_BYPASS:
        return NF_ACCEPT
    return v


class NewFlow:
    """The straight-line path for one engine (prepared per ruleset)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = False
        self.filter_fwd: CompiledTable | None = None
        self.nat: CompiledTable | None = None
        self.pre_counters: Any = None   # nat PREROUTING: only its ACCEPT policy (its counters)
        # empty raw/mangle/security chains with an ACCEPT policy on the way
        # (a restore of a whole iptables-save has them): their policy counters
        self.raw_pre: Counters | None = None
        self.mangle_pre: Counters | None = None
        self.mangle_fwd: Counters | None = None
        self.security_fwd: Counters | None = None
        self.mangle_post: Counters | None = None
        self.taken = 0                  # packets that took this path to the end

    def prepare(self) -> None:
        """What the ruleset lets this path skip (called at every load)."""
        e = self.engine
        hooked = e._hooked
        self.ready = e.tracking
        empty: dict[tuple[str, str], Counters | None] = {}
        for t in ("raw", "mangle", "security"):
            for h in ("PREROUTING", "FORWARD", "POSTROUTING"):
                table = hooked.get((t, h))
                if table is None:
                    empty[(t, h)] = None
                    continue
                chain = table.chains[h]
                if chain.rules or chain.policy != NF_ACCEPT or chain.counters is None:
                    self.ready = False
                empty[(t, h)] = chain.counters
        if empty[("raw", "FORWARD")] or empty[("raw", "POSTROUTING")] or empty[("security", "PREROUTING")] \
                or empty[("security", "POSTROUTING")]:
            self.ready = False  # (not a built-in chain of that table)
        self.raw_pre = empty[("raw", "PREROUTING")]
        self.mangle_pre = empty[("mangle", "PREROUTING")]
        self.mangle_fwd = empty[("mangle", "FORWARD")]
        self.security_fwd = empty[("security", "FORWARD")]
        self.mangle_post = empty[("mangle", "POSTROUTING")]
        self.filter_fwd = hooked.get(("filter", "FORWARD"))
        self.nat = None
        self.pre_counters = None
        if e.has_nat:
            nat = hooked.get(("nat", "PREROUTING"))
            if nat is None or ("nat", "POSTROUTING") not in hooked or nat is not hooked[("nat", "POSTROUTING")]:
                self.ready = False
                return
            self.nat = nat
            pre = nat.chains["PREROUTING"]
            if not pre.rules and pre.policy == NF_ACCEPT and pre.counters is not None and nat.log is None:
                self.pre_counters = pre.counters

    def receive(self, frame: bytes, iface: str, now: float) -> Result | None:
        """Engine._receive for a frame of the common shape; None: not of
        that shape (nothing was done, the caller takes the general path)."""
        if not self.ready:
            return None
        n = len(frame)
        if (n < 34 or frame[12:15] != b"\x08\x00\x45" or frame[0] & 1
                or frame[20] & 0x3F or frame[21] or frame[22] <= 1):
            return None
        proto = frame[23]
        tot_len = frame[16] << 8 | frame[17]
        if proto == 6:
            if tot_len < 40:
                return None
        elif proto != 17 or tot_len < 28:
            return None
        if n - 14 < tot_len:
            return None
        v = int.from_bytes(frame[14:34], "big")
        if not v or v % _M:
            return None  # a bad header checksum: ip_rcv drops it (the general path counts it)
        e = self.engine
        pkt = Packet(bytearray(frame[14:14 + tot_len]), indev=iface, time=now, eth=bytes(frame[:14]))
        res = Result(None, "prerouting")
        # PREROUTING: raw (empty), conntrack
        c = self.raw_pre
        if c is not None:
            c.packets += 1
            c.bytes += tot_len
        pkt.hook = "PREROUTING"
        verdict: int | None = self._conntrack(pkt)
        if verdict == NF_ACCEPT:
            verdict = self._rest(pkt, res)
            if verdict == NF_ACCEPT:
                e.rejected_last = e.rejected  # (Engine._verdict_name of an ACCEPT)
                res.verdict = "ACCEPT"
                if e.pending_local:
                    e._flush_local(res, False)
                return res
        if verdict is not None:
            res.verdict = e._verdict_name(verdict)
        if e.pending_local:
            e._flush_local(res, False)
        return res

    def _conntrack(self, pkt: Packet) -> int:
        """Conntrack.in_hook at PREROUTING for a fresh packet of this shape
        (not NOTRACKed, no template, zone 0, TCP or UDP with its ports, not
        a fragment): a tuple nobody has makes its connection here, with the
        tracker's own steps; anything else is in_hook's."""
        ctk = self.engine.ct
        now = pkt.time
        proto = pkt.proto
        # (the ports as Packet.parse read them: this packet was parsed just now)
        t = new_tuple(Tuple, (pkt.src, pkt.dst, proto, pkt.sport, pkt.dport))
        if ctk.table.find(t, 0, ZONE_DIR_BOTH, now) is not None:
            return ctk.in_hook(pkt)  # (it finds the same entry again)
        ctk.now = now
        pkt.ctinfo = IP_CT_NONE
        pkt.ctdir = 0
        made = ctk._init_conntrack(t, pkt, 0, ZONE_DIR_BOTH, now)
        if isinstance(made, int):
            st = ctk.stat
            if made == NF_DROP:  # table full
                st.drop += 1
                return NF_DROP
            st.invalid += 1
            return NF_ACCEPT
        ret = CT_HANDLERS[proto](ctk, made, pkt, IP_CT_NEW, 0, True)
        if ret == CT_REPEAT:
            return ctk.in_hook(pkt)  # (its loop starts over just so)
        # (no UPDATE event is due: the entry is not in the table yet)
        return ctk.tracked(pkt, made, IP_CT_NEW, 0, ret, None)

    def _rest(self, pkt: Packet, res: Result) -> int | None:
        e = self.engine
        ct = pkt.ct
        nat = self.nat
        c = self.mangle_pre  # PREROUTING: mangle (empty), then nat
        if c is not None:
            pkt.hook = "PREROUTING"
            c.packets += 1
            c.bytes += pkt.tot_len
        if ct is None or pkt.ctinfo != IP_CT_NEW or ct.status & (IPS_DST_NAT_DONE | IPS_SRC_NAT_DONE):
            # not a new connection: the general steps after conntrack
            if nat is not None:
                v = e.nat.hook(pkt, "PREROUTING", e._nat_chain("PREROUTING", None))
                if v != NF_ACCEPT:
                    return v
            return e._route_input(pkt, res, None)
        natk = e.nat
        if nat is not None:
            # nf_nat_ipv4_fn at PREROUTING for a NEW connection
            pc = self.pre_counters
            if pc is not None:
                pc.packets += 1
                pc.bytes += pkt.tot_len
            else:
                v = _walk(nat, "PREROUTING", pkt)
                if v != NF_ACCEPT:
                    return v
            if not ct.status & IPS_DST_NAT_DONE:
                v = natk.alloc_null_binding(ct, MANIP_DST)
                if v != NF_ACCEPT:
                    return v
            if ct.status & IPS_DST_NAT and not natk.packet(pkt, ct, IP_CT_NEW, MANIP_DST):
                return NF_DROP
        # the routing decision (Engine._input_route's cache, then the host's)
        key = (pkt.src, pkt.dst, pkt.indev, pkt.proto)
        routes = e._input_routes
        rr = routes.get(key)
        if rr is None:  # (Engine._input_route without its second lookup)
            if len(routes) > 65536:
                routes.clear()
            rr = routes[key] = e.host.input_route(pkt.src, pkt.dst, pkt.indev, pkt.proto)
        if rr.error or rr.type != RTN_UNICAST or rr.redirect or pkt.extra is not None:
            return e._route_input(pkt, res, None)
        dev = rr.dev
        mtu = e.host.mtu(dev)
        res.path = "forward"
        if pkt.tot_len > mtu:
            return e._forward(pkt, rr, res, None)
        # ip_forward: the TTL (more than 1: the frame's, DNAT keeps it), then FORWARD (filter only here)
        pkt.ttl = decrease_ttl(pkt.data)
        pkt.outdev = dev
        pkt.nexthop = rr.next_hop  # (nothing on this path routes it again: MASQUERADE's next hop)
        c = self.mangle_fwd
        if c is not None:
            pkt.hook = "FORWARD"
            c.packets += 1
            c.bytes += pkt.tot_len
        t = self.filter_fwd
        if t is not None:
            pkt.hook = "FORWARD"
            v = do_table(t, "FORWARD", pkt, None)
            if v != NF_ACCEPT:
                if v & NF_VERDICT_MASK != NF_QUEUE or not v & _QUEUE_BYPASS:
                    return v
        c = self.security_fwd
        if c is not None:
            pkt.hook = "FORWARD"
            c.packets += 1
            c.bytes += pkt.tot_len
        if pkt.extra is not None:
            e._forward_options(pkt, rr)
        # POSTROUTING: mangle (empty), nat (SNAT), confirm
        c = self.mangle_post
        if c is not None:
            pkt.hook = "POSTROUTING"
            c.packets += 1
            c.bytes += pkt.tot_len
        if nat is not None:
            if pkt.ct is ct and pkt.ctinfo == IP_CT_NEW and not ct.status & IPS_SRC_NAT_DONE:
                pkt.hook = "POSTROUTING"
                v = do_table(nat, "POSTROUTING", pkt, None)
                if v != NF_ACCEPT and (v & NF_VERDICT_MASK != NF_QUEUE or not v & _QUEUE_BYPASS):
                    return v
                if not ct.status & IPS_SRC_NAT_DONE:
                    v = natk.alloc_null_binding(ct, MANIP_SRC)
                    if v != NF_ACCEPT:
                        return v
                if ct.status & IPS_SRC_NAT:
                    # nf_nat_packet: look like the inverse of the reply (TCP/UDP here)
                    r = ct.reply
                    if not natk.manip_pkt(pkt, new_tuple(Tuple, (r.dst, r.src, r.proto, r.dport, r.sport)),
                                          MANIP_SRC):
                        return NF_DROP
            else:
                v = natk.hook(pkt, "POSTROUTING", e._nat_chain("POSTROUTING", None))
                if v != NF_ACCEPT:
                    return v
        if not e.ct.confirm(pkt):
            return NF_DROP
        res.out = dev
        if pkt.extra is None and pkt.tot_len <= mtu:
            nh = rr.next_hop
            # (a destination routed as unicast is neither a broadcast nor a
            # multicast one: Engine._l2_head keys its header by the next hop)
            head = e._l2_heads.get((dev, nh)) if type(e.host) is Host else None
            if head is None:
                head = e._l2_head(dev, nh, pkt.dst)
            res.emitted.append(Emitted(dev, head + pkt.data))
        else:
            e._transmit(pkt, rr, res)
        self.taken += 1
        return NF_ACCEPT
