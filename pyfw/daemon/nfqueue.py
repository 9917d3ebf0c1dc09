"""The thin adapter between the kernel's NFQUEUE and the engine.

The kernel hands us IP packets at raw PREROUTING (with the in-device) and
raw OUTPUT (from the host itself); the engine takes Ethernet frames, so a
14-byte header with the interface's own MAC as destination is made up (the
engine reads only the ethertype and the unicast/broadcast bit).  The
engine's verdict becomes the queue's: ACCEPT with the rewritten packet
(NAT) as payload, anything else drops.  Packets the engine makes itself
(REJECT's replies, ICMP errors) go out through a raw socket, marked so that
our own OUTPUT rule does not queue them again.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import time
from typing import Any, Final

from pyfw.daemon.nfqnl import (
    NF_DROP,
    NFQA_SKB_CSUM_NOTVERIFIED,
    NFQA_SKB_CSUMNOTREADY,
    NFQA_SKB_GSO,
    SKB_INFO_UNKNOWN,
    Fields,
    NfQueue,
    QueuedPacket,
)
from pyfw.daemon.steering import OWN_MARK, OWN_MASK, POST_MARK
from pyfw.engine.engine import Emitted, Engine, Result
from pyfw.engine.packet import Packet
from pyfw.tap import vnet

__all__ = ["OWN_MARK", "OWN_MASK", "POST_MARK", "Adapter", "LiveEngine", "settle_gc"]

NF_IP_PRE_ROUTING: Final = 0
NF_IP_LOCAL_OUT: Final = 3
NF_IP_POST_ROUTING: Final = 4
MAX_PENDING: Final = 65536
QUEUE_LEN: Final = 8192  # packets the kernel holds for us before the fail mode applies
RCVBUF: Final = 16 << 20  # the queue socket's receive buffer (a burst waits there)


class LiveEngine(Engine):
    """The engine where the real host's stack, not the engine's model of
    it, answers what INPUT accepts; it remembers where the packet's own
    frames end and the host-made ones begin."""

    def __init__(self, ruleset: Any, host: Any) -> None:
        self.own_frames = 0
        self.delivered: bytes | None = None
        self.mark: int | None = None  # the packet's mark as the rules left it
        self.out_pkt: Packet | None = None  # the packet as POSTROUTING left it (before fragmenting)
        self._flushing = False
        self.level_lines: list[tuple[int, str]] = []  # LOG (its --log-level) and NFLOG (info) lines, in order
        from pyfw.engine import fastpath

        # Established flows take the engine's fast path although this class
        # overrides two of the steps it replays: a replayed walk emits only
        # the packet itself (no _flush_local: own_frames stays -1) and sets
        # no mark (entries are learnt from walks without MARK), which is what
        # these overrides would have recorded.
        super().__init__(ruleset, host, fastpath=fastpath.enabled_by_default())

    def load(self, ruleset: Any) -> None:
        # NFLOG's packets have no ulogd here: they become lines like LOG's
        # (the NFLOG target binds env.nflog when it compiles)
        self.env.nflog_to = self._nflog
        self.env.log_level = self._log_level  # (LOG's --log-level for syslog)
        super().load(ruleset)

    def set_host(self, host: Any) -> int:
        """The host changed (pyfw.daemon.hostwatch): routing, addresses and
        MASQUERADE's choice follow it.  Connections stay, except those
        masqueraded to an address that is gone or out of an interface that
        is (nf_nat_masquerade's inet and device events kill them); how many
        went."""
        gone = _gone(self.host, host)
        self.host = host
        self.nat.set_host(host)
        self.load(self.ruleset)  # compiled against the new host, its caches emptied
        killed = 0
        if gone:
            for conn in list(self.ct.table):
                dev = conn.masq_dev
                if dev is None or dev not in gone:
                    continue
                lost = gone[dev]
                if lost is None or conn.reply.dst in lost:
                    killed += self.ct.kill(conn)
        if killed:
            self.stats["masq-flushed"] = self.stats.get("masq-flushed", 0) + killed
        return killed

    def fresh(self) -> None:
        """Before each packet: nothing delivered, marked or sent yet.  (A
        method, not assignments in the adapter: mypyc would take a read of
        `mark` after `mark = None` in the same function to be None.)"""
        self.delivered = None
        self.own_frames = -1  # left so by the fast path: every frame is the packet's own
        self.mark = None
        self.out_pkt = None

    def _log_level(self, text: str, level: int) -> None:
        self.level_lines.append((level, text))

    def _nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        from pyfw.engine.logtext import format_packet

        self.level_lines.append((6, format_packet(pkt, prefix, 0)))

    def take_lines(self) -> list[tuple[int, str]]:
        """The LOG (their --log-level) and NFLOG (info) lines since the last call."""
        out = self.level_lines + [(4, text) for _t, text in self.logs]
        self.level_lines = []
        self.logs.clear()
        return out

    def _deliver(self, pkt: Packet) -> None:
        self.delivered = bytes(pkt.data)  # the kernel's stack takes it from here
        self.mark = pkt.mark

    def _transmit(self, pkt: Packet, rr: Any, res: Result) -> None:
        if not self._flushing:
            self.mark = pkt.mark
            self.out_pkt = pkt
        if pkt.extra is not None and pkt.extra.get("gso"):
            # a GSO super-packet leaves whole: the kernel cuts it into
            # segments (and checks them against the MTU) after our verdict
            res.emitted.append(Emitted(rr.dev, self._l2_head(rr.dev, rr.next_hop, pkt.dst) + pkt.data))
            return
        super()._transmit(pkt, rr, res)

    def _flush_local(self, res: Result, trace: bool) -> None:
        self.own_frames = len(res.emitted)
        self._flushing = True
        try:
            super()._flush_local(res, trace)
        finally:
            self._flushing = False


# the collector's youngest generation: collected after this many more objects
# made than freed (Python's default, 700, means every few hundred packets
# that leave a connection or an entry behind)
GC_GEN0: Final = 20000


def settle_gc() -> None:
    """Once the daemon is up (ruleset compiled, host read, queue bound): what
    it made so far lives as long as it does, so gc.freeze moves it out of
    every later collection's walk, and the youngest generation is let grow
    larger between collections (the packet path makes no reference cycles)."""
    gc.collect()
    gc.freeze()
    _t0, t1, t2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, t1, t2)


def _gone(old: Any, new: Any) -> dict[str, set[int] | None]:
    """Per interface of `old`, the IPv4 addresses `new` no longer has on it
    (None: the interface itself is gone)."""
    out: dict[str, set[int] | None] = {}
    for name, iface in getattr(old, "interfaces", {}).items():
        now = new.interfaces.get(name)
        if now is None:
            out[name] = None
            continue
        lost = {a for a, _ in iface.addresses} - {a for a, _ in now.addresses}
        if lost:
            out[name] = lost
    return out


def _post_key(ip: bytes) -> bytes:
    """A packet as POSTROUTING will see it again, TTL and header checksum aside."""
    return ip[:8] + ip[9:10] + ip[12:]


def _ttl_back(frame: bytes) -> bytes:
    """The IP packet in `frame` with its TTL one higher (the kernel takes it off
    again as it forwards), the header checksum updated for it (RFC 1624)."""
    ttl = frame[22]
    if ttl == 255:
        return frame[14:]
    c = (~((frame[24] << 8) | frame[25]) & 0xFFFF) + 0x100  # ~HC + m' - m: the TTL's byte is the high one
    c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
    return b"".join((frame[14:22], _TTL_CK.pack(ttl + 1, frame[23], c), frame[26:]))


_TTL_CK: Final = struct.Struct("!BBH")
_CK: Final = struct.Struct("!H")
_CSUM_AT: Final = {6: 16, 17: 6}  # the transport checksum's place after the IP header, by protocol
_VOUCHED: Final = {"csum_unnecessary": True}
# a super-packet's segment size is not in the queue's message: the engine's
# MTU check (gso_netlen) sees IPv4's least MTU, the kernel's ip_forward
# checks the real segments after our verdict
_GSO: Final = {"csum_unnecessary": True, "gso": True, "gso_netlen": 68}


def _receive_checked(eng: Engine, frame: bytes, iface: str, now: float, info: int) -> Result:
    """eng.receive, taking the kernel's word (NFQA_SKB_INFO) on the packet's
    transport checksum as nf_conntrack_checksum does: only a checksum the
    kernel did not verify (or a queue that says nothing) is checked."""
    if info < 0 or info & NFQA_SKB_CSUM_NOTVERIFIED:
        return eng.receive(frame, iface, now)
    if info & NFQA_SKB_GSO:
        eng.stats["gso-packets"] = eng.stats.get("gso-packets", 0) + 1
        return eng.receive_vouched(frame, iface, now, _GSO)
    return eng.receive_vouched(frame, iface, now, _VOUCHED)


def finish_checksum(ip: bytes, info: int) -> bytes:
    """A rewritten packet whose transport checksum the kernel had left to
    the device (NFQA_SKB_CSUMNOTREADY: the field holds the pseudo-header
    sum, which NAT's incremental update does not keep).  The kernel takes
    a new payload as CHECKSUM_NONE (nfqnl_mangle), so the field must hold
    the whole checksum -- or, for a GSO super-packet, the pseudo-header sum
    for the new addresses, which the segmentation completes per segment
    (tcp4_gso_segment sets it up again for a packet not CHECKSUM_PARTIAL).
    (Such a packet is never a fragment: the kernel checksums before it
    fragments.)"""
    if info <= 0 or not info & NFQA_SKB_CSUMNOTREADY:
        return ip
    proto = ip[9]
    ihl = (ip[0] & 0x0F) << 2
    at = ihl + (16 if proto == 6 else 6 if proto == 17 else 0x10000)
    if at + 2 > len(ip):
        return ip
    if info & NFQA_SKB_GSO:
        buf = bytearray(ip)
        vnet.set_pseudo_sum(buf, 0, ihl, at - ihl)
        return bytes(buf)
    # vnet.complete_checksum over the new pseudo-header in one sum: mod
    # 0xFFFF every 16-bit word counts once whatever its place, so the
    # segment as one integer, less the stale field, plus the addresses
    seg_len = len(ip) - ihl
    v = int.from_bytes(ip[ihl:], "big")
    if seg_len & 1:
        v <<= 8
    r = (v - (ip[at] << 8 | ip[at + 1]) + int.from_bytes(ip[12:20], "big") + proto + seg_len) % 0xFFFF
    return b"".join((ip[:at], _CK.pack(0xFFFF - r if r else 0xFFFF), ip[at + 2:]))


class _CutPacket:
    """A packet the kernel handed over cut at the queue's copy range (at
    most 65531 bytes: loopback's 64 KiB segments are longer).  The engine
    sees it padded to its length (its headers are whole); it passes only
    as it came: a rewrite cannot be given back, the kernel would cut the
    packet to what we return, so a packet the rules rewrite is dropped."""

    def __init__(self, qp: Any, data: bytes, adapter: Adapter) -> None:
        self.qp = qp
        self.adapter = adapter
        self.hook = qp.hook
        self.indev = qp.indev
        self.padded = data + bytes((data[2] << 8 | data[3]) - len(data))
        self.rewritten = False
        self.skb_info = getattr(qp, "skb_info", SKB_INFO_UNKNOWN)

    def get_payload(self) -> bytes:
        return self.padded

    def get_hw(self) -> Any:
        return self.qp.get_hw()

    def get_mark(self) -> int:
        return int(self.qp.get_mark())

    def set_payload(self, payload: bytes) -> None:
        self.rewritten = self.rewritten or payload != self.padded

    def set_mark(self, mark: int) -> None:
        if mark == self.adapter.post_mark:
            self.rewritten = True  # a source NAT waiting for POSTROUTING
        else:
            self.qp.set_mark(mark)

    def accept(self) -> None:
        if self.rewritten:
            self.adapter._count("cut-rewrite-dropped")
            self.qp.drop()
        else:
            self.adapter._count("cut-passed")
            self.qp.accept()

    def drop(self) -> None:
        self.qp.drop()


def _queue_class() -> Any:
    """pyfw's own netlink reader (pyfw.daemon.nfqnl); PYFW_NFQUEUE_BINDING=netfilterqueue
    takes the C binding instead, with the same interface (to compare the two)."""
    if os.environ.get("PYFW_NFQUEUE_BINDING") == "netfilterqueue":
        from netfilterqueue import NetfilterQueue

        return NetfilterQueue
    from pyfw.daemon.nfqnl import NfQueue

    return NfQueue


class Adapter:
    """Binds queue `num` and gives each packet the engine's verdict."""

    def __init__(self, num: int, engine: LiveEngine, fail_open: bool = False,
                 queue_len: int = QUEUE_LEN, rcvbuf: int = RCVBUF) -> None:
        from pyfw.daemon.queueconf import configure

        self.engine = engine
        self.stats: dict[str, int] = {}
        self.pending: dict[bytes, tuple[bytes, int]] = {}  # _post_key -> the engine's packet, its mark
        self.debug: Any = None  # a callable taking one line per packet
        self.post_mark = POST_MARK  # a worker's own (pyfw.daemon.steer.post_mark)
        self.sink: Any = None  # a LogSink for LOG/NFLOG lines (None: they are dropped)
        # in-device name -> whether the kernel takes the engine's new source
        # at PREROUTING (pyfw.daemon.localsrc); None: always the second pass
        self.local_source: Any = None
        self._names: dict[int, str] = {}
        self._host_seen = engine.host  # the caches below belong to this host
        self._heads: dict[tuple[str, bytes | None], bytes] = {}
        # local_source's answers, per in-device (it is asked once per device)
        self._src_ok: dict[str, bool] = {}
        self._src_of: Any = None  # the local_source they came from
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, OWN_MARK)
        # (looked up by name, so that a test can stand in a fake queue: a
        # compiled module calls its own functions directly)
        self.nfq: Any = globals()["_queue_class"]()()
        self.nfq.bind(num, self._packet, max_len=queue_len)
        # the same queue typed, for _fast's verdicts (a compiled module calls it directly)
        self._q: NfQueue | None = None
        if isinstance(self.nfq, NfQueue):
            self._q = self.nfq
            self.nfq.fast = self._fast
        self.problems = configure(self.fileno(), num, fail_open, rcvbuf)

    def fileno(self) -> int:
        return int(self.nfq.get_fd())

    def run_ready(self) -> None:
        """Serve the packets waiting in the queue (after select says so)."""
        self.nfq.run(block=False)

    def close(self) -> None:
        self.nfq.unbind()
        self.raw.close()

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def _name(self, index: int) -> str:
        name = self._names.get(index)
        if name is None:
            try:
                name = socket.if_indextoname(index)
            except OSError:
                name = f"if{index}"
            self._names[index] = name
        return name

    def _one_pass(self, iface: str) -> bool:
        """Whether the kernel takes a packet from `iface` with the engine's new
        (local) source at PREROUTING: local_source's answer, remembered."""
        ls = self.local_source
        if ls is not self._src_of:
            self._src_of = ls
            self._src_ok.clear()
        ok = self._src_ok.get(iface)
        if ok is None:
            ok = self._src_ok[iface] = ls is not None and bool(ls(iface))
        return ok

    def _head(self, iface: str, hw: bytes | None) -> bytes:
        """The Ethernet header the frame had, as far as the queue tells it:
        our interface's MAC as destination, the sender's (NFQA_HWADDR) as
        source -- so that LOG's MAC= and `-m mac` see the real sender."""
        key = (iface, hw)
        head = self._heads.get(key)
        if head is None:
            try:
                mac = self.engine.host.mac(iface)
            except Exception:
                mac = b"\x02\0\0\0\0\1"
            src = hw[:6] if hw and len(hw) >= 6 else b"\x02\0\0\0\0\0"
            if len(self._heads) > 4096:
                self._heads.clear()
            head = self._heads[key] = bytes(mac) + src + b"\x08\x00"
        return head

    def _packet(self, qp: Any) -> None:
        try:
            data = qp.get_payload()
            if len(data) >= 20 and (data[2] << 8 | data[3]) > len(data):
                qp = _CutPacket(qp, data, self)
            self._verdict(qp)
        except Exception:
            self._count("adapter_error")
            qp.drop()

    def _verdict(self, qp: Any) -> None:
        data = qp.get_payload()
        if qp.hook == NF_IP_POST_ROUTING:
            # the second pass of a packet the engine gave a new source: no engine here
            entry = self.pending.pop(_post_key(data), None)
            if entry is None:
                qp.set_mark(0)
                self._count("post-unknown")
                qp.accept()
                return
            final, mark = entry
            qp.set_mark(mark)
            qp.set_payload(final)
            qp.accept()
            return
        eng = self.engine
        now = time.monotonic()
        eng.fresh()
        if eng.host is not self._host_seen:
            self._host_seen = eng.host
            self._names.clear()
            self._heads.clear()
            self._src_ok.clear()
            if self.local_source is not None:
                self.local_source.clear()
        if qp.hook == NF_IP_LOCAL_OUT:
            res = eng.send(data, now)
        else:
            iface = self._name(qp.indev)
            res = _receive_checked(eng, self._head(iface, qp.get_hw()) + data, iface, now,
                           getattr(qp, "skb_info", SKB_INFO_UNKNOWN))
        self._give(qp, data, res)

    def _fast(self, f: Fields) -> bool:
        """A packet straight from its message's fields, no QueuedPacket made,
        for the common case: a whole packet at PREROUTING from an interface
        already seen, forwarded as the engine rewrote it, no mark, nothing
        else made.  False (before the engine saw it) leaves the packet to
        _packet; an engine's answer that is not that common case goes to
        _give as a QueuedPacket."""
        pid, hook, _hwp, indev, _outdev, _mark, hw, data, info = f
        if hook != NF_IP_PRE_ROUTING or len(data) < 20 or (data[2] << 8 | data[3]) > len(data) or self.debug:
            return False
        eng = self.engine
        iface = self._names.get(indev)
        if iface is None or eng.host is not self._host_seen:
            return False
        head = self._heads.get((iface, hw))
        if head is None:
            return False
        try:
            eng.fresh()
            res = _receive_checked(eng, head + data, iface, time.monotonic(), info)
            if eng.level_lines or eng.logs:
                self._lines()
            em = res.emitted
            if (res.verdict == "ACCEPT" and res.path == "forward" and len(em) == 1 and eng.own_frames in (-1, 1)
                    and not eng.mark and res.out != "lo"):
                frame = em[0].frame
                if frame[26:30] == data[12:16] or self._one_pass(iface):
                    # _ttl_back inline: TTL one higher, its checksum updated (RFC 1624)
                    ttl = frame[22]
                    at = _CSUM_AT.get(frame[23], 0) if info == NFQA_SKB_CSUMNOTREADY else 0
                    if ttl == 255:
                        new = frame[14:]
                        at = 0
                    else:
                        c = (~((frame[24] << 8) | frame[25]) & 0xFFFF) + 0x100
                        ttl_ck = _TTL_CK.pack(ttl + 1, frame[23], ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF)
                        if at and frame[26:] != data[12:]:
                            # NAT rewrote a packet whose checksum was left to the
                            # device: finish_checksum, in the same join
                            l4 = 14 + ((frame[14] & 0x0F) << 2)
                            at += l4
                            seg_len = len(frame) - l4
                            v = int.from_bytes(frame[l4:], "big")
                            if seg_len & 1:
                                v <<= 8
                            r = (v - (frame[at] << 8 | frame[at + 1]) + int.from_bytes(frame[26:34], "big")
                                 + frame[23] + seg_len) % 0xFFFF
                            new = b"".join((frame[14:22], ttl_ck, frame[26:at], _CK.pack(0xFFFF - r if r else 0xFFFF),
                                            frame[at + 2:]))
                        else:
                            at = 0
                            new = b"".join((frame[14:22], ttl_ck, frame[26:]))
                    stats = self.stats
                    stats["accept"] = stats.get("accept", 0) + 1
                    q = self._q
                    assert q is not None  # (_fast is an NfQueue's handler)
                    if new == data:
                        q.accept_plain(pid)
                    else:
                        if info > 0 and not at:
                            new = finish_checksum(new, info)
                        q.accept_payload(pid, new)
                    return True
            self._give(QueuedPacket(self.nfq, *f), data, res)
        except Exception:
            self._count("adapter_error")
            self.nfq.verdict(pid, NF_DROP, None, None)
        return True

    def _give(self, qp: Any, data: bytes, res: Result) -> None:
        """The engine's answer `res` on `data` as the queue's verdict on qp."""
        eng = self.engine
        if eng.level_lines or eng.logs:
            self._lines()
        n_own = eng.own_frames if eng.own_frames >= 0 else len(res.emitted)
        own = res.emitted[:n_own]
        if self.debug:
            self.debug(f"hook={qp.hook} len={len(data)} path={res.path} verdict={res.verdict} "
                       f"own={len(own)} made={len(res.emitted) - len(own)} reason={res.reason}")
        for em in res.emitted[n_own:]:
            self._send_raw(em.frame[14:])
        if res.verdict != "ACCEPT":
            self._count("drop")
            qp.drop()
            return
        new: bytes | None = None
        frame: bytes | None = None
        if res.path in ("forward", "output") and res.out != "lo":
            frame = own[0].frame if len(own) == 1 else self._whole(eng)
        if res.path == "forward":
            if frame is None:
                self._count("forward-no-packet")
                qp.drop()
                return
            if frame[26:30] != data[12:16] and not self._one_pass(self._name(qp.indev)):
                # A new source address (SNAT, a DNAT's replies) is applied
                # after the kernel's routing, which would drop a packet
                # arriving with a local source (unless accept_local lets it,
                # pyfw.daemon.localsrc): accept it as it came, marked,
                # and swap in the engine's packet when it reaches POSTROUTING.
                final = finish_checksum(frame[14:], getattr(qp, "skb_info", SKB_INFO_UNKNOWN))
                if final[16:20] != data[16:20]:
                    self._count("nat-both-addresses")  # hairpin NAT: not yet
                if len(self.pending) >= MAX_PENDING:
                    self.pending.pop(next(iter(self.pending)))
                self.pending[_post_key(data)] = (final, eng.mark or 0)
                qp.set_mark(self.post_mark)
                self._count("accept-post")
                qp.accept()
                return
            # the kernel decrements the TTL itself when it forwards
            new = _ttl_back(frame)
        elif res.path == "input" or res.out == "lo":
            # to the gateway itself (REDIRECT, a DNAT to a local address, the
            # host's own packets over lo): the packet as INPUT accepted it; the
            # kernel routes it (again, at OUTPUT: nf_reroute) by what it says
            new = eng.delivered
        elif res.path == "output" and frame is not None:
            new = frame[14:]  # DNAT of the host's own packets, un-NAT of its replies
        if new is not None and new != data:
            qp.set_payload(finish_checksum(new, getattr(qp, "skb_info", SKB_INFO_UNKNOWN)))
        if eng.mark and eng.mark != qp.get_mark():
            # MARK/CONNMARK's result for the kernel's routing, tc and later
            # hooks (a mark the rules clear to 0 is not carried: the engine
            # starts from 0, not from the kernel's mark)
            qp.set_mark(eng.mark)
        self._count("accept")
        qp.accept()

    def _whole(self, eng: LiveEngine) -> bytes | None:
        """The engine fragmented the packet (or sent none): the whole packet
        as POSTROUTING left it, behind a blank Ethernet header -- the kernel
        fragments it itself on the way out."""
        if eng.out_pkt is None:
            return None
        self._count("refragmented")
        return bytes(14) + bytes(eng.out_pkt.data)

    def _lines(self) -> None:
        lines = self.engine.take_lines()
        if self.sink is not None:
            for level, text in lines:
                self.sink.packet(text, level)

    def _send_raw(self, ip: bytes) -> None:
        if len(ip) < 20:
            return
        try:
            self.raw.sendto(ip, (socket.inet_ntoa(ip[16:20]), 0))
            self._count("sent")
        except OSError:
            self._count("send_error")
