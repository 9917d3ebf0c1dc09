"""Queue settings the NetfilterQueue binding does not offer.

The kernel takes a queue's configuration only from the netlink socket
bound to it, so these are sent on (a duplicate of) the binding's own
socket: NFQA_CFG_F_FAIL_OPEN, which makes the kernel accept packets
instead of dropping them while the queue is full, and a bigger receive
buffer (SO_RCVBUFFORCE, as root) so a burst waits in the socket rather
than being lost to ENOBUFS.
"""

from __future__ import annotations

import os
import socket
import struct

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_CONFIG = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 0x1
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SEQ = 0x50F7


def config_flags_message(num: int, flags: int, mask: int, seq: int = _SEQ) -> bytes:
    """NFQNL_MSG_CONFIG for queue `num` setting `flags` under `mask` (an ACK asked for)."""
    attrs = struct.pack("=HH", 8, NFQA_CFG_MASK) + struct.pack("!I", mask) + \
        struct.pack("=HH", 8, NFQA_CFG_FLAGS) + struct.pack("!I", flags)
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", num) + attrs
    head = struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_CONFIG,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return head + body


def _ack_error(sock: socket.socket, seq: int) -> int | None:
    """The error of our ACK if it is the first message waiting (0: done);
    None when something else (a queued packet) came first -- that one is
    left for the binding, and the ACK will be ignored by it."""
    try:
        peek = sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    if len(peek) < 20:
        return None
    _length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", peek)
    if mtype != NLMSG_ERROR or mseq != seq:
        return None
    sock.recv(65536, socket.MSG_DONTWAIT)
    return -int(struct.unpack_from("=i", peek, 16)[0])


def configure(fd: int, num: int, fail_open: bool, rcvbuf: int = 0) -> list[str]:
    """Apply the settings on the queue's socket `fd`; what did not work, as words."""
    problems: list[str] = []
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if rcvbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError as exc:
                problems.append(f"receive buffer of {rcvbuf} bytes: {exc.strerror}")
        flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
        try:
            sock.sendto(config_flags_message(num, flags, NFQA_CFG_F_FAIL_OPEN), (0, 0))
            err = _ack_error(sock, _SEQ)
            if err:
                problems.append(f"queue fail-open flag: {os.strerror(err)}")
        except OSError as exc:
            problems.append(f"queue fail-open flag: {exc.strerror}")
    finally:
        sock.close()  # the duplicate only: the binding keeps its socket
    return problems
