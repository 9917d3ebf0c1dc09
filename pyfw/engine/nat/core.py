"""NAT bindings as nf_nat_core.c makes them, and the per-hook NAT step.

A connection gets at most one binding per manip type (DNAT in PREROUTING
and OUTPUT, SNAT in POSTROUTING and INPUT), decided by its first packet: the
nat table's chain runs for it, and when no rule made a binding the kernel
makes a null binding, which still moves the source port when the reply
tuple would clash with another connection's.  Every packet then gets the
connection's recorded manipulation; the reply direction the inverse.

Where Linux draws a random number (get_random_u16 for SNAT port searches,
--random, --random-fully) this module uses a hash of the tuple and the
search round instead, so that a run is deterministic.  The kernel keeps the
original source port whenever it is free, and picks the first free port of
a DNAT range from its start, and the address in a range by an unkeyed
jhash: those choices are the kernel's exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from pyfw.engine.api import (
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_NONE,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IP_CT_UNTRACKED,
    IPS_CONFIRMED,
    IPS_DST_NAT,
    IPS_DST_NAT_DONE,
    IPS_DYING,
    IPS_FIXED_TIMEOUT,
    IPS_SEQ_ADJUST,
    IPS_SRC_NAT,
    IPS_SRC_NAT_DONE,
    NF_ACCEPT,
    NF_DROP,
)
from pyfw.engine.conntrack.conn import Conn, Tuple, new_tuple
from pyfw.engine.jhash import jhash2, reciprocal_scale
from pyfw.engine.nat import addr
from pyfw.engine.nat.manip import (
    ICMP_ID_TYPES,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    MANIP_DST,
    MANIP_SRC,
    inet_checksum,
    ipv4_manip,
)
from pyfw.engine.packet import IP_OFFMASK, Packet
from pyfw.ext.nat_common import (
    RANGE_MAP_IPS,
    RANGE_PERSISTENT,
    RANGE_PROTO_OFFSET,
    RANGE_PROTO_RANDOM,
    RANGE_PROTO_RANDOM_FULLY,
    RANGE_PROTO_SPECIFIED,
    NatRange,
)

RANGE_PROTO_RANDOM_ALL = RANGE_PROTO_RANDOM | RANGE_PROTO_RANDOM_FULLY
IPS_NAT_MASK = IPS_SRC_NAT | IPS_DST_NAT
IPS_NAT_DONE_MASK = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE

NF_NAT_MAX_ATTEMPTS: Final = 128
NF_NAT_HARDER_THRESH = NF_NAT_MAX_ATTEMPTS // 4

# enum tcp_conntrack values the port search looks at
TCP_CONNTRACK_SYN_SENT: Final = 1
TCP_CONNTRACK_TIME_WAIT: Final = 7

ICMP_REDIRECT: Final = 5
INADDR_LOOPBACK: Final = 0x7F000001

# Hooks whose nat chain makes source bindings (HOOK2MANIP).
SRC_HOOKS = frozenset({"POSTROUTING", "INPUT"})

_PORT_PROTOS = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP})
# l4protos without allow_clash (the generic tracker has it)
_NO_CLASH = frozenset({IPPROTO_TCP, IPPROTO_ICMP, IPPROTO_SCTP, 33, IPPROTO_GRE})

# ICMP query types and their answers (nf_conntrack_proto_icmp invmap).
_ICMP_INV = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}


class ConntrackIndex(Protocol):
    """What NAT needs from the connection table."""

    def tuple_taken(self, t: Tuple, ignore: Conn) -> bool:
        """nf_conntrack_tuple_taken: a confirmed, unexpired connection other
        than `ignore` has `t` as its original or reply tuple (one whose
        original tuple equals ignore's original does not count)."""
        ...

    def lookup(self, t: Tuple) -> tuple[Conn, int] | None:
        """The confirmed connection with tuple `t` and the direction (0
        original, 1 reply) that matched; None when there is none."""
        ...

    def kill(self, conn: Conn) -> bool:
        """nf_ct_kill: remove the connection now; True when it was removed."""
        ...


def invert(t: Tuple) -> Tuple:
    """nf_ct_invert_tuple: ICMP keeps its id and turns a query type into
    its answer; the other protocols swap ports."""
    if t.proto == IPPROTO_ICMP:
        typ = t.dport >> 8
        return Tuple(t.dst, t.src, IPPROTO_ICMP, t.sport, _ICMP_INV.get(typ, typ) << 8 | (t.dport & 0xFF))
    return new_tuple(Tuple, (t.dst, t.src, t.proto, t.dport, t.sport))


def manip_of_hook(hook: str) -> int:
    """HOOK2MANIP."""
    return MANIP_SRC if hook in SRC_HOOKS else MANIP_DST


def nat_initialized(ct: Conn, manip: int) -> bool:
    return bool(ct.status & (IPS_SRC_NAT_DONE if manip == MANIP_SRC else IPS_DST_NAT_DONE))


def _bswap32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "big"), "little")


def _in_l4_range(t: Tuple, manip: int, lo: int, hi: int) -> bool:
    """l4proto_in_range."""
    p = t.proto
    if p == IPPROTO_ICMP:
        return lo <= t.sport <= hi
    if p in _PORT_PROTOS or p == IPPROTO_GRE:
        port = t.sport if manip == MANIP_SRC else t.dport
        return lo <= port <= hi
    return True


def _in_range(t: Tuple, r: NatRange) -> bool:
    """nf_in_range: would mapping the source to `t` satisfy the range?"""
    if r.flags & RANGE_MAP_IPS and not (r.min_ip <= t.src <= r.max_ip):
        return False
    if not r.flags & RANGE_PROTO_SPECIFIED:
        return True
    return _in_l4_range(t, MANIP_SRC, r.min_port, r.max_port)


class Nat:
    """The NAT state of one host: bindings live on the connections; this
    keeps the by-source index and the per-hook logic."""

    def __init__(self, index: Any, host: Any = None, seed: int = 0) -> None:
        self.reinit(index, host, seed)

    def reinit(self, index: Any, host: Any = None, seed: int = 0) -> None:
        """No bindings, in this same object (compiled NAT targets hold it;
        re-calling __init__ does nothing on a mypyc class)."""
        self.index = index
        self.host = host
        self.seed = seed
        # nf_nat_bysource: (zone, proto, src, sport) -> conns, newest first
        self._bysource: dict[tuple[int, int, int, int], list[Conn]] = {}
        self._sweep_at = 4096
        self.stats: dict[str, int] = {}
        # the host is fixed while it runs: MASQUERADE's source address per
        # (out interface, next hop), and its range per (range, address)
        self._masq_addr: dict[tuple[str, int], int] = {}
        self._masq_ranges: dict[tuple[int, int], tuple[NatRange, NatRange]] = {}

    def set_host(self, host: Any) -> None:
        """A changed host (the live daemon follows the kernel's): what was
        derived from the old one goes; bindings stay on their connections."""
        self.host = host
        self._masq_addr.clear()
        self._masq_ranges.clear()

    # ------------------------------------------------------------ the hook
    def hook(self, pkt: Packet, hook: str, run_nat_table: Callable[[Packet], int] | None) -> int:
        """nf_nat_ipv4_fn for one hook: bind a new connection (the nat
        chain, then a null binding) and apply its manipulation.

        `run_nat_table` walks the nat table's chain for this hook and
        returns its verdict; None means there is no nat table, so the NAT
        hooks are not registered and nothing happens (not even null
        bindings), as in a namespace where iptables never touched `nat`.
        """
        if run_nat_table is None:
            return NF_ACCEPT
        ct = pkt.ct
        ctinfo = pkt.ctinfo
        if ct is None or ctinfo == IP_CT_UNTRACKED or ctinfo == IP_CT_NONE:
            return NF_ACCEPT
        manip = MANIP_SRC if hook in SRC_HOOKS else MANIP_DST
        if ctinfo == IP_CT_RELATED or ctinfo == IP_CT_RELATED_REPLY:
            if pkt.proto == IPPROTO_ICMP:
                return NF_ACCEPT if self.icmp_reply_translation(pkt, ct, ctinfo, manip) else NF_DROP
        if ctinfo == IP_CT_NEW or ctinfo == IP_CT_RELATED or ctinfo == IP_CT_RELATED_REPLY:
            done = IPS_SRC_NAT_DONE if manip == MANIP_SRC else IPS_DST_NAT_DONE  # (nat_initialized)
            if not ct.status & done:
                ret = run_nat_table(pkt)
                if ret != NF_ACCEPT:
                    return ret
                if not ct.status & done:
                    ret = self.alloc_null_binding(ct, manip)
                    if ret != NF_ACCEPT:
                        return ret
            elif self._oif_changed(ct, hook, ctinfo, pkt):
                return self._kill_drop(ct)
        elif self._oif_changed(ct, hook, ctinfo, pkt):
            return self._kill_drop(ct)
        return self.packet(pkt, ct, ctinfo, manip)

    @staticmethod
    def _oif_changed(ct: Conn, hook: str, ctinfo: int, pkt: Packet) -> bool:
        """A masqueraded connection whose original direction now leaves
        through another interface (nf_nat_oif_changed)."""
        return (ct.masq_dev is not None and hook == "POSTROUTING" and ctinfo < IP_CT_IS_REPLY
                and ct.masq_dev != pkt.outdev)

    def _kill_drop(self, ct: Conn) -> int:
        kill = getattr(self.index, "kill", None)
        if kill is not None:
            kill(ct)
        self.forget(ct)
        return NF_DROP

    # ------------------------------------------------------------ packets
    def packet(self, pkt: Packet, ct: Conn, ctinfo: int, manip: int) -> int:
        """nf_nat_packet: the connection's manipulation for this manip type
        and the packet's direction, if it has one."""
        rdir = ctinfo >= IP_CT_IS_REPLY
        bit = IPS_SRC_NAT if manip == MANIP_SRC else IPS_DST_NAT
        if rdir:
            bit ^= IPS_NAT_MASK
        if not ct.status & bit:
            return NF_ACCEPT
        # aim to look like the inverse of the other direction
        t = ct.orig if rdir else ct.reply
        if t.proto == IPPROTO_ICMP:
            target = invert(t)
        else:
            target = new_tuple(Tuple, (t.dst, t.src, t.proto, t.dport, t.sport))
        return NF_ACCEPT if self.manip_pkt(pkt, target, manip) else NF_DROP

    def manip_pkt(self, pkt: Packet, target: Tuple, manip: int) -> bool:
        """Rewrite the datagram and the Packet fields to `target`."""
        d = pkt.data
        end = min(len(d), pkt.tot_len)
        l4 = not pkt.frag_off & IP_OFFMASK  # a later fragment has no ports
        try:
            ok = ipv4_manip(d, 0, end, target, manip, l4)
        except (IndexError, ValueError, OverflowError):
            ok = False
        if not ok:
            self._count("manip_failed")
            return False
        proto = pkt.proto
        if manip == MANIP_SRC:
            pkt.src = target.src
            if l4 and pkt.l4ok:
                if proto == IPPROTO_ICMP:
                    if pkt.icmp_type in ICMP_ID_TYPES:
                        pkt.icmp_id = target.sport
                elif proto in _PORT_PROTOS:
                    pkt.sport = target.sport
        else:
            pkt.dst = target.dst
            if l4 and pkt.l4ok:
                if proto == IPPROTO_ICMP:
                    if pkt.icmp_type in ICMP_ID_TYPES:
                        pkt.icmp_id = target.sport
                elif proto in _PORT_PROTOS:
                    pkt.dport = target.dport
        return True

    def icmp_reply_translation(self, pkt: Packet, ct: Conn, ctinfo: int, manip: int) -> bool:
        """nf_nat_icmp_reply_translation: an ICMP error RELATED to a NATed
        connection gets its quoted header translated back (addresses,
        ports, the quoted checksums), its ICMP checksum recomputed, and its
        outer address changed as for the connection's own packets.
        False: drop it."""
        d = pkt.data
        hl = pkt.ihl
        end = min(len(d), pkt.tot_len)
        if end < hl + 8 + 20:
            return False
        if inet_checksum(d, hl, end) != 0:
            return False
        status = ct.status
        if d[hl] == ICMP_REDIRECT:
            if status & IPS_NAT_DONE_MASK != IPS_NAT_DONE_MASK or status & IPS_NAT_MASK:
                return False
        rdir = ctinfo >= IP_CT_IS_REPLY
        bit = IPS_SRC_NAT if manip == MANIP_SRC else IPS_DST_NAT
        if rdir:
            bit ^= IPS_NAT_MASK
        if not status & bit:
            return True
        other = ct.orig if rdir else ct.reply
        try:
            if not ipv4_manip(d, hl + 8, end, other, MANIP_DST if manip == MANIP_SRC else MANIP_SRC):
                return False
            d[hl + 2] = d[hl + 3] = 0
            c = inet_checksum(d, hl, end)
            d[hl + 2] = c >> 8
            d[hl + 3] = c & 0xFF
            t = invert(other)
            if not ipv4_manip(d, 0, end, Tuple(t.src, t.dst, IPPROTO_ICMP, t.sport, t.dport), manip):
                return False
        except (IndexError, ValueError, OverflowError):
            self._count("manip_failed")
            return False
        if manip == MANIP_SRC:
            pkt.src = t.src
        else:
            pkt.dst = t.dst
        return True

    # ------------------------------------------------------------ bindings
    def setup(self, pkt: Packet, rng: NatRange, manip: int) -> int:
        """What SNAT/DNAT call (xt_nat): bind the packet's connection."""
        ct = pkt.ct
        if ct is None:
            return NF_ACCEPT
        return self.setup_info(ct, rng, manip)

    def alloc_null_binding(self, ct: Conn, manip: int) -> int:
        """nf_nat_alloc_null_binding: map to the address the connection
        already has, letting the port move only to stay unique."""
        reply = ct.reply
        if manip == MANIP_DST and reply.proto in _PORT_PROTOS and not ct.status & IPS_CONFIRMED \
                and not ct.status & IPS_DST_NAT_DONE:
            # What setup_info works out for a null DNAT of a port protocol:
            # the address stays, and a destination port is never moved
            # unasked, so the tuple stays as it is whether or not its reply
            # is taken; only the lookup itself (which reaps an expired
            # entry and counts `found`) is left to do.
            self.index.tuple_taken(reply, ct)
            ct.status |= IPS_DST_NAT_DONE
            return NF_ACCEPT
        ip = reply.dst if manip == MANIP_SRC else reply.src
        return self.setup_info(ct, NatRange(RANGE_MAP_IPS, ip, ip), manip)

    def setup_info(self, ct: Conn, rng: NatRange, manip: int) -> int:
        """nf_nat_setup_info: choose the new tuple, alter the reply tuple,
        record the binding on the connection."""
        status = ct.status
        if status & IPS_CONFIRMED:
            return NF_ACCEPT
        if status & (IPS_SRC_NAT_DONE if manip == MANIP_SRC else IPS_DST_NAT_DONE):
            return NF_DROP
        r = ct.reply
        curr = invert(r) if r.proto == IPPROTO_ICMP else new_tuple(Tuple, (r.dst, r.src, r.proto, r.dport, r.sport))
        new = self.get_unique_tuple(curr, rng, ct, manip)
        if new != curr:
            ct.reply = invert(new) if new.proto == IPPROTO_ICMP else new_tuple(
                Tuple, (new.dst, new.src, new.proto, new.dport, new.sport))
            if manip == MANIP_SRC:
                ct.status |= IPS_SRC_NAT
                ct.nat_src = (new.src, new.sport)
            else:
                ct.status |= IPS_DST_NAT
                ct.nat_dst = (new.dst, new.dport)
        if manip == MANIP_SRC:
            o = ct.orig
            key = (ct.zone, o.proto, o.src, o.sport)
            lst = self._bysource.get(key)
            if lst is None:
                self._bysource[key] = [ct]
            else:
                lst.insert(0, ct)
            if len(self._bysource) > self._sweep_at:
                self._sweep(ct)
            ct.status |= IPS_SRC_NAT_DONE
        else:
            ct.status |= IPS_DST_NAT_DONE
        return NF_ACCEPT

    def _sweep(self, current: Conn) -> None:
        """Drop the by-source entries of connections that are gone (the
        table need not tell NAT about every deletion): amortised, the index
        stays proportional to the live connections.  Gone is what _alive's
        status test says (the table's delete marks every connection it
        unlinks DYING; an unconfirmed one other than `current` was dropped
        before its confirm); a list with nothing gone stays as it is."""
        want = IPS_CONFIRMED | IPS_DYING
        bysource = self._bysource
        stale: list[tuple[int, int, int, int]] = []
        for key, lst in bysource.items():
            for c in lst:
                if c is not current and c.status & want != IPS_CONFIRMED:
                    stale.append(key)
                    break
        for key in stale:
            live = [c for c in bysource[key] if c is current or c.status & want == IPS_CONFIRMED]
            if live:
                bysource[key] = live
            else:
                del bysource[key]
        self._sweep_at = max(4096, 2 * len(bysource))

    def forget(self, ct: Conn) -> None:
        """nf_nat_cleanup_conntrack: the connection is gone (the table calls
        this when it destroys a connection that had a source binding)."""
        o = ct.orig
        key = (ct.zone, o.proto, o.src, o.sport)
        lst = self._bysource.get(key)
        if lst is None:
            return
        while ct in lst:  # identity (Conn has eq=False): C speed, not a Python loop
            lst.remove(ct)
        if not lst:
            del self._bysource[key]

    # ------------------------------------------------------------ MASQUERADE / REDIRECT
    def masquerade(self, pkt: Packet, rng: NatRange) -> int:
        """nf_nat_masquerade_ipv4: SNAT to the out interface's address for
        the route's next hop."""
        ct = pkt.ct
        if ct is None:
            return NF_ACCEPT
        if ct.orig.src == 0:
            return NF_ACCEPT  # 0.0.0.0: a local packet not meant to be masqueraded
        host = self.host
        nh = pkt.nexthop or addr.nexthop(host, pkt.dst)
        outdev = pkt.outdev
        newsrc = self._masq_addr.get((outdev, nh))
        if newsrc is None:
            newsrc = addr.select_address(host, outdev, nh)
            if len(self._masq_addr) > 4096:
                self._masq_addr.clear()
            self._masq_addr[(outdev, nh)] = newsrc
        if not newsrc:
            self._count("masquerade_no_address")
            return NF_DROP
        ct.masq_dev = outdev
        cached = self._masq_ranges.get((id(rng), newsrc))
        if cached is None or cached[0] is not rng:
            new = NatRange(rng.flags | RANGE_MAP_IPS, newsrc, newsrc, rng.min_port, rng.max_port, 0)
            if len(self._masq_ranges) > 4096:
                self._masq_ranges.clear()
            # (the range is kept beside its copy, so its id is not reused meanwhile)
            self._masq_ranges[(id(rng), newsrc)] = (rng, new)
        else:
            new = cached[1]
        return self.setup_info(ct, new, MANIP_SRC)

    def redirect(self, pkt: Packet, rng: NatRange) -> int:
        """nf_nat_redirect_ipv4: DNAT to 127.0.0.1 for local packets, else
        to the first address of the in interface (DROP when it has none)."""
        ct = pkt.ct
        if ct is None:
            return NF_ACCEPT
        if pkt.hook == "OUTPUT" or (pkt.local and pkt.hook != "PREROUTING"):
            newdst = INADDR_LOOPBACK
        else:
            newdst = addr.first_address(self.host, pkt.indev)
            if not newdst:
                return NF_DROP
        new = NatRange(rng.flags | RANGE_MAP_IPS, newdst, newdst, rng.min_port, rng.max_port, 0)
        return self.setup_info(ct, new, MANIP_DST)

    # ------------------------------------------------------------ tuple choice
    def get_unique_tuple(self, orig: Tuple, r: NatRange, ct: Conn, manip: int) -> Tuple:
        """get_unique_tuple: the tuple after the manip, unique if possible."""
        flags = r.flags
        if manip == MANIP_SRC and not flags & RANGE_PROTO_RANDOM_ALL:
            # 1) keep the source as it is, or reuse this source's mapping
            # (_in_range's address test first, inline: MASQUERADE and SNAT
            # to another address fail it for every new connection)
            if flags & RANGE_MAP_IPS and not (r.min_ip <= orig.src <= r.max_ip):
                found = self._find_appropriate_src(orig, r, ct.zone)
                if found is not None and not self._used(found, ct):
                    return found
            elif _in_range(orig, r):
                if not self._used_tuple_new(orig, ct):
                    return orig
            else:
                found = self._find_appropriate_src(orig, r, ct.zone)
                if found is not None and not self._used(found, ct):
                    return found
        # 2) the address (one address: _find_best_ips's answer, inline)
        if flags & RANGE_MAP_IPS and r.min_ip == r.max_ip:
            ip = r.min_ip
            t = (new_tuple(Tuple, (ip, orig.dst, orig.proto, orig.sport, orig.dport)) if manip == MANIP_SRC
                 else new_tuple(Tuple, (orig.src, ip, orig.proto, orig.sport, orig.dport)))
        else:
            t = self._find_best_ips(orig, r, ct.zone, manip)
        # 3) the port, unless it is already fine
        if not flags & RANGE_PROTO_RANDOM_ALL:
            if flags & RANGE_PROTO_SPECIFIED:
                if (not flags & RANGE_PROTO_OFFSET
                        and _in_l4_range(t, manip, r.min_port, r.max_port)
                        and (r.min_port == r.max_port or not self._used(t, ct))):
                    return t
            elif not self._used(t, ct):
                return t
        return self._unique_l4(t, r, manip, ct)

    def _used(self, t: Tuple, ct: Conn) -> bool:
        """nf_nat_used_tuple: replies to `t` would match another connection."""
        if t.proto == IPPROTO_ICMP:
            return bool(self.index.tuple_taken(invert(t), ct))
        return bool(self.index.tuple_taken(new_tuple(Tuple, (t.dst, t.src, t.proto, t.dport, t.sport)), ct))

    def _lookup(self, t: Tuple) -> tuple[Conn, int] | None:
        fn = getattr(self.index, "lookup", None)
        return fn(t) if fn is not None else None

    def _used_tuple_new(self, t: Tuple, ct: Conn) -> bool:
        """nf_nat_used_tuple_new: as _used, but a clash with a connection of
        the same flow seen from the other side (and neither NATed) is left
        to the confirm step's clash resolution."""
        if not self._used(t, ct):
            return False
        if ct.orig.proto in _NO_CLASH:
            return True
        uses_nat = IPS_NAT_MASK | IPS_SEQ_ADJUST
        if ct.status & uses_nat:
            return True
        found = self._lookup(t) or self._lookup(invert(t))
        if found is None:
            return False
        other = found[0]
        if other.status & uses_nat:
            return True
        return other.orig != ct.reply

    def _alive(self, c: Conn) -> bool:
        """Still in the table (an unconfirmed one was dropped before its
        confirm: in a serial engine only the one being set up is alive)."""
        if c.status & (IPS_CONFIRMED | IPS_DYING) != IPS_CONFIRMED:
            return False
        fn = getattr(self.index, "lookup", None)
        if fn is None or c.zone:
            return True
        found = fn(c.orig)
        return found is not None and found[0] is c

    def _find_appropriate_src(self, t: Tuple, r: NatRange, zone: int) -> Tuple | None:
        """find_appropriate_src: the mapping another connection from the same
        source (address, port, protocol) got, if it fits the range."""
        lst = self._bysource.get((zone, t.proto, t.src, t.sport))
        if not lst:
            return None
        # The first live entry usually fits: stop there (a full pass per new
        # connection made many flows from one source port quadratic); the
        # dead ones are dropped once they are half the list.
        alive = self._alive
        dead = 0
        found = None
        for c in lst:
            if not alive(c):
                dead += 1
                continue
            m = invert(c.reply)
            result = Tuple(m.src, t.dst, t.proto, m.sport, t.dport)
            if _in_range(result, r):
                found = result
                break
        if dead and dead * 2 >= len(lst):
            key = (zone, t.proto, t.src, t.sport)
            live = [c for c in lst if alive(c)]
            if live:
                self._bysource[key] = live
            else:
                del self._bysource[key]
        return found

    @staticmethod
    def _find_best_ips(t: Tuple, r: NatRange, zone: int, manip: int) -> Tuple:
        """find_best_ips_proto: the address, by jhash of the tuple's
        addresses (no secret: the kernel's exact choice)."""
        if not r.flags & RANGE_MAP_IPS:
            return t
        if r.min_ip == r.max_ip:
            ip = r.min_ip
        else:
            init = 0 if r.flags & RANGE_PERSISTENT else (_bswap32(t.dst) ^ zone) & 0xFFFFFFFF
            j = jhash2((_bswap32(t.src), 0, 0, 0), init)
            dist = (r.max_ip - r.min_ip + 1) & 0xFFFFFFFF
            ip = (r.min_ip + reciprocal_scale(j, dist)) & 0xFFFFFFFF
        # (a plain constructor call: NamedTuple._replace costs several times more)
        if manip == MANIP_SRC:
            return new_tuple(Tuple, (ip, t.dst, t.proto, t.sport, t.dport))
        return new_tuple(Tuple, (t.src, ip, t.proto, t.sport, t.dport))

    def _rand16(self, t: Tuple, attempt: int) -> int:
        """Stands in for get_random_u16(): a hash of the tuple, so that the
        same traffic always gets the same ports."""
        w = (t.src, t.dst, (t.sport << 16 | t.dport) & 0xFFFFFFFF, t.proto)
        return jhash2(w, (self.seed + 0x9E3779B9 * (attempt + 1)) & 0xFFFFFFFF) & 0xFFFF

    def _unique_l4(self, t: Tuple, r: NatRange, manip: int, ct: Conn) -> Tuple:
        """nf_nat_l4proto_unique_tuple: search the port (ICMP id) range."""
        p = t.proto
        flags = r.flags
        if p == IPPROTO_ICMP:
            src_key = True
            if not flags & RANGE_PROTO_SPECIFIED:
                lo, size = 0, 65536
            else:
                lo = r.min_port
                size = (r.max_port - r.min_port + 1) & 0xFFFFFFFF
        elif p in _PORT_PROTOS:
            src_key = manip == MANIP_SRC
            if not flags & RANGE_PROTO_SPECIFIED:
                if manip == MANIP_DST:
                    return t  # a destination port is never changed unasked
                port = t.sport
                if port < 1024:
                    lo, size = (1, 511) if port < 512 else (600, 424)
                else:
                    lo, size = 1024, 64512
            else:
                lo, hi = r.min_port, r.max_port
                if hi < lo:
                    lo, hi = hi, lo
                size = hi - lo + 1
        else:
            return t  # GRE without a PPTP master, and the rest: unchanged
        key = t.sport if src_key else t.dport
        if flags & RANGE_PROTO_OFFSET:
            off = (key - r.base_port) & 0xFFFF
        elif flags & RANGE_PROTO_RANDOM_ALL or manip != MANIP_DST:
            off = self._rand16(t, 0)
        else:
            off = 0
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        rnd = 1
        cand = t
        while True:
            for i in range(attempts):
                value = (lo + off % size) & 0xFFFF
                cand = (Tuple(t.src, t.dst, p, value, t.dport) if src_key
                        else Tuple(t.src, t.dst, p, t.sport, value))
                if not self._used_harder(cand, ct, attempts - i):
                    return cand
                off = (off + 1) & 0xFFFF
            if attempts >= size or attempts < 16:
                return cand
            attempts //= 2
            off = self._rand16(t, rnd)
            rnd += 1

    def _used_harder(self, t: Tuple, ct: Conn, left: int) -> bool:
        """nf_nat_used_tuple_harder: in the last attempts of a TCP search, a
        clashing SNATed connection in TIME_WAIT whose sequence numbers the
        new one has passed is evicted instead."""
        reply = invert(t)
        if left > NF_NAT_HARDER_THRESH or t.proto != IPPROTO_TCP or _tcp_state(ct) != TCP_CONNTRACK_SYN_SENT:
            return bool(self.index.tuple_taken(reply, ct))
        found = self._lookup(reply)
        if found is None:
            return bool(self.index.tuple_taken(reply, ct))
        other, odir = found
        if odir == 0 or other is ct:
            return True
        flags = other.status
        state = _tcp_state(other)
        if state is None or state < TCP_CONNTRACK_TIME_WAIT or flags & (IPS_DYING | IPS_FIXED_TIMEOUT):
            return True
        if not flags & IPS_SRC_NAT:
            return True
        old_end, new_end = _td_end(other), _td_end(ct)
        if old_end is None or new_end is None or not 0 < ((new_end - old_end) & 0xFFFFFFFF) < 1 << 31:
            return True
        kill = getattr(self.index, "kill", None)
        if kill is not None and kill(other):
            self.forget(other)
            return False
        return True

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


def _tcp_state(ct: Conn) -> int | None:
    ps = ct.proto_state
    state = getattr(ps, "state", None)
    return state if isinstance(state, int) else None


def _td_end(ct: Conn) -> int | None:
    seen = getattr(ct.proto_state, "seen", None)
    try:
        end = seen[0].td_end  # type: ignore[index]
    except (TypeError, IndexError, AttributeError):
        return None
    return end if isinstance(end, int) else None
