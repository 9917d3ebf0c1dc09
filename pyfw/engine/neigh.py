"""The ARP neighbour cache of a Linux host (net/core/neighbour.c with
net/ipv4/arp.c), sans-IO: the caller passes the clock and sends the frames.

States and timers as Linux's defaults (net.ipv4.neigh.default.*):

    INCOMPLETE  resolving: a broadcast request now and every retrans_time
                (1 s), mcast_solicit (3) of them, then FAILED; the packets
                that wait meanwhile sit in a queue bounded in bytes
                (unres_qlen_bytes 212992, the oldest dropped first)
    REACHABLE   confirmed by a reply addressed to us; after reachable_time
                (random in [0.5, 1.5) x base_reachable_time 30 s) STALE, or
                DELAY when it was used within delay_first_probe_time
    STALE       learnt from a request or gone old: still used; the first use
                moves it to DELAY
    DELAY       delay_first_probe_time (5 s) for a confirmation, then PROBE
    PROBE       unicast requests every retrans_time, ucast_solicit (3) of
                them, then FAILED
    FAILED      the queued packets are given back (for ICMP host
                unreachable); the next packet starts over
    PERMANENT   a static entry (host.toml [[neighbor]])

Learning (arp_accept 0): a request for one of our addresses creates or
refreshes its sender's entry (STALE); any other ARP packet only updates an
entry that exists (REACHABLE for a unicast reply, else STALE), and a
different address replaces a valid one only after locktime (1 s).
"""

from __future__ import annotations

import heapq
import random
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyfw.wire import arp, ethernet

NUD_INCOMPLETE = "INCOMPLETE"
NUD_REACHABLE = "REACHABLE"
NUD_STALE = "STALE"
NUD_DELAY = "DELAY"
NUD_PROBE = "PROBE"
NUD_FAILED = "FAILED"
NUD_PERMANENT = "PERMANENT"

NUD_VALID = frozenset({NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT})
NUD_IN_TIMER = frozenset({NUD_INCOMPLETE, NUD_REACHABLE, NUD_DELAY, NUD_PROBE})

# SKB_TRUESIZE's overhead on top of the data (sk_buff + skb_shared_info,
# cache-aligned): 212992 / (1514 + 576) = 101 full frames, the unres_qlen
# Linux shows for the default byte limit.
SKB_OVERHEAD = 576

_I = struct.Struct("!I")


@dataclass(frozen=True)
class NeighParams:
    """net.ipv4.neigh.default.* (seconds where Linux has _ms or jiffies)."""

    base_reachable_time: float = 30.0
    delay_first_probe_time: float = 5.0
    retrans_time: float = 1.0
    ucast_solicit: int = 3
    mcast_solicit: int = 3
    app_solicit: int = 0
    mcast_resolicit: int = 0
    unres_qlen_bytes: int = 212992
    gc_stale_time: float = 60.0
    gc_interval: float = 15.0        # neigh_periodic_work: base_reachable_time / 2
    gc_thresh1: int = 128            # below it the periodic gc leaves the table alone
    gc_thresh3: int = 1024           # the table never holds more
    locktime: float = 1.0


@dataclass
class Neighbour:
    ip: int
    dev: str
    state: str
    mac: bytes = ethernet.ZERO
    probes: int = 0
    confirmed: float = 0.0
    used: float = 0.0
    updated: float = 0.0
    deadline: float | None = None
    queue: deque[tuple[bytes, Any]] = field(default_factory=deque)
    queue_bytes: int = 0
    hint_src: int = 0                # the first queued packet's source (arp_solicit's choice)


@dataclass
class Out:
    """A frame to send on `dev`; `opaque` is what the caller queued with
    the datagram (None for ARP)."""

    dev: str
    frame: bytes
    opaque: Any = None


class NeighTable:
    """arp_tbl for one host.  `host` gives mac(dev), is_local(addr),
    select_addr(dev, dst), interfaces and neighbors (static entries)."""

    def __init__(self, host: Any, params: NeighParams | None = None, rng: random.Random | None = None) -> None:
        self.host = host
        self.p = params or NeighParams()
        self.rng = rng or random.Random(0)
        self.entries: dict[tuple[str, int], Neighbour] = {}
        self.stats: dict[str, int] = {}
        self._heap: list[tuple[float, int, tuple[str, int]]] = []
        self._seq = 0
        self._next_gc = 0.0
        self._next_reach = 300.0
        self.reachable_time = self._random_reachable()
        for n in getattr(host, "neighbors", ()):
            self.entries[(n.dev, n.ip)] = Neighbour(n.ip, n.dev, NUD_PERMANENT, bytes(n.mac))

    # ------------------------------------------------------------ helpers
    def _random_reachable(self) -> float:
        """neigh_rand_reach_time: uniform in [base/2, 3*base/2)."""
        base = self.p.base_reachable_time
        return base / 2 + self.rng.random() * base

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    def _set_timer(self, n: Neighbour, when: float | None) -> None:
        n.deadline = when
        if when is not None:
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, (n.dev, n.ip)))

    def _frame(self, n: Neighbour, datagram: bytes, opaque: Any) -> Out:
        return Out(n.dev, n.mac + self.host.mac(n.dev) + b"\x08\x00" + datagram, opaque)

    def next_deadline(self) -> float | None:
        """When `tick` has work next (a timer or the periodic gc)."""
        while self._heap:
            when, _, key = self._heap[0]
            n = self.entries.get(key)
            if n is not None and n.deadline == when:
                return min(when, self._next_gc) if self._next_gc else when
            heapq.heappop(self._heap)
        return self._next_gc or None

    def lookup(self, dev: str, ip: int) -> Neighbour | None:
        return self.entries.get((dev, ip))

    def __iter__(self) -> Iterator[Neighbour]:
        return iter(list(self.entries.values()))

    # ------------------------------------------------------------ sending
    def output(self, dev: str, nexthop: int, datagram: bytes, now: float, opaque: Any = None) -> list[Out]:
        """neigh_resolve_output for an IPv4 datagram to the on-link
        `nexthop`: the frame itself when the address is known, else ARP
        requests (the datagram waits in the neighbour's queue)."""
        n = self.entries.get((dev, nexthop))
        if n is None:
            n = self._create(dev, nexthop, now)
            if n is None:
                self._count("table_full_drop")
                return []
        n.used = now
        st = n.state
        if st in (NUD_REACHABLE, NUD_PERMANENT, NUD_DELAY, NUD_PROBE):
            return [self._frame(n, datagram, opaque)]
        out: list[Out] = []
        if st == NUD_STALE:
            # __neigh_event_send: the first use of a stale entry delays a probe
            n.state = NUD_DELAY
            n.updated = now
            self._set_timer(n, now + self.p.delay_first_probe_time)
            return [self._frame(n, datagram, opaque)]
        if st != NUD_INCOMPLETE:  # new or FAILED: resolve (again)
            n.probes = self.p.ucast_solicit
            n.state = NUD_INCOMPLETE
            n.updated = now
            n.hint_src = _src_of(datagram)
            self._set_timer(n, now + max(self.p.retrans_time, 0.01))
            out.append(self._solicit(n))
        size = len(datagram) + 14 + SKB_OVERHEAD
        while n.queue and n.queue_bytes + size > self.p.unres_qlen_bytes:
            old, _ = n.queue.popleft()
            n.queue_bytes -= len(old) + 14 + SKB_OVERHEAD
            self._count("unresolved_discards")
        if size <= self.p.unres_qlen_bytes:
            if not n.queue:
                n.hint_src = _src_of(datagram)
            n.queue.append((datagram, opaque))
            n.queue_bytes += size
        return out

    def _create(self, dev: str, ip: int, now: float) -> Neighbour | None:
        if len(self.entries) >= self.p.gc_thresh3:
            self._forced_gc(now)
            if len(self.entries) >= self.p.gc_thresh3:
                return None
        n = Neighbour(ip, dev, "NONE", updated=now, used=now)
        # a new entry is not confirmed (neigh_alloc: confirmed in the past)
        n.confirmed = now - 2 * self.p.base_reachable_time
        self.entries[(dev, ip)] = n
        return n

    def _solicit(self, n: Neighbour) -> Out:
        """neigh_probe -> arp_solicit: unicast to the known address while
        probes < ucast_solicit, else broadcast; the sender address is the
        waiting packet's source when it is ours (arp_announce 0), else the
        device's address for the target."""
        host = self.host
        src = n.hint_src if n.hint_src and host.is_local(n.hint_src) else host.select_addr(n.dev, n.ip)
        mac = host.mac(n.dev)
        if n.probes < self.p.ucast_solicit and n.mac != ethernet.ZERO:
            payload = arp.build(arp.ARPOP_REQUEST, mac, src, ethernet.ZERO, n.ip)
            frame = bytes(ethernet.build(n.mac, mac, ethernet.ETH_P_ARP, payload))
            self._count("ucast_probes")
        else:
            frame = bytes(arp.build_request(mac, src, n.ip))
            self._count("mcast_probes")
        n.probes += 1
        return Out(n.dev, frame)

    def _max_probes(self, n: Neighbour) -> int:
        p = self.p
        extra = p.mcast_resolicit if n.state == NUD_PROBE else p.mcast_solicit
        return p.ucast_solicit + p.app_solicit + extra

    # ------------------------------------------------------------ timers
    def tick(self, now: float) -> tuple[list[Out], list[tuple[bytes, Any]]]:
        """Run the timers due at `now`: (frames to send, datagrams whose
        neighbour failed -- the caller answers them with ICMP host
        unreachable as arp_error_report does)."""
        out: list[Out] = []
        failed: list[tuple[bytes, Any]] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, key = heapq.heappop(self._heap)
            n = self.entries.get(key)
            if n is None or n.deadline != when:
                continue
            n.deadline = None
            self._timer(n, now, out, failed)
        if self._next_gc and now >= self._next_gc:
            self._periodic_gc(now)
        if not self._next_gc:
            self._next_gc = now + self.p.gc_interval
        return out, failed

    def _timer(self, n: Neighbour, now: float, out: list[Out], failed: list[tuple[bytes, Any]]) -> None:
        """neigh_timer_handler."""
        p = self.p
        nxt: float | None = None
        if n.state == NUD_REACHABLE:
            if now <= n.confirmed + self.reachable_time:
                nxt = n.confirmed + self.reachable_time
            elif now <= n.used + p.delay_first_probe_time:
                n.state, n.updated = NUD_DELAY, now
                nxt = now + p.delay_first_probe_time
            else:
                n.state, n.updated = NUD_STALE, now
        elif n.state == NUD_DELAY:
            if now <= n.confirmed + p.delay_first_probe_time:
                n.state, n.updated = NUD_REACHABLE, now
                nxt = n.confirmed + self.reachable_time
            else:
                n.state, n.updated, n.probes = NUD_PROBE, now, 0
                nxt = now + max(p.retrans_time, 0.01)
        elif n.state in (NUD_INCOMPLETE, NUD_PROBE):
            nxt = now + max(p.retrans_time, 0.01)
        else:
            return
        if n.state in (NUD_INCOMPLETE, NUD_PROBE) and n.probes >= self._max_probes(n):
            n.state, n.updated = NUD_FAILED, now
            self._count("res_failed")
            while n.queue:
                failed.append(n.queue.popleft())
            n.queue_bytes = 0
            return
        self._set_timer(n, nxt)
        if n.state in (NUD_INCOMPLETE, NUD_PROBE):
            out.append(self._solicit(n))

    def _periodic_gc(self, now: float) -> None:
        """neigh_periodic_work: drop FAILED entries and those unused for
        gc_stale_time (nothing holds them in this model); a new
        reachable_time every 300 s."""
        self._next_gc = now + self.p.gc_interval
        if now >= self._next_reach:
            self._next_reach = now + 300.0
            self.reachable_time = self._random_reachable()
        if len(self.entries) < self.p.gc_thresh1:
            return
        for key, n in list(self.entries.items()):
            if n.state in (NUD_PERMANENT, NUD_INCOMPLETE) or n.deadline is not None:
                continue
            if n.state == NUD_FAILED or now > n.used + self.p.gc_stale_time:
                del self.entries[key]
                self._count("periodic_gc_runs")

    def _forced_gc(self, now: float) -> None:
        """neigh_forced_gc at gc_thresh3: entries that are not permanent,
        not resolving and not in a timer (STALE, FAILED) go, oldest first."""
        victims = sorted((n.updated, key) for key, n in self.entries.items()
                         if n.state in (NUD_STALE, NUD_FAILED, "NONE"))
        for _, key in victims[: max(1, len(victims) // 2)]:
            del self.entries[key]
            self._count("forced_gc_runs")

    # ------------------------------------------------------------ receiving
    def arp_input(self, frame: bytes, dev: str, now: float) -> list[Out]:
        """arp_process for a frame received on `dev`: the reply to a
        request for one of our addresses, the learnt or updated entry, and
        the packets that waited for it."""
        host = self.host
        if len(frame) < ethernet.HLEN + arp.LEN:
            self._count("arp_malformed")
            return []
        payload = bytes(frame[ethernet.HLEN:ethernet.HLEN + arp.LEN])
        my_mac = host.mac(dev)
        ptype = ethernet.pkt_type(frame[0:6], my_mac)
        if arp.validate(payload, ptype) is not None:
            self._count("arp_ignored")
            return []
        op = payload[arp.OP] << 8 | payload[arp.OP + 1]
        sha = payload[arp.SHA:arp.SHA + 6]
        sip = int(_I.unpack_from(payload, arp.SPA)[0])
        tip = int(_I.unpack_from(payload, arp.TPA)[0])
        if sha[0] & 1 or sha == ethernet.ZERO:
            self._count("arp_ignored")
            return []
        out: list[Out] = []
        reply = arp.answer(frame, host, dev)
        if reply is not None:
            if sip == 0:
                return [Out(dev, reply)]  # a duplicate-address probe: answered, nothing learnt
            n = self.entries.get((dev, sip)) or self._create(dev, sip, now)
            if n is None:
                self._count("table_full_drop")
                return []
            # neigh_event_ns: STALE with the sender's address (override)
            out.append(Out(dev, reply))
            out.extend(self._update(n, sha, NUD_STALE, True, now))
            return out
        n = self.entries.get((dev, sip))
        if n is None:
            return []
        is_garp = tip == sip
        state = NUD_REACHABLE if op == arp.ARPOP_REPLY and ptype == ethernet.PACKET_HOST else NUD_STALE
        override = now > n.updated + self.p.locktime or is_garp
        return self._update(n, sha, state, override, now)

    def _update(self, n: Neighbour, mac: bytes, new: str, override: bool, now: float) -> list[Out]:
        """neigh_update with an address from ARP."""
        old = n.state
        if old == NUD_PERMANENT:
            return []
        if new == NUD_REACHABLE:
            n.confirmed = now
        if old in NUD_VALID:
            if mac != n.mac and not override:
                return []
            if mac == n.mac and new == NUD_STALE:
                new = old
        if new != old or mac != n.mac:
            n.updated = now
        if new != old:
            if new == NUD_PROBE:
                n.probes = 0
            self._set_timer(n, now + self.reachable_time if new == NUD_REACHABLE else
                            (now if new in NUD_IN_TIMER else None))
            n.state = new
        if mac != n.mac:
            n.mac = mac
            if new != NUD_REACHABLE:
                n.confirmed = now - 2 * self.p.base_reachable_time
        if old in NUD_VALID or new not in NUD_VALID:
            return []
        # it became valid: send what waited for it
        out = [self._frame(n, d, o) for d, o in n.queue]
        n.queue.clear()
        n.queue_bytes = 0
        return out

    # ------------------------------------------------------------ announcing
    def announce(self) -> list[Out]:
        """Gratuitous ARP (arp_notify's request: sender = target = the
        address) for every address of every Ethernet interface."""
        out = []
        for iface in self.host.interfaces.values():
            if iface.name == "lo":
                continue
            for ifa in iface.ifaddrs:
                out.append(Out(iface.name, bytes(arp.build_request(iface.mac, ifa.local, ifa.local))))
        return out


def _src_of(datagram: bytes) -> int:
    return int(_I.unpack_from(datagram, 12)[0]) if len(datagram) >= 20 else 0
