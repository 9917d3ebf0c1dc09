"""SACK: negotiation, the blocks our ACKs carry, the sender's scoreboard
and RFC 6675 recovery against a scripted peer."""

from __future__ import annotations

import struct

from raw_peer import HOST, Peer
from stack_sim import A_ADDR, B_ADDR, Faults, HttpGet, Sim, pair

from pyfw.stack import Stack
from pyfw.stack.http import status_app
from pyfw.stack.sack import Scoreboard, sack_option
from pyfw.stack.tcp import Connection
from pyfw.wire.tcp import ACKF, SYN, parse_options

SYN_OPTS = bytes((2, 4, 5, 0xB4, 1, 1, 4, 2, 1, 3, 3, 7))   # MSS 1460, SACK-permitted, wscale 7


class Keep:
    conns: list[Connection] = []
    data = bytearray()

    def __init__(self, conn: Connection) -> None:
        Keep.conns.append(conn)

    def on_data(self, conn: Connection, data: bytes) -> None:
        Keep.data += data

    def on_close(self, conn: Connection) -> None:
        pass


def _server(sack: bool = True) -> Stack:
    Keep.conns = []
    Keep.data = bytearray()
    s = Stack(secret=b"s" * 32, sack=sack)
    s.listen(HOST, 80, Keep)
    return s


def _open(s: Stack, opts: bytes = SYN_OPTS) -> tuple[Peer, int]:
    peer = Peer(s)
    (sa,) = peer.send(SYN, options=opts)
    peer.ack = sa.seq + 1
    peer.send(ACKF)
    return peer, sa.seq + 1


def test_negotiation() -> None:
    s = _server()
    peer = Peer(s)
    (sa,) = peer.send(SYN, options=SYN_OPTS)
    assert sa.opts.sack_perm
    (sa,) = Peer(s, sport=2).send(SYN, options=SYN_OPTS[:4])
    assert not sa.opts.sack_perm                   # only when the peer offered it
    (sa,) = Peer(_server(sack=False), sport=3).send(SYN, options=SYN_OPTS)
    assert not sa.opts.sack_perm                   # or when turned off
    a = Stack(secret=b"a" * 32)
    a.connect(A_ADDR, 1, B_ADDR, 2, Keep(None), now=0.0)  # type: ignore[arg-type]
    (syn,) = a.output(0.0)
    opts = parse_options(syn[40:20 + (syn[32] >> 4) * 4])
    assert opts.sack_perm and opts.mss == 1460 and opts.wscale is not None


def test_receiver_sack_blocks() -> None:
    s = _server()
    peer, _ = _open(s)
    b = peer.seq
    (d1,) = peer.send(ACKF, b"x" * 100, seq=b + 100, advance=False)
    assert d1.ack == b and d1.opts.sack == [(b + 100, b + 200)]
    (d2,) = peer.send(ACKF, b"y" * 100, seq=b + 300, advance=False)
    assert d2.opts.sack == [(b + 300, b + 400), (b + 100, b + 200)]   # the latest first
    (d3,) = peer.send(ACKF, b"z" * 100, seq=b + 200, advance=False)   # joins the two
    assert d3.opts.sack == [(b + 100, b + 400)]
    (ack,) = peer.send(ACKF, b"w" * 100, seq=b, advance=False)
    assert ack.ack == b + 400 and ack.opts.sack == []
    assert bytes(Keep.data) == b"w" * 100 + b"x" * 100 + b"z" * 100 + b"y" * 100


def test_sack_option_at_most_four_blocks() -> None:
    ooo = [(i * 10, b"a" * 5) for i in range(1, 8)]
    opt = sack_option(ooo, 30)
    assert opt[:4] == bytes((1, 1, 5, 34))
    blocks = [struct.unpack("!II", opt[i:i + 8]) for i in range(4, 36, 8)]
    assert blocks == [(30, 35), (70, 75), (60, 65), (50, 55)]


def test_scoreboard() -> None:
    sb = Scoreboard()
    assert sb.add(3000, 4000) and sb.add(5000, 6000) and not sb.add(5200, 5800)
    assert sb.add(4000, 4500) and sb.ranges == [(3000, 4500), (5000, 6000)]
    assert sb.sacked_bytes == 2500
    assert sb.holes(1000) == [(1000, 3000), (4500, 5000)]
    mss = 1000
    assert sb.is_lost(1000, mss) and not sb.is_lost(4500, mss)
    assert sb.next_lost(1000, 1000, mss) == (1000, 2000)
    assert sb.next_lost(1000, 2000, mss) == (2000, 3000)
    assert sb.next_lost(1000, 3000, mss) is None       # 4500.. has only 1000 bytes SACKed above
    # pipe: 6000-1000 outstanding, 2500 SACKed, the 2000-byte lost hole not in flight
    assert sb.pipe(1000, 6000, 1000, mss) == 5000 - 2500 - 2000
    assert sb.pipe(1000, 6000, 2000, mss) == 5000 - 2500 - 1000   # one resent
    assert sb.skip(1000) == (1000, 3000) and sb.skip(3500) == (4500, 5000) and sb.skip(5500) == (6000, None)
    sb.prune(3500)
    assert sb.ranges == [(3500, 4500), (5000, 6000)] and sb.sacked_bytes == 2000


def test_sack_recovery_resends_every_hole_in_one_round() -> None:
    s = _server()
    peer, iss1 = _open(s)
    conn = Keep.conns[0]
    assert conn.sack_ok
    conn.send(bytes(1460 * 10))
    segs = peer.out()
    assert len(segs) == 10
    base = segs[0].seq
    m = 1460
    # segments 0 and 4 lost; the peer SACKs 1-3 and 5-9 as they arrive
    sack = b""
    out = []
    for right in (2, 3, 4):
        sack = bytes((1, 1, 5, 10)) + struct.pack("!II", base + m, base + right * m)
        out += peer.send(ACKF, ack=base, options=sack, advance=False)
    for right in range(6, 11):
        sack = bytes((1, 1, 5, 18)) + struct.pack("!IIII", base + 5 * m, base + right * m, base + m, base + 4 * m)
        out += peer.send(ACKF, ack=base, options=sack, advance=False)
    resent = [x.seq for x in out if x.payload]
    assert resent[:2] == [base, base + 4 * m]        # both holes, no RTO, no partial-ACK round trip
    assert conn.in_recovery and s.counters["FastRetrans"] == 1 and s.counters["Timeouts"] == 0
    peer.send(ACKF, ack=base + 10 * m, advance=False)
    assert not conn.in_recovery and conn.cwnd <= conn.ssthresh


def test_in_memory_transfer_without_sack_one_side() -> None:
    """A peer that declines SACK gets NewReno from us, and the transfer holds."""
    a, b = pair("cubic")
    b2 = Stack(cc="reno", secret=b"n" * 32, sack=False)
    b2.listen(B_ADDR, 80, status_app(lambda: {}))
    sim = Sim(a, b2, seed=9, rate=5_000_000, delay=0.004, faults=Faults(loss=0.01, dup=0.01, reorder=0.02))
    app = HttpGet("/bytes?n=2000000")
    c = a.connect(A_ADDR, 40002, B_ADDR, 80, app, now=0.0)
    sim.run(lambda: app.closed, limit=60)
    assert app.complete and not c.sack_ok
    assert b2.counters["FastRetrans"] > 0 and b2.counters["StackErrors"] == 0
