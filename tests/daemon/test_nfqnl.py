"""pyfw.daemon.nfqnl without the kernel: the messages it writes and reads,
byte for byte as include/uapi/linux/netfilter/nfnetlink_queue.h lays them
out, and how verdicts are batched.  (The daemon's tests on namespaces run
it against the real NFQUEUE.)"""

from __future__ import annotations

import socket
import struct

import pytest

from pyfw.daemon import nfqnl
from pyfw.daemon.nfqnl import NF_ACCEPT, NF_DROP, NfQueue, QueuedPacket


def attr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def packet_message(pid: int, hook: int, payload: bytes, indev: int = 3, mark: int | None = None,
                   hw: bytes | None = b"\x02\x00\x00\x00\x01\x05") -> bytes:
    """A packet message in the kernel's attribute order (nfqnl_build_packet_message)."""
    body = struct.pack("!BBH", socket.AF_INET, 0, 7) + attr(nfqnl.NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x0800, hook))
    body += attr(nfqnl.NFQA_IFINDEX_INDEV, struct.pack("!I", indev))
    if mark is not None:
        body += attr(nfqnl.NFQA_MARK, struct.pack("!I", mark))
    if hw is not None:
        body += attr(nfqnl.NFQA_HWADDR, struct.pack("!H2x", len(hw)) + hw.ljust(8, b"\0"))
    body += attr(nfqnl.NFQA_PAYLOAD, payload)
    return struct.pack("=IHHII", 16 + len(body), nfqnl.NFQNL_MSG_PACKET, 0, 0, 0) + body


class FakeSocket:
    def __init__(self, incoming: list[bytes]) -> None:
        self.incoming = incoming
        self.sent: list[bytes] = []

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        if not self.incoming:
            raise BlockingIOError
        data = self.incoming.pop(0)
        buf[:len(data)] = data
        return len(data)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def fileno(self) -> int:
        return -1


def fake_queue(incoming: list[bytes], callback) -> tuple[NfQueue, FakeSocket]:
    sock = FakeSocket(incoming)
    q = NfQueue(sock)
    q.num, q.callback, q._res_id = 7, callback, socket.htons(7)
    return q, sock


def messages(datagram: bytes) -> list[tuple[int, bytes]]:
    """(type, body after nfgenmsg) of each netlink message in one datagram, and checks nfgenmsg."""
    out = []
    off = 0
    while off < len(datagram):
        length, mtype, flags, _seq, _pid = struct.unpack_from("=IHHII", datagram, off)
        assert flags & nfqnl.NLM_F_REQUEST
        family, version, res_id = struct.unpack_from("!BBH", datagram, off + 16)
        assert (family, version, res_id) == (socket.AF_UNSPEC, 0, 7)
        out.append((mtype, datagram[off + 20:off + length]))
        off += (length + 3) & ~3
    return out


def attrs(body: bytes) -> dict[int, bytes]:
    out = {}
    off = 0
    while off < len(body):
        alen, atype = struct.unpack_from("=HH", body, off)
        out[atype] = body[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def test_config_message_layout() -> None:
    msg = nfqnl.config_message(5, cmd=nfqnl.NFQNL_CFG_CMD_BIND, copy_range=0xFFFF, maxlen=8192,
                               flags=nfqnl.NFQA_CFG_F_FAIL_OPEN, mask=nfqnl.NFQA_CFG_F_FAIL_OPEN, seq=9)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, flags, seq) == (len(msg), 0x302, nfqnl.NLM_F_REQUEST | nfqnl.NLM_F_ACK, 9)
    assert struct.unpack_from("!BBH", msg, 16) == (socket.AF_UNSPEC, 0, 5)
    a = attrs(msg[20:])
    assert a[nfqnl.NFQA_CFG_CMD] == struct.pack("!BxH", 1, socket.AF_INET)
    assert a[nfqnl.NFQA_CFG_PARAMS] == struct.pack("!IB", 0xFFFF, nfqnl.NFQNL_COPY_PACKET)   # 5 bytes, packed
    assert a[nfqnl.NFQA_CFG_QUEUE_MAXLEN] == struct.pack("!I", 8192)
    assert a[nfqnl.NFQA_CFG_MASK] == a[nfqnl.NFQA_CFG_FLAGS] == struct.pack("!I", 1)


def test_packets_are_parsed_and_plain_accepts_become_one_batch_verdict() -> None:
    seen: list[QueuedPacket] = []

    def cb(p: QueuedPacket) -> None:
        seen.append(p)
        p.accept()

    q, sock = fake_queue([packet_message(10, 0, b"A" * 60, mark=0x42), packet_message(11, 3, b"B" * 61, hw=None),
                          packet_message(12, 0, b"C" * 62)], cb)
    q.run(block=False)
    assert [(p.id, p.hook, p.indev, p.mark, p.get_payload()) for p in seen] == \
        [(10, 0, 3, 0x42, b"A" * 60), (11, 3, 3, 0, b"B" * 61), (12, 0, 3, 0, b"C" * 62)]
    assert seen[0].get_hw() == b"\x02\x00\x00\x00\x01\x05\x00\x00" and seen[1].get_hw() is None
    assert len(sock.sent) == 1                       # one send for the whole wakeup
    (mtype, body), = messages(sock.sent[0])
    assert mtype == nfqnl.NFQNL_MSG_VERDICT_BATCH
    assert attrs(body)[nfqnl.NFQA_VERDICT_HDR] == struct.pack("!II", NF_ACCEPT, 12)
    assert q.stats["packets"] == 3


def test_changed_packets_get_their_own_verdicts_before_the_batch() -> None:
    def cb(p: QueuedPacket) -> None:
        if p.id == 20:
            p.set_payload(b"new!x")
            p.set_mark(0x50F20000)
            p.accept()
        elif p.id == 21:
            p.drop()
        else:
            p.accept()

    q, sock = fake_queue([packet_message(i, 0, b"x" * 40) for i in (20, 21, 22)], cb)
    q.run(block=False)
    msgs = messages(b"".join(sock.sent))
    assert [m[0] for m in msgs] == [nfqnl.NFQNL_MSG_VERDICT, nfqnl.NFQNL_MSG_VERDICT, nfqnl.NFQNL_MSG_VERDICT_BATCH]
    first = attrs(msgs[0][1])
    assert first[nfqnl.NFQA_VERDICT_HDR] == struct.pack("!II", NF_ACCEPT, 20)
    assert first[nfqnl.NFQA_MARK] == struct.pack("!I", 0x50F20000)
    assert first[nfqnl.NFQA_PAYLOAD] == b"new!x"
    assert attrs(msgs[1][1])[nfqnl.NFQA_VERDICT_HDR] == struct.pack("!II", NF_DROP, 21)
    assert attrs(msgs[2][1])[nfqnl.NFQA_VERDICT_HDR] == struct.pack("!II", NF_ACCEPT, 22)


def test_a_held_packet_is_not_swept_up_by_a_batch_verdict() -> None:
    held: list[QueuedPacket] = []

    def cb(p: QueuedPacket) -> None:
        if p.id == 31:
            held.append(p)             # kept for later: no verdict now
        else:
            p.accept()

    q, sock = fake_queue([packet_message(i, 0, b"x" * 40) for i in (30, 31, 32)], cb)
    q.run(block=False)
    msgs = messages(b"".join(sock.sent))
    assert [(m[0], attrs(m[1])[nfqnl.NFQA_VERDICT_HDR]) for m in msgs] == \
        [(nfqnl.NFQNL_MSG_VERDICT, struct.pack("!II", NF_ACCEPT, 30)),
         (nfqnl.NFQNL_MSG_VERDICT, struct.pack("!II", NF_ACCEPT, 32))]
    assert q.held == {31}
    held[0].drop()
    q.flush()
    assert q.held == set()
    assert attrs(messages(sock.sent[-1])[0][1])[nfqnl.NFQA_VERDICT_HDR] == struct.pack("!II", NF_DROP, 31)


def test_a_large_wakeup_is_served_in_batches() -> None:
    q, sock = fake_queue([packet_message(i, 0, b"y" * 1400) for i in range(1, 601)], lambda p: p.set_payload(b"z" * 1400) or p.accept())
    q.run(block=False)
    assert q.stats["packets"] == nfqnl.BATCH      # back to the caller's loop after one batch
    while q.sock.incoming:                         # type: ignore[attr-defined]
        q.run(block=False)
    ids = [struct.unpack("!II", attrs(body)[nfqnl.NFQA_VERDICT_HDR])[1] for d in sock.sent for _t, body in messages(d)]
    assert ids == list(range(1, 601))
    assert all(len(d) <= nfqnl.FLUSH_BYTES + 1500 for d in sock.sent)


@pytest.mark.parametrize("junk", [b"", b"\0" * 15, struct.pack("=IHHII", 8, 0x300, 0, 0, 0),
                                  struct.pack("=IHHII", 20, 0x300, 0, 0, 0) + b"\0" * 4])
def test_malformed_messages_are_skipped(junk: bytes) -> None:
    calls = []
    q, _sock = fake_queue([junk, packet_message(5, 0, b"ok")], lambda p: calls.append(p.id) or p.accept())
    q.run(block=False)
    assert calls == [5]


def test_ttl_back_keeps_the_header_checksum_valid() -> None:
    import random

    from pyfw.daemon.nfqueue import _ttl_back
    from pyfw.wire.checksum import checksum

    rnd = random.Random(5)
    for ttl in [0, 1, 63, 64, 254, 255] + [rnd.randrange(256) for _ in range(200)]:
        hdr = bytearray(rnd.randbytes(20))
        hdr[0], hdr[8], hdr[10:12] = 0x45, ttl, b"\0\0"
        struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
        out = _ttl_back(b"\x02" * 14 + bytes(hdr) + b"data")
        assert out[8] == min(ttl + 1, 255)
        assert out[:8] == hdr[:8] and out[9:10] == hdr[9:10] and out[12:] == hdr[12:] + b"data"
        assert checksum(out[:20]) in (0, 0xFFFF)


def test_a_batch_the_socket_refuses_goes_one_message_at_a_time() -> None:
    class SmallBuffer(FakeSocket):
        def send(self, data: bytes) -> int:
            if len(data) > 2000:
                raise OSError(90, "Message too long")
            return super().send(data)

    q, _ = fake_queue([], None)
    q.sock = sock = SmallBuffer([packet_message(i, 0, b"p" * 1000) for i in range(1, 9)])
    q.callback = lambda p: p.set_payload(b"q" * 1000) or p.accept()
    q.run(block=False)
    ids = [struct.unpack("!II", attrs(body)[nfqnl.NFQA_VERDICT_HDR])[1] for d in sock.sent for _t, body in messages(d)]
    assert ids == list(range(1, 9)) and q.stats["errors"] == 0
