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

import socket
import struct
import time
from typing import Any

from pyfw.engine.engine import Engine, Result
from pyfw.engine.packet import Packet

NF_IP_LOCAL_OUT = 3
NF_IP_POST_ROUTING = 4
POST_MARK = 0x50F20000  # accepted at PREROUTING, to be rewritten at POSTROUTING
MAX_PENDING = 65536
OWN_MARK = 0x50F30000  # on the daemon's own raw-socket packets (queue rule skips them)
OWN_MASK = 0xFFFF0000


class LiveEngine(Engine):
    """The engine where the real host's stack, not the engine's model of
    it, answers what INPUT accepts; it remembers where the packet's own
    frames end and the host-made ones begin."""

    def __init__(self, ruleset: Any, host: Any) -> None:
        self.own_frames = 0
        self.delivered: bytes | None = None
        super().__init__(ruleset, host)

    def _deliver(self, pkt: Packet) -> None:
        self.delivered = bytes(pkt.data)  # the kernel's stack takes it from here

    def _flush_local(self, res: Result, trace: bool) -> None:
        self.own_frames = len(res.emitted)
        super()._flush_local(res, trace)


def _post_key(ip: bytes) -> bytes:
    """A packet as POSTROUTING will see it again, TTL and header checksum aside."""
    return ip[:8] + ip[9:10] + ip[12:]


def _ip_checksum_fix(data: bytearray) -> None:
    ihl = (data[0] & 0x0F) * 4
    data[10:12] = b"\0\0"
    s = sum(struct.unpack_from(f"!{ihl // 2}H", data, 0))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", data, 10, ~s & 0xFFFF)


class Adapter:
    """Binds queue `num` and gives each packet the engine's verdict."""

    def __init__(self, num: int, engine: LiveEngine) -> None:
        from netfilterqueue import NetfilterQueue

        self.engine = engine
        self.stats: dict[str, int] = {}
        self.pending: dict[bytes, bytes] = {}  # _post_key -> the engine's packet
        self.debug: Any = None  # a callable taking one line per packet
        self.post_mark = POST_MARK  # a worker's own (pyfw.daemon.steer.post_mark)
        self._names: dict[int, str] = {}
        self._heads: dict[str, bytes] = {}
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, OWN_MARK)
        self.nfq = NetfilterQueue()
        self.nfq.bind(num, self._packet, max_len=4096)

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

    def _head(self, iface: str) -> bytes:
        head = self._heads.get(iface)
        if head is None:
            try:
                mac = self.engine.host.mac(iface)
            except Exception:
                mac = b"\x02\0\0\0\0\1"
            head = self._heads[iface] = bytes(mac) + b"\x02\0\0\0\0\0" + b"\x08\x00"
        return head

    def _packet(self, qp: Any) -> None:
        try:
            self._verdict(qp)
        except Exception:
            self._count("adapter_error")
            qp.drop()

    def _verdict(self, qp: Any) -> None:
        eng = self.engine
        data = qp.get_payload()
        now = time.monotonic()
        eng.delivered = None
        eng.own_frames = 0
        if qp.hook == NF_IP_POST_ROUTING:
            final = self.pending.pop(_post_key(data), None)
            qp.set_mark(0)
            if final is None:
                self._count("post-unknown")
                qp.accept()
                return
            qp.set_payload(final)
            qp.accept()
            return
        if qp.hook == NF_IP_LOCAL_OUT:
            res = eng.send(data, now)
        else:
            iface = self._name(qp.indev)
            res = eng.receive(self._head(iface) + data, iface, now)
        own = res.emitted[:eng.own_frames]
        if self.debug:
            self.debug(f"hook={qp.hook} len={len(data)} path={res.path} verdict={res.verdict} "
                       f"own={len(own)} made={len(res.emitted) - len(own)} reason={res.reason}")
        for em in res.emitted[eng.own_frames:]:
            self._send_raw(em.frame[14:])
        if res.verdict != "ACCEPT":
            self._count("drop")
            qp.drop()
            return
        new: bytes | None = None
        if res.path == "forward":
            if len(own) != 1:
                self._count("forward-not-one-frame")
                if not own:
                    qp.drop()
                    return
            elif own[0].frame[26:30] != data[12:16]:
                # A new source address (SNAT, a DNAT's replies) is applied
                # after the kernel's routing, which would drop a packet
                # arriving with a local source: accept it as it came, marked,
                # and swap in the engine's packet when it reaches POSTROUTING.
                final = own[0].frame[14:]
                if final[16:20] != data[16:20]:
                    self._count("nat-both-addresses")  # hairpin NAT: not yet
                if len(self.pending) >= MAX_PENDING:
                    self.pending.pop(next(iter(self.pending)))
                self.pending[_post_key(data)] = final
                qp.set_mark(self.post_mark)
                self._count("accept-post")
                qp.accept()
                return
            else:
                # the kernel decrements the TTL itself when it forwards
                out = bytearray(own[0].frame[14:])
                out[8] = min(out[8] + 1, 255)
                _ip_checksum_fix(out)
                new = bytes(out)
        if new is not None and new != data:
            qp.set_payload(new)
        self._count("accept")
        qp.accept()

    def _send_raw(self, ip: bytes) -> None:
        if len(ip) < 20:
            return
        try:
            self.raw.sendto(ip, (socket.inet_ntoa(ip[16:20]), 0))
            self._count("sent")
        except OSError:
            self._count("send_error")
