"""NFQUEUE over netlink in pure Python: the kernel's nfnetlink_queue
messages read and written with struct, no libnetfilter_queue.

Why not the NetfilterQueue binding: it makes a Python object per packet,
copies each payload twice and sends one verdict per system call.  Here a
wakeup reads every waiting packet into one buffer, hands each to the
callback as a small slotted object, and sends all their verdicts in one
`send` (netlink takes several messages in one datagram).  The interface is
the binding's (`bind`, `run(block=False)`, `get_fd`, `unbind`; packets with
`get_payload`, `set_payload`, `set_mark`, `accept`, `drop`), so the daemon
can use either.

Message layouts: include/uapi/linux/netfilter/nfnetlink_queue.h.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import mypyc_attr

NETLINK_NETFILTER: Final = 12
NFNL_SUBSYS_QUEUE: Final = 3
NFQNL_MSG_PACKET: Final = NFNL_SUBSYS_QUEUE << 8 | 0
NFQNL_MSG_VERDICT: Final = NFNL_SUBSYS_QUEUE << 8 | 1
NFQNL_MSG_CONFIG: Final = NFNL_SUBSYS_QUEUE << 8 | 2
NFQNL_MSG_VERDICT_BATCH: Final = NFNL_SUBSYS_QUEUE << 8 | 3
NLMSG_ERROR: Final = 2
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
# attributes of a packet message, and of a verdict
NFQA_PACKET_HDR: Final = 1
NFQA_VERDICT_HDR: Final = 2
NFQA_MARK: Final = 3
NFQA_IFINDEX_INDEV: Final = 5
NFQA_IFINDEX_OUTDEV: Final = 6
NFQA_HWADDR: Final = 9
NFQA_PAYLOAD: Final = 10
NFQA_SKB_INFO: Final = 14
# NFQA_SKB_INFO's flags (only with NFQA_CFG_F_GSO): the transport checksum is
# not computed yet (CHECKSUM_PARTIAL: the field holds the pseudo-header sum),
# a GSO super-packet, a checksum no one verified (the attribute is absent when
# the kernel trusts the checksum: skb_csum_unnecessary)
NFQA_SKB_CSUMNOTREADY: Final = 0x1
NFQA_SKB_GSO: Final = 0x2
NFQA_SKB_CSUM_NOTVERIFIED: Final = 0x4
# attributes and values of a config message
NFQA_CFG_CMD: Final = 1
NFQA_CFG_PARAMS: Final = 2
NFQA_CFG_QUEUE_MAXLEN: Final = 3
NFQA_CFG_MASK: Final = 4
NFQA_CFG_FLAGS: Final = 5
NFQNL_CFG_CMD_BIND: Final = 1
NFQNL_CFG_CMD_UNBIND: Final = 2
NFQNL_COPY_PACKET: Final = 2
NFQA_CFG_F_FAIL_OPEN: Final = 0x1
NFQA_CFG_F_GSO: Final = 0x4
SKB_INFO_UNKNOWN: Final = -1  # a queue without NFQA_CFG_F_GSO: the kernel says nothing of checksums
NF_DROP: Final = 0
NF_ACCEPT: Final = 1
NF_REPEAT: Final = 4

SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
COPY_RANGE: Final = 0xFFFF           # whole packets (the kernel caps it at its own maximum)
RECV_BUFFER: Final = 0x10000 + 4096  # one message: a whole packet and its attributes
RCVBUF: Final = 8 << 20              # the socket's receive buffer: a burst waits there, not dropped
BATCH: Final = 256                   # packets served per wakeup before their verdicts go out
FLUSH_BYTES: Final = 96 * 1024       # ... or once this many bytes of verdicts wait (under the socket's sndbuf)

htonl: Final = socket.htonl
_NLMSG: Final = struct.Struct("=IHHII")
_LEN_TYPE: Final = struct.Struct("=IH")
_ATTR: Final = struct.Struct("=HH")
_BE32: Final = struct.Struct("!I")
_PKT_HDR: Final = struct.Struct("!IHB")
# nlmsghdr, nfgenmsg (family, version, res_id as stored) and NFQA_VERDICT_HDR, in one
_VERDICT: Final = struct.Struct("=IHHIIBBHHHII")
_VERDICT_PAYLOAD: Final = struct.Struct("=IHHIIBBHHHIIHH")  # ... and the payload attribute's header
_NF_ACCEPT_BE: Final = socket.htonl(1)
_MARK_ATTR: Final = struct.Struct("=HHI")
# the attributes' headers of a packet message as the kernel lays out one that
# came in from an Ethernet device at PREROUTING without a mark: PACKET_HDR,
# IFINDEX_INDEV, HWADDR, then PAYLOAD (nfqnl_build_packet_message's order)
# from the message's offset 20 to 60, its payload's start; the attributes'
# values (id, hw_protocol, ifindex) in network order, read as native and swapped
# -- and on to offset 68, where with F_GSO the same message has NFQA_SKB_INFO
# before PAYLOAD (a checksum the kernel did not verify, or has not computed):
# its value, then PAYLOAD's header (read in the same unpack, used or not)
_COMMON_HEAD: Final = struct.Struct("=HHIHBxHHIHH4x8sHHIHH")
_PAD: Final = (b"", b"\0", b"\0\0", b"\0\0\0")


def _attr(kind: int, value: bytes) -> bytes:
    return _ATTR.pack(4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def config_message(num: int, *, cmd: int | None = None, copy_range: int | None = None,
                   maxlen: int | None = None, flags: int | None = None, mask: int = 0,
                   seq: int = 0) -> bytes:
    """An NFQNL_MSG_CONFIG for queue `num` (an ACK asked for), with the parts given."""
    attrs = b""
    if cmd is not None:
        attrs += _attr(NFQA_CFG_CMD, struct.pack("!BxH", cmd, socket.AF_INET))
    if copy_range is not None:
        attrs += _attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET))
    if maxlen is not None:
        attrs += _attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen))
    if flags is not None:
        attrs += _attr(NFQA_CFG_MASK, _BE32.pack(mask)) + _attr(NFQA_CFG_FLAGS, _BE32.pack(flags))
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, num) + attrs
    return _NLMSG.pack(16 + len(body), NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


# a packet message's fields: id, hook, hw_protocol, indev, outdev, mark, hwaddr, payload,
# NFQA_SKB_INFO's flags (0 without the attribute; SKB_INFO_UNKNOWN on a queue without F_GSO)
Fields = tuple[int, int, int, int, int, int, "bytes | None", bytes, int]


class QueuedPacket:
    """One packet the kernel holds until our verdict (the binding's Packet API)."""

    __slots__ = ("_queue", "id", "hook", "hw_protocol", "indev", "outdev", "mark", "_hw", "_payload",
                 "_new_payload", "_new_mark", "done", "skb_info")

    def __init__(self, queue: NfQueue, pid: int, hook: int, hw_protocol: int, indev: int, outdev: int,
                 mark: int, hw: bytes | None, payload: bytes, skb_info: int = SKB_INFO_UNKNOWN) -> None:
        self._queue = queue
        self.id = pid
        self.hook = hook
        self.hw_protocol = hw_protocol
        self.indev = indev
        self.outdev = outdev
        self.mark = mark
        self._hw = hw
        self._payload = payload
        self._new_payload: bytes | None = None
        self._new_mark: int | None = None
        self.done = False
        self.skb_info = skb_info

    def get_payload(self) -> bytes:
        return self._payload

    def get_hw(self) -> bytes | None:
        """The sender's link-layer address (8 bytes, as the kernel pads it), None where there is none."""
        return self._hw

    def get_payload_len(self) -> int:
        return len(self._payload)

    def set_payload(self, payload: bytes) -> None:
        self._new_payload = bytes(payload)

    def get_mark(self) -> int:
        return self.mark if self._new_mark is None else self._new_mark

    def set_mark(self, mark: int) -> None:
        self._new_mark = mark

    def accept(self) -> None:
        self.done = True
        self._queue.requeue = True
        if self._new_payload is None and self._new_mark is None:
            self._queue.accept_plain(self.id)
        else:
            self._queue.verdict(self.id, NF_ACCEPT, self._new_payload, self._new_mark)

    def drop(self) -> None:
        self.done = True
        self._queue.verdict(self.id, NF_DROP, None, self._new_mark)

    def repeat(self) -> None:
        self.done = True
        self._queue.requeue = True
        self._queue.verdict(self.id, NF_REPEAT, self._new_payload, self._new_mark)


@mypyc_attr(allow_interpreted_subclasses=True)
class NfQueue:
    """A netlink socket bound to one NFQUEUE number (`sock`: a stand-in for
    it, tests; a compiled module's class has no __dict__ to fill in)."""

    # a handler tried first with each packet's fields, before any QueuedPacket
    # is made: True when it gave the verdict itself (verdict/accept_plain)
    fast: Callable[[Fields], bool] | None = None
    requeue = False  # a QueuedPacket was accepted since the last flush: its packet may come back at once
    gso = False  # NFQA_CFG_F_GSO is set: packets carry NFQA_SKB_INFO, super-packets come whole

    def __init__(self, sock: Any = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
        self.sock: Any = sock
        self.num: int | None = None
        self.callback: Callable[[QueuedPacket], Any] | None = None
        self.stats = {"packets": 0, "enobufs": 0, "errors": 0, "batches": 0}
        self._buf = bytearray(RECV_BUFFER)
        self._mv = memoryview(self._buf)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._plain: list[int] = []  # ids accepted as they came: one batch verdict covers them
        self.held: set[int] = set()  # ids a callback returned without a verdict on
        self._res_id = 0  # the queue number in network order, as a native short
        self._seq = 1

    # --- configuration -----------------------------------------------------

    def _request(self, message: bytes) -> None:
        """Send a config message and wait for its ACK (packets that come first are dropped:
        there are none before the bind's ACK, and later requests are rare)."""
        seq = _NLMSG.unpack_from(message)[3]
        self.sock.sendto(message, (0, 0))
        while True:
            size = self.sock.recv_into(self._buf)
            off = 0
            while off + 16 <= size:
                mlen, mtype, _f, mseq, _p = _NLMSG.unpack_from(self._buf, off)
                if mtype == NLMSG_ERROR and mseq == seq:
                    err = -struct.unpack_from("=i", self._buf, off + 16)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return
                if mtype == NFQNL_MSG_PACKET:
                    self._drop_unread(off, mlen)
                off += max((mlen + 3) & ~3, 16)

    def _drop_unread(self, off: int, mlen: int) -> None:
        pkt = self._parse(off, off + mlen)
        if pkt is not None:
            self.verdict(pkt.id, NF_DROP, None, None)
            self.flush()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def bind(self, queue_num: int, user_callback: Callable[[QueuedPacket], Any], max_len: int = 1024,
             mode: int = NFQNL_COPY_PACKET, range: int = COPY_RANGE, sock_len: int = RCVBUF,  # noqa: A002
             fail_open: bool = False, gso: bool = True) -> None:
        """Take queue `queue_num` (EBUSY if another socket has it) and configure it.
        With `gso`, the kernel tells each packet's checksum state (see set_gso)."""
        if self.num is not None:
            raise RuntimeError("a queue is already bound; unbind() first")
        self._request(config_message(queue_num, cmd=NFQNL_CFG_CMD_BIND, seq=self._next_seq()))
        self.num = queue_num
        self.callback = user_callback
        self._res_id = socket.htons(queue_num)
        self._request(config_message(queue_num, copy_range=range, maxlen=max_len, seq=self._next_seq()))
        self.set_fail_open(fail_open)
        if gso:
            self.set_gso(True)
        if sock_len:
            self.set_rcvbuf(sock_len)

    def set_fail_open(self, on: bool) -> None:
        """Whether the kernel accepts (rather than drops) what a full queue cannot take."""
        assert self.num is not None
        self._request(config_message(self.num, flags=NFQA_CFG_F_FAIL_OPEN if on else 0,
                                     mask=NFQA_CFG_F_FAIL_OPEN, seq=self._next_seq()))

    def set_gso(self, on: bool) -> None:
        """NFQA_CFG_F_GSO: the kernel hands packets over as it holds them --
        without computing a checksum left to the device (CHECKSUM_PARTIAL)
        or cutting a GSO super-packet into segments -- and says in
        NFQA_SKB_INFO which checksums it has not verified, so that the
        engine checks only those (nf_conntrack_checksum skips the others)."""
        assert self.num is not None
        try:
            self._request(config_message(self.num, flags=NFQA_CFG_F_GSO if on else 0, mask=NFQA_CFG_F_GSO,
                                         seq=self._next_seq()))
        except OSError:
            on = False  # (a kernel without it: packets come checksummed, nothing said)
        self.gso = on

    def set_rcvbuf(self, size: int) -> None:
        """A receive buffer of `size` bytes (past rmem_max as root), so a burst waits there."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def unbind(self) -> None:
        if self.num is not None:
            self.flush()
            try:
                self._request(config_message(self.num, cmd=NFQNL_CFG_CMD_UNBIND, seq=self._next_seq()))
            except OSError:
                pass
            self.num = None
        self.callback = None

    def close(self) -> None:
        self.unbind()
        self.sock.close()

    def get_fd(self) -> int:
        return self.sock.fileno()

    def fileno(self) -> int:
        return self.sock.fileno()

    # --- packets and verdicts ----------------------------------------------

    def verdict(self, pid: int, verdict: int, payload: bytes | None, mark: int | None) -> None:
        """Queue the verdict on packet `pid`; flush() sends what is queued."""
        if self.held:
            self.held.discard(pid)
        out = self._out
        length = 32
        if mark is not None:
            length += 8
        if payload is not None:
            pad = -len(payload) % 4
            length += 4 + len(payload) + pad
        out.append(_VERDICT.pack(length, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, 0, socket.AF_UNSPEC, 0,
                                 self._res_id, 12, NFQA_VERDICT_HDR, htonl(verdict), htonl(pid)))
        if mark is not None:
            out.append(_MARK_ATTR.pack(8, NFQA_MARK, htonl(mark & 0xFFFFFFFF)))
        if payload is not None:
            # the parts are joined once, at flush
            out.append(_ATTR.pack(4 + len(payload), NFQA_PAYLOAD))
            out.append(payload)
            if pad:
                out.append(_PAD[pad])
        self._out_bytes += length
        if self._out_bytes >= FLUSH_BYTES:
            self.flush()

    def accept_payload(self, pid: int, payload: bytes) -> None:
        """ACCEPT with a new payload and no mark: verdict() for the common
        case, its headers packed in one go."""
        if self.held:
            self.held.discard(pid)
        n = len(payload)
        pad = -n % 4
        length = 36 + n + pad
        out = self._out
        out.append(_VERDICT_PAYLOAD.pack(length, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, 0, socket.AF_UNSPEC, 0,
                                         self._res_id, 12, NFQA_VERDICT_HDR, _NF_ACCEPT_BE, htonl(pid),
                                         4 + n, NFQA_PAYLOAD))
        out.append(payload)
        if pad:
            out.append(_PAD[pad])
        self._out_bytes += length
        if self._out_bytes >= FLUSH_BYTES:
            self.flush()

    def accept_plain(self, pid: int) -> None:
        """ACCEPT without changes: one NFQNL_MSG_VERDICT_BATCH at flush covers every such
        packet (it accepts all ids up to its own still queued), unless a held packet is among them."""
        if self.held:
            self.held.discard(pid)
        self._plain.append(pid)
        if len(self._plain) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._plain:
            if self.held:
                for pid in self._plain:
                    self._out.append(_VERDICT.pack(32, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, 0, socket.AF_UNSPEC,
                                                   0, self._res_id, 12, NFQA_VERDICT_HDR, htonl(NF_ACCEPT),
                                                   htonl(pid)))
            else:
                # after the single verdicts in the same datagram, which the kernel takes in order
                self._out.append(_VERDICT.pack(32, NFQNL_MSG_VERDICT_BATCH, NLM_F_REQUEST, 0, 0, socket.AF_UNSPEC,
                                               0, self._res_id, 12, NFQA_VERDICT_HDR, htonl(NF_ACCEPT),
                                               htonl(max(self._plain))))
            self._plain.clear()
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        self._out_bytes = 0
        try:
            self.sock.send(data)
        except OSError:
            # (a send buffer smaller than the batch, say): one message at a
            # time, so that no packet waits in the kernel for a lost verdict
            off = 0
            while off + 16 <= len(data):
                mlen = _LEN_TYPE.unpack_from(data, off)[0]
                try:
                    self.sock.send(data[off:off + mlen])
                except OSError:
                    self.stats["errors"] += 1
                off += (mlen + 3) & ~3

    def _parse(self, start: int, end: int) -> QueuedPacket | None:
        """The packet message at `start` (ending at `end`) as a QueuedPacket; None without a header."""
        f = self._fields(start, end)
        return None if f is None else QueuedPacket(self, *f)

    def _fields(self, start: int, end: int) -> Fields | None:
        """The packet message at `start` (ending at `end`): (id, hook, hw_protocol, indev,
        outdev, mark, hwaddr, payload); None without a header."""
        buf = self._buf
        off = start + 20  # nlmsghdr + nfgenmsg
        pid = -1
        hook = hw = indev = outdev = mark = 0
        hwaddr: bytes | None = None
        payload = b""
        info = 0 if self.gso else SKB_INFO_UNKNOWN
        unpack_attr = _ATTR.unpack_from
        if off + 12 <= end and unpack_attr(buf, off) == (11, NFQA_PACKET_HDR):  # where the kernel puts it
            pid, hw, hook = _PKT_HDR.unpack_from(buf, off + 4)
            off += 12
        while off + 4 <= end:
            alen, atype = unpack_attr(buf, off)
            if alen < 4:
                break
            atype &= 0x3FFF
            if atype == NFQA_PAYLOAD:
                payload = self._mv[off + 4:off + alen].tobytes()
                break  # the kernel puts it last
            if atype == NFQA_IFINDEX_INDEV:
                indev = _BE32.unpack_from(buf, off + 4)[0]
            elif atype == NFQA_HWADDR:
                if alen >= 16:
                    hwaddr = bytes(buf[off + 8:off + 16])
            elif atype == NFQA_MARK:
                mark = _BE32.unpack_from(buf, off + 4)[0]
            elif atype == NFQA_IFINDEX_OUTDEV:
                outdev = _BE32.unpack_from(buf, off + 4)[0]
            elif atype == NFQA_SKB_INFO:
                if self.gso and alen >= 8:
                    info = _BE32.unpack_from(buf, off + 4)[0]
            elif atype == NFQA_PACKET_HDR:
                pid, hw, hook = _PKT_HDR.unpack_from(buf, off + 4)
            off += (alen + 3) & ~3
        if pid < 0:
            return None
        return pid, hook, hw, indev, outdev, mark, hwaddr, payload, info

    def run(self, block: bool = True) -> None:
        """Serve the waiting packets (a batch at a time, verdicts sent after each batch);
        with block, wait for the first one; without, return when none waits."""
        recv_into = self.sock.recv_into
        buf = self._buf
        fields = self._fields
        fast = self.fast
        mv = self._mv
        unpack_common = _COMMON_HEAD.unpack_from
        gso = self.gso
        no_info = 0 if gso else SKB_INFO_UNKNOWN
        ntohl = socket.ntohl
        ntohs = socket.ntohs
        callback = self.callback
        flags = 0 if block else socket.MSG_DONTWAIT
        served = 0
        try:
            while callback is not None and self.callback is not None:
                try:
                    size = recv_into(buf, 0, flags)
                except BlockingIOError:
                    if not (self._out or self._plain):
                        break
                    # Verdicts reinject their packets within the send: one
                    # that comes back to the queue (a later hook) is waiting
                    # as it returns, and is served now rather than after
                    # another wait in the caller's select.  Only a
                    # QueuedPacket's accept may do that: the fast handler's
                    # forwarded packets go out (the caller's select would
                    # see anything they made).
                    self.flush()
                    if not self.requeue:
                        break
                    self.requeue = False
                    continue
                except InterruptedError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.ENOBUFS:  # the kernel could not hand us some packets
                        self.stats["enobufs"] += 1
                        continue
                    raise
                flags = socket.MSG_DONTWAIT
                off = 0
                while off + 16 <= size:
                    mlen, mtype = _LEN_TYPE.unpack_from(buf, off)
                    if mlen < 16:
                        break
                    if mtype == NFQNL_MSG_PACKET:
                        end = min(off + mlen, size)
                        f = None
                        if end - off >= 68:  # (a shorter one is no IP packet)
                            h = unpack_common(buf, off + 20)
                            if h[0] == 11 and h[1] == NFQA_PACKET_HDR and h[5] == 8 and h[6] == NFQA_IFINDEX_INDEV \
                                    and h[8] == 16 and h[9] == NFQA_HWADDR:
                                t = h[12]
                                if t == NFQA_PAYLOAD and 4 <= h[11] <= end - off - 56:
                                    f = (ntohl(h[2]), h[4], ntohs(h[3]), ntohl(h[7]), 0, 0, h[10],
                                         mv[off + 60:off + 56 + h[11]].tobytes(), no_info)
                                elif t == NFQA_SKB_INFO and h[11] == 8 and h[15] == NFQA_PAYLOAD and gso \
                                        and 4 <= h[14] <= end - off - 64:
                                    f = (ntohl(h[2]), h[4], ntohs(h[3]), ntohl(h[7]), 0, 0, h[10],
                                         mv[off + 68:off + 64 + h[14]].tobytes(), ntohl(h[13]))
                        if f is None:
                            f = fields(off, end)
                        if f is not None:
                            served += 1
                            if fast is None or not fast(f):
                                qp = QueuedPacket(self, *f)
                                callback(qp)
                                if not qp.done:
                                    self.held.add(qp.id)
                    elif mtype == NLMSG_ERROR and struct.unpack_from("=i", buf, off + 16)[0]:
                        self.stats["errors"] += 1  # a verdict the kernel refused (e.g. a stale id)
                    off += (mlen + 3) & ~3
                if served >= BATCH:
                    self.stats["batches"] += 1
                    self.stats["packets"] += served
                    served = 0
                    self.flush()
                    if not block:
                        break  # let the caller's loop serve its socket too
        finally:
            if served:
                self.stats["batches"] += 1
                self.stats["packets"] += served
            self.flush()
