"""Connection tracking as nf_conntrack does it (tuples, states, timeouts,
the TCP state machine with window tracking, ICMP errors RELATED, limits).

The traversal calls `Conntrack.in_hook` at PREROUTING / OUTPUT (priority
-200, after raw) and `Conntrack.confirm` at the end of POSTROUTING / INPUT:
in between a new connection hangs off the packet only (NAT may still
change its reply tuple), exactly as the kernel's unconfirmed list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from pyfw.engine.api import (
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_IS_REPLY,
    IP_CT_NEW,
    IP_CT_NONE,
    IP_CT_RELATED,
    IP_CT_UNTRACKED,
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_DYING,
    IPS_EXPECTED,
    IPS_FIXED_TIMEOUT,
    IPS_SEEN_REPLY,
    NF_ACCEPT,
    NF_DROP,
)
from pyfw.engine.conntrack import generic, icmp, tcp, udp
from pyfw.engine.conntrack.conn import Conn, Tuple
from pyfw.engine.conntrack.table import (
    CT_ACCEPT,
    CT_REPEAT,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    IPS_NAT_CLASH,
    ZONE_DIR_BOTH,
    ZONE_DIR_ORIG,
    ZONE_DIR_REPL,
    Listener,
    Stats,
    Table,
    format_entry,
    format_event,
    format_stats,
    get_tuple,
    invert,
    sort_key,
    zone_id,
)
from pyfw.engine.conntrack.timeouts import SYSCTL_DEFAULTS, CtConfig
from pyfw.engine.packet import Packet

__all__ = ["Conn", "Conntrack", "CtConfig", "Listener", "SYSCTL_DEFAULTS", "Tuple", "format_entry", "format_event",
           "format_stats"]

Handler = Callable[["Conntrack", Conn, Packet, int, int, bool], int]

_HANDLERS: dict[int, Handler] = {
    IPPROTO_TCP: tcp.tcp_packet,
    IPPROTO_UDP: udp.udp_packet,
    IPPROTO_UDPLITE: udp.udplite_packet,
    IPPROTO_ICMP: icmp.icmp_packet,
    IPPROTO_GRE: generic.gre_packet,
}
# l4 protocols whose clashing entries may be merged at confirm time (allow_clash)
_ALLOW_CLASH = frozenset({IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_GRE})

# the status bits whose change is an UPDATE event
_EVENT_STATUS = IPS_SEEN_REPLY | IPS_ASSURED

# xt_CT flags (pyfw.ext.target_ct) read from a packet's template
_CT_ZONE_DIR_ORIG: Final = 1 << 2
_CT_ZONE_DIR_REPL: Final = 1 << 3
_CT_ZONE_MARK: Final = 1 << 4


class Conntrack:
    """One network namespace's connection tracking.

    `Conntrack(host)` reads the net.netfilter.nf_conntrack_* sysctls
    through `host.sysctl_int(name)` (or a mapping of names, or nothing for
    a fresh namespace's values)."""

    def __init__(self, host: Any = None, sysctls: Mapping[str, Any] | None = None) -> None:
        self.reinit(host, sysctls)

    def reinit(self, host: Any = None, sysctls: Mapping[str, Any] | None = None) -> None:
        """A fresh, empty connection table in this same object (compiled
        rules hold it; re-calling __init__ does nothing on a mypyc class)."""
        if sysctls is not None:
            cfg = CtConfig.from_sysctls(sysctls)
        elif host is not None and hasattr(host, "sysctl_int"):
            cfg = CtConfig.from_sysctls(host.sysctl_int)
        elif isinstance(host, Mapping):
            cfg = CtConfig.from_sysctls(host)
        else:
            cfg = CtConfig()
        self.cfg = cfg
        self.stat = Stats()
        # event subscribers (ctnetlink's; pyfw conntrack -E): empty unless
        # someone listens, and then told of NEW at confirm, UPDATE when a
        # packet changes the status or the TCP state, DESTROY at delete
        self.listeners: list[Listener] = []
        self.table = Table(cfg.buckets, self.stat, self.listeners)
        self._next_id = 1
        self._gc_early_drop = False
        self.now = 0.0

    # ------------------------------------------------------------ settings
    def set_sysctl(self, name: str, value: int) -> bool:
        """A sysctl changed at run time (nf_conntrack_buckets resizes)."""
        ok = self.cfg.set(name, value)
        if ok and name.endswith("nf_conntrack_buckets"):
            old = self.table
            self.table = Table(self.cfg.buckets, self.stat, self.listeners)
            for conn in old.conns.values():
                self.table.insert(conn, orig=not conn.status & IPS_NAT_CLASH)
        return ok

    # ------------------------------------------------------------ services for the trackers
    def refresh(self, conn: Conn, timeout: float, pkt: Packet, direction: int) -> None:
        """nf_ct_refresh_acct: a new timeout (relative until confirmed) and
        the accounting."""
        if not conn.status & IPS_FIXED_TIMEOUT:
            conn.timeout_at = timeout + pkt.time if conn.status & IPS_CONFIRMED else timeout
        self.account(conn, pkt, direction)

    def account(self, conn: Conn, pkt: Packet, direction: int) -> None:
        acct = conn.acct
        if acct is not None:
            acct[2 * direction] += 1
            acct[2 * direction + 1] += pkt.tot_len

    def kill(self, conn: Conn) -> bool:
        """nf_ct_kill / nf_ct_delete"""
        return self.table.delete(conn)

    # ------------------------------------------------------------ the hooks
    def in_hook(self, pkt: Packet) -> int:
        """nf_conntrack_in at PREROUTING / OUTPUT: sets pkt.ct, pkt.ctinfo and
        pkt.ctdir (pkt.ct None and IP_CT_NONE for INVALID, IP_CT_UNTRACKED
        after NOTRACK).  Returns NF_ACCEPT, or NF_DROP when the table is
        full and nothing could be evicted (the packet must be dropped)."""
        if pkt.notrack:
            pkt.ct = None
            pkt.ctinfo = IP_CT_UNTRACKED
            return NF_ACCEPT
        if pkt.ct is not None or pkt.ctinfo == IP_CT_UNTRACKED:
            return NF_ACCEPT  # seen before (looped back): keep it
        pkt.ctinfo = IP_CT_NONE
        pkt.ctdir = 0
        now = pkt.time
        self.now = now
        st = self.stat
        hook = pkt.hook
        if hook == "PREROUTING":
            prerouting = True
        elif hook:
            prerouting = hook.upper().startswith("PRE")
        else:
            prerouting = not pkt.local

        ihl = pkt.ihl
        tot_len = pkt.tot_len
        if pkt.frag_off & 0x1FFF or ihl < 20 or ihl > tot_len or len(pkt.data) < tot_len:
            st.invalid += 1  # a fragment conntrack could not reassemble
            return NF_ACCEPT
        if pkt.ct_template is None:
            zone, zdir = 0, ZONE_DIR_BOTH
        else:
            zone, zdir = self._zone(pkt)
        proto = pkt.proto
        if proto == IPPROTO_ICMP:
            r = icmp.icmp_error(self, pkt, prerouting, zone, zdir)
            if r == icmp.ICMP_ERROR:
                st.error += 1
                return NF_ACCEPT
            if r == icmp.ICMP_RELATED:
                return NF_ACCEPT

        while True:
            t = get_tuple(pkt.data, ihl, tot_len, proto, pkt.src, pkt.dst)
            if t is None:
                st.invalid += 1
                return NF_ACCEPT
            hit = self.table.find(t, zone, zdir, now)
            if hit is None:
                made = self._init_conntrack(t, pkt, zone, zdir, now)
                if isinstance(made, int):
                    if made == NF_DROP:  # table full
                        st.drop += 1
                        return NF_DROP
                    st.invalid += 1  # no reply tuple: unclassifiable
                    return NF_ACCEPT
                conn, direction = made, 0
            else:
                conn, direction = hit
            if direction:
                ctinfo = IP_CT_ESTABLISHED_REPLY
            elif conn.status & IPS_SEEN_REPLY:
                ctinfo = IP_CT_ESTABLISHED
            elif conn.status & IPS_EXPECTED:
                ctinfo = IP_CT_RELATED
            else:
                ctinfo = IP_CT_NEW
            handler = _HANDLERS.get(conn.orig.proto, generic.generic_packet)
            # someone listens for events: an UPDATE is due when the packet
            # changes the status bits or the TCP state (IPCT_REPLY/ASSURED/
            # PROTOINFO), told at confirm time with any mark change
            before = self.event_state(conn)
            ret = handler(self, conn, pkt, ctinfo, direction, prerouting)
            if ret == CT_REPEAT:
                continue
            return self.tracked(pkt, conn, ctinfo, direction, ret, before)

    def event_state(self, conn: Conn) -> tuple[int, Any] | None:
        """What an UPDATE event compares before and after a packet (None:
        nobody listens, or the entry is not in the table yet)."""
        if self.listeners and conn.status & IPS_CONFIRMED:
            return conn.status & _EVENT_STATUS, getattr(conn.proto_state, "state", None)
        return None

    def tracked(self, pkt: Packet, conn: Conn, ctinfo: int, direction: int, ret: int,
                before: tuple[int, Any] | None) -> int:
        """The rest of in_hook once the protocol tracker answered `ret` (not
        CT_REPEAT) for `conn`: the packet's ctinfo, the statistics, the
        pending UPDATE event (the fast path resumes here too)."""
        if ret != CT_ACCEPT:
            st = self.stat
            st.invalid += 1
            if ret == NF_DROP:
                st.drop += 1
                return NF_DROP
            return NF_ACCEPT
        if ctinfo == IP_CT_ESTABLISHED_REPLY:
            conn.status |= IPS_SEEN_REPLY
        pkt.ct = conn
        pkt.ctinfo = ctinfo
        pkt.ctdir = direction
        if before is not None and before != (conn.status & _EVENT_STATUS, getattr(conn.proto_state, "state", None)):
            conn.extra["ev_pending"] = True  # told by confirm (_deliver_events)
        return NF_ACCEPT

    @staticmethod
    def attach(nskb: Packet, pkt: Packet) -> None:
        """nf_conntrack_attach: a TCP RST the host sends in answer to `pkt`
        (REJECT) belongs to pkt's connection, in the other direction, as
        RELATED; OUTPUT's in_hook then leaves it alone and confirm does not
        insert anything for it."""
        conn = pkt.ct
        if conn is None:
            return
        nskb.ct = conn
        if pkt.ctinfo < IP_CT_IS_REPLY:
            nskb.ctinfo = IP_CT_RELATED + IP_CT_IS_REPLY
            nskb.ctdir = 1
        else:
            nskb.ctinfo = IP_CT_RELATED
            nskb.ctdir = 0

    def _zone(self, pkt: Packet) -> tuple[int, int]:
        """nf_ct_zone_tmpl: the zone of the CT template on the packet."""
        tmpl = pkt.ct_template
        if tmpl is None:
            return 0, ZONE_DIR_BOTH
        flags = getattr(tmpl, "flags", 0)
        zdir = ZONE_DIR_BOTH
        if flags & (_CT_ZONE_DIR_ORIG | _CT_ZONE_DIR_REPL):
            zdir = (ZONE_DIR_ORIG if flags & _CT_ZONE_DIR_ORIG else 0) | (
                ZONE_DIR_REPL if flags & _CT_ZONE_DIR_REPL else 0)
        zone = pkt.mark & 0xFFFF if flags & _CT_ZONE_MARK else getattr(tmpl, "zone", 0)
        return zone, zdir

    def _init_conntrack(self, t: Tuple, pkt: Packet, zone: int, zdir: int, now: float) -> Conn | int:
        """init_conntrack: NF_ACCEPT when the tuple has no reply
        (unclassifiable), NF_DROP when the table is full."""
        rt = invert(t)
        if rt is None:
            return NF_ACCEPT
        cfg = self.cfg
        if cfg.max and len(self.table.conns) + 1 > cfg.max:
            self.table.expire(now)
            if (len(self.table) + 1 > cfg.max
                    and not self.table.early_drop((t, zone_id(zone, zdir, 0)), now)):
                self._gc_early_drop = True
                return NF_DROP
        conn = Conn(orig=t, reply=rt, zone=zone, zone_dir=zdir, id=self._next_id, created_at=now)
        self._next_id += 1
        if cfg.acct:
            conn.acct = [0, 0, 0, 0]
        return conn

    def confirm(self, pkt: Packet) -> bool:
        """__nf_conntrack_confirm at the end of POSTROUTING / INPUT: insert the
        packet's new connection (with the reply tuple NAT gave it).  False:
        the packet must be dropped (a clash that could not be resolved)."""
        conn = pkt.ct
        if conn is None:
            return True
        if conn.status & IPS_CONFIRMED:
            if self.listeners:
                self._deliver_events(conn)
            return True
        if pkt.ctinfo >= IP_CT_IS_REPLY:
            return True  # REJECT's answer attached to the connection
        st = self.stat
        now = pkt.time
        if conn.status & IPS_DYING:
            st.insert_failed += 1
            return False
        tab = self.table
        keys = tab.keys(conn)
        ko, kr = keys
        h = tab.hash
        # (_live's test first: neither key taken, the common case)
        if ko in h or kr in h:
            clash = self._live(ko, now) or self._live(kr, now)
            if clash is not None:
                return self._resolve_clash(pkt, conn, clash, kr, now)
        conn.timeout_at += now
        if self.cfg.timestamp:
            conn.tstamp_start = now
        conn.status |= IPS_CONFIRMED
        tab.insert(conn, keys=keys)
        if self.listeners:
            conn.extra["ev_mark"] = conn.mark
            for listener in list(self.listeners):
                listener("NEW", conn, 0)
        return True

    def _deliver_events(self, conn: Conn) -> None:
        """nf_ct_deliver_cached_events: one UPDATE for what this packet (or
        an earlier one that went no further) changed, the mark included."""
        x = conn.extra
        if conn.status & IPS_DYING:
            return
        if x.pop("ev_pending", False) or conn.mark != x.get("ev_mark", conn.mark):
            x["ev_mark"] = conn.mark
            for listener in list(self.listeners):
                listener("UPDATE", conn, 0)

    def _live(self, key: tuple[Tuple, int], now: float) -> Conn | None:
        e = self.table.hash.get(key)
        if e is None:
            return None
        if e[0].timeout_at <= now:
            self.table.delete(e[0])
            return None
        return e[0]

    def _resolve_clash(self, pkt: Packet, loser: Conn, winner: Conn, kr: tuple[Tuple, int], now: float) -> bool:
        """nf_ct_resolve_clash: merge into an identical entry, or (UDP, GRE)
        insert the loser by its reply tuple only with a 1 s timeout."""
        st = self.stat
        if winner.orig.proto in _ALLOW_CLASH:
            if self._merge(pkt, loser, winner):
                return True
            other = self._live(kr, now)
            if other is not None:
                if self._merge(pkt, loser, other):
                    return True
            else:
                loser.timeout_at = now + 1.0
                loser.status |= IPS_FIXED_TIMEOUT | IPS_NAT_CLASH | IPS_CONFIRMED
                self.table.insert(loser, orig=False)
                st.clash_resolve += 1
                return True
        st.drop += 1
        st.insert_failed += 1
        return False

    def _merge(self, pkt: Packet, loser: Conn, winner: Conn) -> bool:
        same = (winner.orig == loser.orig and winner.reply == loser.reply
                and winner.zone == loser.zone and winner.zone_dir == loser.zone_dir)
        reverse = winner.orig == loser.reply and winner.reply == loser.orig and (
            zone_id(winner.zone, winner.zone_dir, 0) == zone_id(loser.zone, loser.zone_dir, 1)
            and zone_id(winner.zone, winner.zone_dir, 1) == zone_id(loser.zone, loser.zone_dir, 0))
        if not (same or reverse):
            return False
        if winner.acct is not None and loser.acct is not None:
            d = pkt.ctdir
            winner.acct[2 * d + 1] += loser.acct[2 * d + 1]
        pkt.ct = winner
        self.stat.clash_resolve += 1
        return True

    # ------------------------------------------------------------ the table
    def lookup(self, t: Tuple, zone: int = 0, now: float | None = None) -> tuple[Conn, int] | None:
        """The connection `t` belongs to and its direction (0 original)."""
        return self.table.find(t, zone, ZONE_DIR_BOTH, self.now if now is None else now)

    def tuple_taken(self, t: Tuple, ignored: Conn, now: float | None = None) -> bool:
        """For NAT's unique-tuple search (nf_conntrack_tuple_taken)."""
        return self.table.tuple_taken(t, ignored, self.now if now is None else now)

    def expire(self, now: float) -> int:
        """The garbage collector: drop timed-out entries (and, after the
        table was full, the early-drop candidates); how many went."""
        self.now = now
        n = self.table.expire(now)
        if self._gc_early_drop:
            self._gc_early_drop = False
            if self.cfg.max:
                n += self.table.gc_early_drop(self.cfg.max)
        return n

    def entries(self, now: float | None = None) -> list[Conn]:
        """The live connections, sorted by original tuple (as `pyfw
        conntrack -L` lists them); NAT clash losers are hidden as ctnetlink
        hides them."""
        when = self.now if now is None else now
        live = [c for c in self.table if c.timeout_at > when and not c.status & IPS_NAT_CLASH]
        live.sort(key=sort_key)
        return live

    def count(self) -> int:
        """nf_conntrack_count"""
        return len(self.table)

    def flush(self, portid: int = 0) -> int:
        """conntrack -F"""
        n = len(self.table)
        self.table.clear(portid)
        return n

    def delete(self, what: Conn | Tuple, zone: int = 0, portid: int = 0) -> bool:
        """conntrack -D of one connection, or the one a tuple (either
        direction) belongs to."""
        if isinstance(what, Conn):
            return self.table.delete(what, portid)
        hit = self.table.find(what, zone, ZONE_DIR_BOTH, self.now)
        return hit is not None and self.table.delete(hit[0], portid)

    def stats(self) -> dict[str, int]:
        """The conntrack -S counters, and `entries` (conntrack -C)."""
        d = self.stat.as_dict()
        d["entries"] = len(self.table)
        return d

    def format(self, now: float | None = None) -> str:
        """The whole `conntrack -L` listing (one line per entry)."""
        when = self.now if now is None else now
        return "".join(format_entry(c, when) + "\n" for c in self.entries(when))

    def format_stats(self) -> str:
        return format_stats(self.stat, len(self.table))


# the ctinfo names the traversal and tests print
CTINFO_NAMES = {IP_CT_NEW: "NEW", IP_CT_ESTABLISHED: "ESTABLISHED", IP_CT_RELATED: "RELATED",
                IP_CT_ESTABLISHED_REPLY: "ESTABLISHED_REPLY", IP_CT_RELATED + IP_CT_IS_REPLY: "RELATED_REPLY",
                IP_CT_UNTRACKED: "UNTRACKED", IP_CT_NONE: "INVALID"}
