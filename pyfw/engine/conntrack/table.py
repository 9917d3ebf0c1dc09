"""The connection table (nf_conntrack_core.c's hash): both tuples of every
confirmed connection are keys, so a packet finds its connection from
either direction; expiry on the engine clock; nf_conntrack_max with the
kernel's early drop; the statistics `conntrack -S` shows; tuple extraction
(nf_ct_get_tuple) and the `conntrack -L` text.

A connection is inserted only when confirmed (the last hook of the
packet that created it), as the kernel does: until then it hangs off the
packet alone, and its timeout is relative (made absolute at confirm time).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Final

from pyfw.engine.api import IPS_ASSURED, IPS_CONFIRMED, IPS_DYING, IPS_SEEN_REPLY
from pyfw.engine.conntrack.conn import Conn, Tuple, new_tuple
from pyfw.engine.conntrack.timeouts import (
    TCP_CONNTRACK_CLOSE,
    TCP_CONNTRACK_CLOSE_WAIT,
    TCP_CONNTRACK_FIN_WAIT,
    TCP_CONNTRACK_LAST_ACK,
    TCP_CONNTRACK_TIME_WAIT,
)

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_GRE: Final = 47
IPPROTO_SCTP: Final = 132
IPPROTO_UDPLITE: Final = 136

# What a protocol tracker returns (the kernel's verdict, negated for invalid).
CT_ACCEPT: Final = 1       # NF_ACCEPT: the packet belongs to the connection
CT_DROP: Final = 0         # NF_DROP
CT_INVALID: Final = -1     # -NF_ACCEPT: not part of the connection: INVALID
CT_REPEAT: Final = -4      # -NF_REPEAT: connection killed, look up again (TCP reopen)

# status bits beyond pyfw.engine.api's
IPS_NAT_CLASH: Final = 1 << 12  # shares the UNTRACKED bit, as the kernel does
IPS_OFFLOAD: Final = 1 << 14
IPS_HW_OFFLOAD: Final = 1 << 15

# nf_conntrack_zone dir bits
ZONE_DIR_ORIG: Final = 1
ZONE_DIR_REPL: Final = 2
ZONE_DIR_BOTH: Final = 3

NF_CT_EVICTION_RANGE: Final = 8

_PORTS = struct.Struct("!HH")
_M32: Final = 0xFFFFFFFF
_M16: Final = 0xFFFF

# icmp invmap: request type -> reply type (both ways)
ICMP_INVMAP: dict[int, int] = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}

PROTO_NAMES: dict[int, str] = {
    IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_UDPLITE: "udplite", IPPROTO_ICMP: "icmp",
    58: "icmpv6", IPPROTO_SCTP: "sctp", IPPROTO_GRE: "gre", 33: "dccp",
}


def zone_id(zone: int, zone_dir: int, direction: int) -> int:
    """nf_ct_zone_id: a directional zone applies to its direction only."""
    return zone if zone_dir & (1 << direction) else 0


def get_tuple(data: bytearray | bytes, off: int, end: int, proto: int, src: int, dst: int) -> Tuple | None:
    """nf_ct_get_tuple for the layer-4 header at `off` (datagram ends at
    `end`): None when the header is too short for the tuple."""
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP or proto == IPPROTO_UDPLITE or proto == IPPROTO_SCTP:
        if end - off < 4:
            return None
        sport, dport = _PORTS.unpack_from(data, off)
        return new_tuple(Tuple, (src, dst, proto, sport, dport))
    if proto == IPPROTO_ICMP:
        if end - off < 8:  # sizeof(struct icmphdr)
            return None
        return Tuple(src, dst, proto, data[off + 4] << 8 | data[off + 5], data[off] << 8 | data[off + 1])
    if proto == IPPROTO_GRE:
        if end - off < 4 or (data[off + 1] & 7) != 1:
            return Tuple(src, dst, proto, 0, 0)  # behave like the generic tracker
        if end - off < 8:
            return Tuple(src, dst, proto, 0, 0)
        if data[off + 2] << 8 | data[off + 3] != 0x880B:  # GRE_PROTO_PPP
            return None
        # PPTP: the call id is the destination key; without the pptp helper's
        # keymap the source key is 0
        return Tuple(src, dst, proto, 0, data[off + 6] << 8 | data[off + 7])
    return Tuple(src, dst, proto, 0, 0)


def invert(t: Tuple) -> Tuple | None:
    """nf_ct_invert_tuple: None for an ICMP type that has no reply type."""
    if t.proto == IPPROTO_ICMP:
        rtype = ICMP_INVMAP.get(t.dport >> 8)
        if rtype is None:
            return None
        return Tuple(t.dst, t.src, t.proto, t.sport, rtype << 8 | (t.dport & 0xFF))
    return new_tuple(Tuple, (t.dst, t.src, t.proto, t.dport, t.sport))


def checksum_ok(data: bytearray | bytes, end: int, src: int, dst: int, ihl: int, proto: int) -> bool:
    """nf_ip_checksum on a CHECKSUM_NONE skb: the one's complement sum from
    the IP header to the end of the datagram (a valid IP header adds nothing)
    plus, for TCP and UDP, the pseudo-header with the IP payload length.
    Computed as a residue mod 0xFFFF of one big integer (2**16 == 1)."""
    v = int.from_bytes(data if len(data) == end else data[:end], "big")
    if end & 1:
        v <<= 8
    if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        v += (src >> 16) + (src & _M16) + (dst >> 16) + (dst & _M16) + proto + (end - ihl)
    return v != 0 and v % _M16 == 0


@dataclass
class Stats:
    """struct ip_conntrack_stat (one CPU)."""

    found: int = 0
    invalid: int = 0
    insert: int = 0
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    error: int = 0
    search_restart: int = 0
    clash_resolve: int = 0
    chaintoolong: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def tcp_can_early_drop(conn: Conn) -> bool:
    st = conn.proto_state
    return st is not None and st.state in (TCP_CONNTRACK_FIN_WAIT, TCP_CONNTRACK_LAST_ACK, TCP_CONNTRACK_TIME_WAIT,
                                           TCP_CONNTRACK_CLOSE, TCP_CONNTRACK_CLOSE_WAIT)


Key = tuple[Tuple, int]
# an event subscriber: (event "NEW" | "UPDATE" | "DESTROY", the entry, portid)
Listener = Callable[[str, Conn, int], None]


class Table:
    """The hash of confirmed connections, keyed by (tuple, zone id)."""

    def __init__(self, buckets: int, stats: Stats, listeners: list[Listener] | None = None) -> None:
        self.hash: dict[Key, tuple[Conn, int]] = {}
        # ctnetlink's event subscribers (pyfw conntrack -E): called with
        # ("DESTROY", conn, portid) when a confirmed entry goes; usually empty
        self.listeners: list[Listener] = [] if listeners is None else listeners
        self.conns: dict[int, Conn] = {}      # id -> conn, confirmed ones
        self.size = max(1, buckets)
        self.stat = stats
        # bucket index for early drop: built the first time the table fills
        self._buckets: dict[int, list[tuple[Conn, int]]] | None = None

    def __len__(self) -> int:
        return len(self.conns)

    # ------------------------------------------------------------ keys
    @staticmethod
    def keys(conn: Conn) -> tuple[Key, Key]:
        if not conn.zone:
            return (conn.orig, 0), (conn.reply, 0)
        return ((conn.orig, zone_id(conn.zone, conn.zone_dir, 0)),
                (conn.reply, zone_id(conn.zone, conn.zone_dir, 1)))

    def bucket(self, key: Key) -> int:
        """reciprocal_scale(hash, size) of a stable hash (the kernel's is a
        random siphash; Python's hash of a tuple of ints is stable)."""
        return ((hash(key) & _M32) * self.size) >> 32

    # ------------------------------------------------------------ lookup
    def find(self, t: Tuple, zone: int, zdir: int, now: float) -> tuple[Conn, int] | None:
        """nf_conntrack_find_get: the connection and the direction `t` is
        in; an expired entry met on the way is removed."""
        if not zone:
            # zone 0: one key either way, and an entry stored under zone id 0
            # for its direction passes _find_key's zone check
            e = self.hash.get((t, 0))
            if e is None:
                return None
            if e[0].timeout_at <= now:
                self.delete(e[0])
                return None
            return e
        zid = zone_id(zone, zdir, 0)
        hit = self._find_key(t, zid, zone, zdir, now)
        if hit is None:
            rid = zone_id(zone, zdir, 1)
            if rid != zid:
                hit = self._find_key(t, rid, zone, zdir, now)
        return hit

    def _find_key(self, t: Tuple, zid: int, zone: int, zdir: int, now: float) -> tuple[Conn, int] | None:
        e = self.hash.get((t, zid))
        if e is None:
            return None
        conn, d = e
        if conn.timeout_at <= now:
            self.delete(conn)
            return None
        if zone_id(conn.zone, conn.zone_dir, d) != zone_id(zone, zdir, d):
            return None
        return e

    def tuple_taken(self, t: Tuple, ignored: Conn, now: float) -> bool:
        """nf_conntrack_tuple_taken: is `t` (a reply tuple NAT wants to use)
        already some other connection's?  Identical original tuples do not
        count (the clash is resolved at confirm time)."""
        zid = zone_id(ignored.zone, ignored.zone_dir, 1)
        e = self.hash.get((t, zid))
        if e is None:
            return False
        conn, _d = e
        if conn is ignored:
            return False
        if conn.timeout_at <= now:
            self.delete(conn)
            return False
        if conn.orig == ignored.orig and zone_id(conn.zone, conn.zone_dir, 0) == zone_id(
                ignored.zone, ignored.zone_dir, 0):
            return False
        self.stat.found += 1
        return True

    # ------------------------------------------------------------ changes
    def insert(self, conn: Conn, orig: bool = True, keys: tuple[Key, Key] | None = None) -> None:
        """Both tuples (or, for a NAT clash loser, the reply tuple only);
        `keys`: the connection's keys when the caller has them already."""
        ko, kr = self.keys(conn) if keys is None else keys
        if orig:
            self.hash[ko] = (conn, 0)
        self.hash[kr] = (conn, 1)
        self.conns[conn.id] = conn
        b = self._buckets
        if b is not None:
            if orig:
                b.setdefault(self.bucket(ko), []).append((conn, 0))
            b.setdefault(self.bucket(kr), []).append((conn, 1))

    def delete(self, conn: Conn, portid: int = 0) -> bool:
        """nf_ct_delete: unlink both tuples; False when already gone.
        `portid` names who asked (0: the kernel itself, else a user's
        pyfw conntrack -D/-F), as the DESTROY event reports it."""
        if conn.status & IPS_DYING:
            return False
        conn.status |= IPS_DYING
        if self.conns.pop(conn.id, None) is None:
            return True  # never confirmed: nothing to unlink
        if self.listeners:
            for listener in list(self.listeners):
                listener("DESTROY", conn, portid)
        for d, k in enumerate(self.keys(conn)):
            e = self.hash.get(k)
            if e is not None and e[0] is conn:
                del self.hash[k]
                b = self._buckets
                if b is not None:
                    chain = b.get(self.bucket(k))
                    if chain is not None:
                        try:
                            chain.remove((conn, d))
                        except ValueError:
                            pass
                        if not chain:
                            del b[self.bucket(k)]
        return True

    def clear(self, portid: int = 0) -> None:
        for conn in list(self.conns.values()):
            self.delete(conn, portid)

    def expire(self, now: float) -> int:
        """Remove every entry whose timeout has passed (the gc worker)."""
        dead = [c for c in self.conns.values() if c.timeout_at <= now]
        for c in dead:
            self.delete(c)
        return len(dead)

    # ------------------------------------------------------------ early drop
    def _index(self) -> dict[int, list[tuple[Conn, int]]]:
        b = self._buckets
        if b is None:
            b = {}
            for k, e in self.hash.items():
                b.setdefault(self.bucket(k), []).append(e)
            self._buckets = b
        return b

    def early_drop(self, key: Key, now: float) -> bool:
        """early_drop(): from the new tuple's bucket on, up to 8 buckets,
        delete every confirmed connection that is not ASSURED in the first
        bucket that has any; expired ones met are reaped without counting."""
        b = self._index()
        start = self.bucket(key)
        for i in range(NF_CT_EVICTION_RANGE):
            chain = b.get((start + i) % self.size)
            if not chain:
                continue
            drops = 0
            for conn, _d in list(reversed(chain)):  # newest first, as hlist_add_head
                if conn.status & IPS_DYING:
                    continue
                if conn.timeout_at <= now:
                    self.delete(conn)
                    continue
                if conn.status & IPS_ASSURED:
                    continue
                if conn.status & IPS_CONFIRMED and self.delete(conn):
                    drops += 1
            if drops:
                self.stat.early_drop += drops
                return True
        return False

    def gc_early_drop(self, maximum: int) -> int:
        """The gc worker after a failed early drop: while the table is at
        95% of nf_conntrack_max, kill entries that are not ASSURED or TCP
        ones that are closing."""
        max95 = maximum // 100 * 95
        killed = 0
        for conn in list(self.conns.values()):
            if len(self.conns) < max95:
                break
            if conn.status & IPS_DYING:
                continue
            if not conn.status & IPS_ASSURED or (conn.orig.proto == IPPROTO_TCP and tcp_can_early_drop(conn)):
                self.delete(conn)
                killed += 1
        return killed

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self.conns.values()))


# ---------------------------------------------------------------- text
def _ip(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def _tuple_text(t: Tuple) -> str:
    s = f"src={_ip(t.src)} dst={_ip(t.dst)} "
    p = t.proto
    if p in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, 33):
        s += f"sport={t.sport} dport={t.dport} "
    elif p == IPPROTO_GRE:
        s += f"srckey=0x{t.sport:x} dstkey=0x{t.dport:x} "
    elif p == IPPROTO_ICMP:
        s += f"type={t.dport >> 8} code={t.dport & 0xFF} id={t.sport} "
    return s


def format_entry(conn: Conn, now: float) -> str:
    """One line of `conntrack -L` (libnetfilter_conntrack's default text)."""
    return _entry_text(conn, now, None)


# ctnetlink event names as `conntrack -E` prints them (right-aligned in 9)
EVENT_TAGS = {"NEW": "    [NEW] ", "UPDATE": " [UPDATE] ", "DESTROY": "[DESTROY] "}


def format_event(kind: str, conn: Conn, now: float, portid: int = 0) -> str:
    """One line of `conntrack -E`: an event message carries no use count,
    the mark only when set, and a DESTROY no timeout once it ran out; a
    user's delete says so ([USERSPACE] portid=...)."""
    return EVENT_TAGS[kind] + _entry_text(conn, now, kind, portid)


def _entry_text(conn: Conn, now: float, event: str | None, portid: int = 0) -> str:
    from pyfw.engine.conntrack.tcp import STATE_NAMES

    p = conn.orig.proto
    s = f"{PROTO_NAMES.get(p, 'unknown'):<8} {p} "
    if not conn.status & IPS_OFFLOAD:
        left = conn.remaining(now)
        if left or event != "DESTROY":
            s += f"{left} "
    if p == IPPROTO_TCP and conn.proto_state is not None:
        s += STATE_NAMES[conn.proto_state.state] + " "
    s += _tuple_text(conn.orig)
    if conn.zone_dir == ZONE_DIR_ORIG and conn.zone:
        s += f"zone-orig={conn.zone} "
    acct = conn.acct
    if acct is not None:
        s += f"packets={acct[0]} bytes={acct[1]} "
    if not conn.status & IPS_SEEN_REPLY:
        s += "[UNREPLIED] "
    s += _tuple_text(conn.reply)
    if conn.zone_dir == ZONE_DIR_REPL and conn.zone:
        s += f"zone-reply={conn.zone} "
    if acct is not None:
        s += f"packets={acct[2]} bytes={acct[3]} "
    if conn.status & IPS_HW_OFFLOAD:
        s += "[HW_OFFLOAD] "
    elif conn.status & IPS_OFFLOAD:
        s += "[OFFLOAD] "
    elif conn.status & IPS_ASSURED:
        s += "[ASSURED] "
    if event is None or conn.mark:
        s += f"mark={conn.mark} "
    if conn.zone_dir == ZONE_DIR_BOTH and conn.zone:
        s += f"zone={conn.zone} "
    if conn.tstamp_start is not None:
        s += f"delta-time={max(0, int(now - conn.tstamp_start))} "
    if conn.helper:
        s += f"helper={conn.helper} "
    if event is None:
        return s + "use=1"
    if portid:
        s += f"[USERSPACE] portid={portid} "
    return s[:-1]


def sort_key(conn: Conn) -> tuple[int, int, int, int, int, int]:
    o = conn.orig
    return (o.proto, o.src, o.dst, o.sport, o.dport, conn.zone)


def format_stats(stat: Stats, count: int) -> str:
    """`conntrack -S` (one CPU)."""
    del count
    d = stat.as_dict()
    body = " ".join(f"{k}={d[k]}" for k in ("found", "invalid", "insert", "insert_failed", "drop", "early_drop",
                                             "error", "search_restart", "clash_resolve", "chaintoolong"))
    return f"cpu={0:<4}\t{body} "
