"""IPv4 fragmentation and reassembly as Linux does them.

Fragmenting (net/ipv4/ip_output.c): `fragment` is ip_do_fragment.  The
slow path cuts the data into pieces of (MTU - header) rounded down to a
multiple of 8, every fragment a copy of the original header (ID, TTL, TOS
kept) with its own tot_len, offset and MF, and DF only when the datagram
was reassembled from DF fragments (IPSKB_FRAG_PMTU); options without the
"copied" flag become NOOPs from the second fragment on
(ip_options_fragment).  A datagram that conntrack reassembled keeps its
fragments (frag_list) and is sent again in those same pieces when they
fit (the fast path: no DF on any fragment), else sliced by the slow path
with MTU = min(egress MTU, largest fragment received) (IPCB frag_max_size).
`exceeds_mtu` is ip_forward's ip_exceeds_mtu, `needs_fragment` the test
of __ip_finish_output.

Reassembling (net/ipv4/ip_fragment.c, inet_fragment.c) for nf_defrag_ipv4
in front of conntrack, or for local delivery: `Defrag`.  Queues are keyed
by (src, dst, id, protocol, user); a queue lives `ipfrag_time` (30 s)
from its first fragment, never extended (except when reset for being too
far behind: ipfrag_max_dist, 64 fragments from the same source).  An
overlap (RFC 5722) or a zero-length or inconsistent last fragment kills
the whole queue; an exact duplicate is just dropped.  New fragments are
refused while the memory in use is above ipfrag_high_thresh (4 MiB).
The reassembled datagram takes the header of the offset-0 fragment, with
tot_len, ECN (RFC 3168 table) and DF (set only when the largest fragment
had DF) fixed.  Time is always passed in.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from pyfw.wire import ipv4
from pyfw.wire.checksum import Buffer, checksum

_H = struct.Struct("!H")
_I = struct.Struct("!I")

# enum ip_defrag_users
IP_DEFRAG_LOCAL_DELIVER: Final = 0
IP_DEFRAG_CALL_RA_CHAIN: Final = 1
IP_DEFRAG_CONNTRACK_IN: Final = 2
IP_DEFRAG_CONNTRACK_OUT = IP_DEFRAG_CONNTRACK_IN + 0xFFFF + 1
IP_DEFRAG_CONNTRACK_BRIDGE_IN = IP_DEFRAG_CONNTRACK_OUT + 0xFFFF + 1

IPFRAG_TIME = 30.0
IPFRAG_HIGH_THRESH: Final = 4 * 1024 * 1024
IPFRAG_LOW_THRESH: Final = 3 * 1024 * 1024
IPFRAG_MAX_DIST: Final = 64
# Memory accounting: skb truesize of a received fragment and the queue
# struct, as the kernel's comment counts them (1500 bytes -> 2944, ipq 200).
# The real truesize depends on the driver; this is the documented estimate.
IPQ_SIZE: Final = 200


def truesize(frag_len: int) -> int:
    """Estimated skb truesize of a received fragment of `frag_len` bytes."""
    return 2944 * max(1, -(-frag_len // 1500))


# ------------------------------------------------------------------ output
def exceeds_mtu(length: int, df: bool, mtu: int, frag_max_size: int = 0, ignore_df: bool = False) -> bool:
    """ip_exceeds_mtu: a forwarded datagram that must be answered with
    "fragmentation needed" instead of being sent."""
    if length <= mtu:
        return False
    if not df:
        return False
    if frag_max_size > mtu:
        return True
    return not ignore_df


def needs_fragment(length: int, mtu: int, frag_max_size: int = 0) -> bool:
    """__ip_finish_output: fragment when too big, and always for a datagram
    that was reassembled (frag_max_size set)."""
    return length > mtu or frag_max_size != 0


def fragment(datagram: Buffer, mtu: int, *, frag_max_size: int = 0, pmtu_df: bool = False,
             pieces: list[int] | None = None) -> list[bytearray]:
    """ip_do_fragment: the fragments of `datagram` (IP header first) for an
    egress `mtu`.  `frag_max_size`/`pmtu_df`/`pieces` come from a
    `Reassembled` datagram (pieces: its fragments' data lengths, for the
    frag_list fast path).  A datagram that fits is returned as is (one
    element) only when nothing asks for fragmentation."""
    d = bytes(datagram)
    hlen = (d[0] & 0x0F) * 4
    if frag_max_size and frag_max_size < mtu:
        mtu = frag_max_size
    space = mtu - hlen
    total = len(d) - hlen
    if space < 8:
        return []
    if pieces and _fast_ok(d, hlen, space, pieces, total):
        return _fast(d, hlen, pieces)
    return _slow(d, hlen, space, pmtu_df)


def _fast_ok(d: bytes, hlen: int, space: int, pieces: list[int], total: int) -> bool:
    if sum(pieces) != total or not pieces:
        return False
    if ipv4.is_fragment(d):
        return False
    first = pieces[0]
    if first > space or first & 7:
        return False
    last = len(pieces) - 1
    for i, n in enumerate(pieces[1:], 1):
        if n > space or (n & 7 and i != last):
            return False
    return True


def _header(base: bytes, hlen: int, tot: int, frag_off: int) -> bytearray:
    h = bytearray(base[:hlen])
    _H.pack_into(h, 2, tot)
    _H.pack_into(h, 6, frag_off)
    h[10] = h[11] = 0
    _H.pack_into(h, 10, checksum(h))
    return h


def _later_header(d: bytes, hlen: int) -> bytes:
    """The header that the second and later fragments copy."""
    if hlen == ipv4.HLEN:
        return d[:hlen]
    return d[:ipv4.HLEN] + bytes(ipv4.options_fragment(d[ipv4.HLEN:hlen]))


def _fast(d: bytes, hlen: int, pieces: list[int]) -> list[bytearray]:
    out = []
    later = _later_header(d, hlen)
    pos = hlen
    offset = 0
    for i, n in enumerate(pieces):
        mf = ipv4.IP_MF if i < len(pieces) - 1 else 0
        h = _header(d if i == 0 else later, hlen, hlen + n, (offset >> 3) | mf)
        h += d[pos:pos + n]
        out.append(h)
        pos += n
        offset += n
    return out


def _slow(d: bytes, hlen: int, space: int, pmtu_df: bool) -> list[bytearray]:
    fo = d[6] << 8 | d[7]
    offset = (fo & ipv4.IP_OFFSET) << 3
    not_last = fo & ipv4.IP_MF
    left = len(d) - hlen
    ptr = hlen
    later = _later_header(d, hlen)
    out = []
    first = True
    while left > 0:
        n = min(left, space)
        if n < left:
            n &= ~7
        left -= n
        flags = offset >> 3
        if pmtu_df:
            flags |= ipv4.IP_DF
        if left > 0 or not_last:
            flags |= ipv4.IP_MF
        h = _header(d if first else later, hlen, hlen + n, flags)
        h += d[ptr:ptr + n]
        out.append(h)
        ptr += n
        offset += n
        first = False
    return out


# ------------------------------------------------------------------ input
@dataclass
class Reassembled:
    """A datagram rebuilt from its fragments."""

    datagram: bytearray
    frag_max_size: int          # IPCB(skb)->frag_max_size
    pmtu_df: bool               # IPSKB_FRAG_PMTU: refragment with DF
    pieces: list[int]           # data length of each fragment, in order
    iif: str = ""               # interface of the last fragment queued


@dataclass
class _Frag:
    offset: int
    data: bytes
    header: bytes


@dataclass
class _Queue:
    key: tuple[int, int, int, int, int]
    expires: float
    frags: list[_Frag] = field(default_factory=list)   # sorted by offset
    runs: list[list[int]] = field(default_factory=list)  # [start, length] of contiguous runs
    tail_end: int = 0            # end of the last fragment of the last run
    length: int = 0              # q.len: end of the datagram as known
    meat: int = 0
    first_in: bool = False
    last_in: bool = False
    complete: bool = False
    max_size: int = 0
    max_df_size: int = 0
    ecn: int = 0
    rid: int = 0
    mem: int = 0
    iif: str = ""


@dataclass
class Expired:
    """A queue that timed out: `head` is its offset-0 fragment (None when
    that never came), which the kernel answers with ICMP time exceeded
    (fragment reassembly) when the datagram was for this host."""

    key: tuple[int, int, int, int, int]
    head: bytearray | None
    iif: str
    user: int


# ECN: 1 << (tos & 3) per fragment, ORed; the table says drop (None) or
# what to OR into the rebuilt header's TOS.
_ECN_NOT_ECT, _ECN_ECT_1, _ECN_ECT_0, _ECN_CE = 1, 2, 4, 8


def _ecn_table(bits: int) -> int | None:
    if bits & _ECN_NOT_ECT and bits & (_ECN_ECT_0 | _ECN_ECT_1 | _ECN_CE):
        return None
    if bits & _ECN_CE and bits & (_ECN_ECT_0 | _ECN_ECT_1):
        return 3
    return 0


class Defrag:
    """Fragment queues of one network namespace (net->ipv4.fqdir).

    `add(datagram, now, user)` takes one fragment (validated and trimmed
    by ipv4.rcv_core) and returns the reassembled datagram when this one
    completes it, else None: the fragment was queued or dropped (both are
    NF_STOLEN for the hook); `stats` counts as /proc/net/snmp does
    (ReasmReqds, ReasmOKs, ReasmFails, ReasmTimeout, ReasmOverlaps) and
    `last_drop` says why the last None was a drop (None when queued).
    Call `expire(now)` before each packet with the packet's time."""

    def __init__(self, timeout: float = IPFRAG_TIME, high_thresh: int = IPFRAG_HIGH_THRESH,
                 max_dist: int = IPFRAG_MAX_DIST) -> None:
        self.timeout = timeout
        self.high_thresh = high_thresh
        self.max_dist = max_dist
        self.queues: dict[tuple[int, int, int, int, int], _Queue] = {}
        self.mem = 0
        self.stats: Counter[str] = Counter()
        self.last_drop: str | None = None
        self._peer_rid: dict[int, int] = {}

    # ---------------------------------------------------------------- timers
    def expire(self, now: float) -> list[Expired]:
        """Kill the queues whose timer ran out by `now` (ip_expire)."""
        out = []
        for key, q in list(self.queues.items()):
            if q.expires <= now:
                self._kill(q)
                self.stats["ReasmFails"] += 1
                self.stats["ReasmTimeout"] += 1
                head = None
                if q.first_in and q.frags and q.frags[0].offset == 0:
                    f = q.frags[0]
                    # as queued: header untouched, data trimmed to its end
                    head = bytearray(f.header) + f.data
                out.append(Expired(key, head, q.iif, key[4]))
        return out

    def next_expiry(self) -> float | None:
        return min((q.expires for q in self.queues.values()), default=None)

    # ---------------------------------------------------------------- input
    def add(self, datagram: Buffer, now: float, user: int = IP_DEFRAG_CONNTRACK_IN,
            iif: str = "", local_frag: bool = False) -> Reassembled | None:
        """ip_defrag for one fragment.  `local_frag`: the fragment was made
        by this host (IPSKB_FRAG_COMPLETE), exempt from the distance check."""
        self.last_drop = None
        self.stats["ReasmReqds"] += 1
        d = bytes(datagram)
        if len(d) < ipv4.HLEN:
            return self._fail("FRAG_INVALID")
        hl = (d[0] & 0x0F) * 4
        if len(d) < hl:
            return self._fail("FRAG_INVALID")
        key = (int(_I.unpack_from(d, 12)[0]), int(_I.unpack_from(d, 16)[0]),
               d[4] << 8 | d[5], d[9], user)
        q = self.queues.get(key)
        if q is None:
            if not self.high_thresh or self.mem > self.high_thresh:
                return self._fail("NOMEM")
            q = _Queue(key, now + self.timeout)
            q.mem = IPQ_SIZE
            self.mem += IPQ_SIZE
            self.queues[key] = q
        elif not self.high_thresh or self.mem > self.high_thresh:
            return self._fail("NOMEM")
        return self._queue(q, d, hl, now, iif, local_frag)

    def _fail(self, reason: str) -> Reassembled | None:
        self.stats["ReasmFails"] += 1
        self.last_drop = reason
        return None

    def _kill(self, q: _Queue) -> None:
        if not q.complete:
            q.complete = True
            self.queues.pop(q.key, None)
        self.mem -= q.mem
        q.mem = 0

    def _too_far(self, q: _Queue) -> bool:
        if not self.max_dist:
            return False
        src = q.key[0]
        start = q.rid
        end = (self._peer_rid.get(src, 0) + 1) & 0xFFFFFFFF
        self._peer_rid[src] = end
        q.rid = end
        rc = bool(q.frags) and ((end - start) & 0xFFFFFFFF) > self.max_dist
        if rc:
            self.stats["ReasmFails"] += 1
        return rc

    def _reinit(self, q: _Queue, now: float) -> None:
        self.mem -= q.mem - IPQ_SIZE
        q.mem = IPQ_SIZE
        q.expires = now + self.timeout
        q.frags = []
        q.runs = []
        q.tail_end = 0
        q.length = q.meat = 0
        q.first_in = q.last_in = False
        q.iif = ""
        q.ecn = 0

    def _queue(self, q: _Queue, d: bytes, hl: int, now: float, iif: str,
               local_frag: bool) -> Reassembled | None:
        if not local_frag and self._too_far(q):
            self._reinit(q, now)
        tos = d[1]
        ecn = 1 << (tos & 3)
        fo = d[6] << 8 | d[7]
        flags = fo & ~ipv4.IP_OFFSET
        offset = (fo & ipv4.IP_OFFSET) << 3
        end = offset + len(d) - hl
        if not flags & ipv4.IP_MF:
            if end < q.length or (q.last_in and end != q.length):
                return self._discard(q, "FRAG_INVALID")
            q.last_in = True
            q.length = end
        else:
            end &= ~7
            if end > q.length:
                if q.last_in:
                    return self._discard(q, "FRAG_INVALID")
                q.length = end
        if end == offset:
            return self._discard(q, "FRAG_INVALID")
        data = d[hl:hl + (end - offset)]
        verdict = self._insert(q, offset, end)
        if verdict == "dup":
            self.last_drop = "DUP_FRAG"
            return None
        if verdict == "overlap":
            self.stats["ReasmOverlaps"] += 1
            return self._discard(q, "FRAG_OVERLAP")
        frag = _Frag(offset, data, d[:hl])
        _insort(q.frags, frag)
        if iif:
            q.iif = iif
        q.meat += len(data)
        q.ecn |= ecn
        ts = truesize(len(d))
        q.mem += ts
        self.mem += ts
        if offset == 0:
            q.first_in = True
        fragsize = len(data) + hl
        if fragsize > q.max_size:
            q.max_size = fragsize
        if fo & ipv4.IP_DF and fragsize > q.max_df_size:
            q.max_df_size = fragsize
        if q.first_in and q.last_in and q.meat == q.length:
            return self._reasm(q)
        return None

    def _discard(self, q: _Queue, reason: str) -> Reassembled | None:
        self._kill(q)
        return self._fail(reason)

    def _insert(self, q: _Queue, offset: int, end: int) -> str:
        """inet_frag_queue_insert: "ok", "dup" or "overlap"."""
        n = end - offset
        if not q.runs:
            q.runs.append([offset, n])
            q.tail_end = end
            return "ok"
        if q.tail_end < end:
            if offset < q.tail_end:
                return "overlap"
            if offset == q.tail_end:
                q.runs[-1][1] += n
            else:
                q.runs.append([offset, n])
            q.tail_end = end
            return "ok"
        # Binary search among the runs (sorted, disjoint): the first run the
        # fragment touches decides.
        lo, hi = 0, len(q.runs)
        while lo < hi:
            mid = (lo + hi) // 2
            start, length = q.runs[mid]
            if end <= start:
                hi = mid
            elif offset >= start + length:
                lo = mid + 1
            elif offset >= start and end <= start + length:
                return "dup"
            else:
                return "overlap"
        q.runs.insert(lo, [offset, n])
        return "ok"

    def _reasm(self, q: _Queue) -> Reassembled | None:
        self._kill(q)
        ecn = _ecn_table(q.ecn)
        if ecn is None:
            return self._fail("FRAG_ECN")
        head = q.frags[0]
        hl = len(head.header)
        total = hl + q.length
        if total > 65535:
            return self._fail("FRAG_TOO_BIG")
        out = bytearray(head.header)
        for f in q.frags:
            out += f.data
        _H.pack_into(out, 2, total)
        out[1] |= ecn
        pmtu = q.max_df_size == q.max_size
        _H.pack_into(out, 6, ipv4.IP_DF if pmtu else 0)
        out[10] = out[11] = 0
        _H.pack_into(out, 10, checksum(out[:hl]))
        self.stats["ReasmOKs"] += 1
        return Reassembled(out, max(q.max_df_size, q.max_size), pmtu,
                           [len(f.data) for f in q.frags], q.iif)


def _insort(frags: list[_Frag], f: _Frag) -> None:
    i = len(frags)
    while i > 0 and frags[i - 1].offset > f.offset:
        i -= 1
    frags.insert(i, f)


