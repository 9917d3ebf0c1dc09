"""The RFC 9293 state machine, segment by segment, against a scripted peer."""

from __future__ import annotations

import pytest
from raw_peer import HOST, PEER, Peer, Seg
from stack_sim import A_ADDR, B_ADDR, Collector, Sim, pair

from pyfw.stack import Stack
from pyfw.stack.tcp import TIME_WAIT_LEN, Connection
from pyfw.wire.tcp import ACKF, FIN, PSH, RST, SYN


class Echo:
    """Server app: echoes data, closes when the peer does; records events."""

    instances: list[Echo] = []

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.data = bytearray()
        self.closed = 0
        Echo.instances.append(self)

    def on_data(self, conn: Connection, data: bytes) -> None:
        self.data += data
        conn.send(data)

    def on_close(self, conn: Connection) -> None:
        self.closed += 1


class Quiet(Echo):
    """Records, never answers, never closes by itself."""

    def on_data(self, conn: Connection, data: bytes) -> None:
        self.data += data


@pytest.fixture()
def stack() -> Stack:
    Echo.instances.clear()
    s = Stack(cc="reno", secret=b"k" * 32)
    s.listen(HOST, 80, Echo)
    s.listen(HOST, 81, Quiet)
    return s


def _conn(stack: Stack) -> Connection:
    (c,) = stack.connections()
    return c


def test_passive_open_syn_ack_options(stack: Stack) -> None:
    peer = Peer(stack)
    out = peer.send(SYN, options=bytes((2, 4, 0x05, 0xB4, 1, 3, 3, 7)))
    (sa,) = out
    assert sa.flags == SYN | ACKF and sa.ack == 1001
    assert sa.opts.mss == 1460 and sa.opts.wscale is not None and not sa.opts.sack_perm and sa.opts.ts_val is None
    assert sa.df and sa.ttl == 64 and sa.win <= 65535
    assert _conn(stack).state == "SYN_RCVD"
    assert Echo.instances == []           # the app exists only once established
    peer.ack = sa.seq + 1
    assert peer.send(ACKF) == []
    assert _conn(stack).state == "ESTABLISHED"
    assert len(Echo.instances) == 1


def test_no_window_scale_when_peer_offers_none(stack: Stack) -> None:
    peer = Peer(stack)
    (sa,) = peer.send(SYN, options=bytes((2, 4, 0x02, 0x18)))
    assert sa.opts.wscale is None and sa.opts.mss == 1460
    peer.ack = sa.seq + 1
    peer.send(ACKF)
    c = _conn(stack)
    assert c.rcv_wscale == 0 and c.snd_wscale == 0 and c.mss == 536   # the peer's MSS bounds ours


def test_data_echo_delayed_ack_and_window_scaling(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    sa = peer.handshake(wscale=2)
    c = _conn(stack)
    out = peer.send(ACKF | PSH, b"hello", win=1000)
    assert out == []                          # delayed ACK pending
    assert c.snd_wnd == 1000 << 2             # the peer's window, scaled
    assert stack.next_deadline() == pytest.approx(0.04)
    (ack,) = peer.tick(0.05)
    assert ack.flags == ACKF and ack.ack == peer.seq and ack.seq == sa.seq + 1
    assert ack.win << c.rcv_wscale >= stack.rcvbuf - (1 << c.rcv_wscale)
    # two segments: acknowledged at once
    peer.send(ACKF, b"a" * 100)
    (ack,) = peer.send(ACKF, b"b" * 100)
    assert ack.ack == peer.seq


def test_out_of_order_is_queued_and_acked_at_once(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    base = peer.seq
    (dup,) = peer.send(ACKF, b"BBBB", seq=base + 4)
    assert dup.ack == base                    # duplicate ACK for the hole
    (dup,) = peer.send(ACKF, b"CCCC", seq=base + 8)
    assert dup.ack == base
    (ack,) = peer.send(ACKF, b"AAAA", seq=base)   # fills the hole: immediate ACK
    assert ack.ack == base + 12
    assert bytes(Echo.instances[0].data) == b"AAAABBBBCCCC"
    # a full duplicate is acknowledged and not delivered twice
    (ack,) = peer.send(ACKF, b"AAAA", seq=base)
    assert ack.ack == base + 12
    assert bytes(Echo.instances[0].data) == b"AAAABBBBCCCC"


def test_overlapping_out_of_order_segments(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    b = peer.seq
    data = bytes(range(40))
    peer.send(ACKF, data[10:20], seq=b + 10)
    peer.send(ACKF, data[5:15], seq=b + 5)
    peer.send(ACKF, data[18:30], seq=b + 18)
    peer.send(ACKF, data[25:40], seq=b + 25)
    (ack,) = peer.send(ACKF, data[0:7], seq=b)
    assert ack.ack == b + 40
    assert bytes(Echo.instances[0].data) == data


def test_passive_close_close_wait_last_ack(stack: Stack) -> None:
    peer = Peer(stack)
    peer.handshake()
    (ack,) = peer.send(FIN | ACKF)
    c = _conn(stack)
    assert ack.ack == peer.seq and c.state == "CLOSE_WAIT"
    assert Echo.instances[0].closed == 1
    c.close()
    assert c.state == "LAST_ACK"
    (fin,) = peer.out()
    assert fin.flags == FIN | ACKF
    peer.ack = fin.seq + 1
    peer.send(ACKF)
    assert stack.connections() == []
    assert Echo.instances[0].closed == 1      # told once


def test_active_close_fin_wait_time_wait(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    c.close()
    (fin,) = peer.out()
    assert fin.flags == FIN | ACKF and c.state == "FIN_WAIT_1"
    peer.ack = fin.seq + 1
    assert peer.send(ACKF) == []
    assert c.state == "FIN_WAIT_2"
    peer.send(ACKF, b"late data")             # half-close: the peer may still send
    assert bytes(Echo.instances[0].data) == b"late data"
    (ack,) = peer.send(FIN | ACKF)
    assert ack.ack == peer.seq and c.state == "TIME_WAIT"
    assert stack.next_deadline() == pytest.approx(TIME_WAIT_LEN)
    # a retransmitted FIN is acknowledged again and restarts 2*MSL
    peer.now = 10.0
    (ack,) = peer.send(FIN | ACKF, seq=peer.seq - 1, advance=False)
    assert ack.ack == peer.seq
    assert stack.next_deadline() == pytest.approx(10.0 + TIME_WAIT_LEN)
    assert peer.tick(69.9) == [] and c.state == "TIME_WAIT"
    peer.tick(70.0)
    assert stack.connections() == [] and c.state == "CLOSED"


def test_simultaneous_close_closing(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    c.close()
    (fin,) = peer.out()
    # the peer's FIN crosses ours (it has not seen our FIN)
    (ack,) = peer.send(FIN | ACKF)
    assert c.state == "CLOSING" and ack.ack == peer.seq
    peer.ack = fin.seq + 1
    peer.send(ACKF)
    assert c.state == "TIME_WAIT"


def test_fin_wait_2_times_out(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    c.close()
    (fin,) = peer.out()
    peer.ack = fin.seq + 1
    peer.send(ACKF)
    assert c.state == "FIN_WAIT_2"
    peer.tick(61.0)
    assert stack.connections() == []


def test_rst_exact_resets_in_window_challenges_outside_ignored(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    # outside the window: ignored silently
    assert peer.send(RST, seq=peer.seq + 10_000_000, advance=False) == []
    # in the window but not RCV.NXT: a challenge ACK (RFC 5961 3.2), state unchanged
    (ch,) = peer.send(RST, seq=peer.seq + 100, advance=False)
    assert ch.flags == ACKF and ch.ack == peer.seq and c.state == "ESTABLISHED"
    assert stack.counters["ChallengeAcks"] == 1
    # exactly RCV.NXT: reset
    assert peer.send(RST | ACKF, advance=False) == []
    assert c.state == "CLOSED" and c.error == "reset" and Echo.instances[0].closed == 1
    assert stack.counters["EstabResets"] == 1


def test_syn_in_established_gets_challenge_ack(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    (ch,) = peer.send(SYN, seq=peer.seq + 5000, advance=False)
    assert ch.flags == ACKF and ch.ack == peer.seq
    assert c.state == "ESTABLISHED"
    peer.now = 0.1   # rate-limited: a second challenge within 500 ms is suppressed
    assert peer.send(SYN, seq=peer.seq + 7000, advance=False) == []


def test_unacceptable_ack_is_dropped(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    una = c.snd_una
    # acknowledges data never sent: an ACK back, segment dropped (data not delivered)
    (ack,) = peer.send(ACKF, b"xyz", ack=peer.ack + 1000, advance=False)
    assert ack.flags == ACKF
    assert c.snd_una == una and Echo.instances[0].data == b""


def test_out_of_window_data_acked_not_delivered(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    (ack,) = peer.send(ACKF, b"far", seq=peer.seq + (1 << 24), advance=False)
    assert ack.ack == peer.seq and Echo.instances[0].data == b""


def test_ack_to_listener_gets_rst_and_syn_ack_retransmitted(stack: Stack) -> None:
    peer = Peer(stack)
    (rst,) = peer.send(ACKF, seq=5, ack=777, advance=False)
    assert rst.flags == RST and rst.seq == 777
    # lost SYN-ACK: the peer's retransmitted SYN gets it again
    (sa1,) = peer.send(SYN, options=bytes((2, 4, 5, 0xB4)))
    (sa2,) = peer.send(SYN, seq=peer.seq - 1, options=bytes((2, 4, 5, 0xB4)), advance=False)
    assert sa2.flags == SYN | ACKF and sa2.seq == sa1.seq
    # the SYN-ACK timer resends it too, after the initial 1 s RTO
    (sa3,) = peer.tick(1.0)
    assert sa3.flags == SYN | ACKF and sa3.seq == sa1.seq
    # an ACK that acknowledges the wrong thing in SYN_RCVD gets an RST
    (rst,) = peer.send(ACKF, ack=sa1.seq + 50, advance=False)
    assert rst.flags == RST and rst.seq == sa1.seq + 50


def test_rst_in_syn_rcvd_returns_to_listen(stack: Stack) -> None:
    peer = Peer(stack)
    peer.send(SYN)
    assert _conn(stack).state == "SYN_RCVD"
    peer.send(RST)
    assert stack.connections() == []
    assert stack.wants(peer.datagram(SYN))    # still listening


def test_wants(stack: Stack) -> None:
    peer = Peer(stack, port=80)
    assert stack.wants(peer.datagram(SYN))
    # no listener: not ours (the engine answers); if it comes anyway, an RST as RFC 9293 says
    (rst,) = Peer(stack, port=8080).send(SYN)
    assert rst.flags == RST | ACKF and rst.ack == 1001 and rst.seq == 0
    assert not stack.wants(Peer(stack, port=8080).datagram(SYN))
    assert not stack.wants(b"\x45\x00")


def test_time_wait_reopened_by_new_syn(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    c.close()
    (fin,) = peer.out()
    peer.ack = fin.seq + 1
    peer.send(FIN | ACKF)
    assert c.state == "TIME_WAIT"
    old_snd = c.snd_nxt
    (sa,) = peer.send(SYN, seq=peer.seq + 100000)
    assert sa.flags == SYN | ACKF
    assert ((sa.seq - old_snd) & 0xFFFFFFFF) < 0x80000000     # the new ISN is past the old space
    assert _conn(stack).state == "SYN_RCVD"


def test_syn_backlog_drops_oldest_half_open() -> None:
    s = Stack(secret=b"x" * 32)
    s.listen(HOST, 80, Echo, backlog=8)
    for i in range(20):
        Peer(s, sport=20000 + i).send(SYN)
    assert len(s.connections()) == 8
    assert s.counters["SynDropped"] == 12
    # a real client still completes
    p = Peer(s, sport=40000)
    p.handshake()
    assert any(c.state == "ESTABLISHED" for c in s.connections())


def test_active_open_and_refused() -> None:
    a, b = pair()
    sim = Sim(a, b)
    app = Collector()
    c = a.connect(A_ADDR, 5555, B_ADDR, 9, app, now=0.0)
    assert c.state == "SYN_SENT"
    sim.run(lambda: app.closed, limit=5)
    assert app.closed and c.error == "refused" and not app.connected
    assert a.counters["AttemptFails"] == 1


def test_isn_keyed_and_clocked() -> None:
    s = Stack(secret=b"s" * 32)
    g = s._isn
    i1 = g.isn(HOST, 80, PEER, 1, 0.0)
    assert g.isn(HOST, 80, PEER, 2, 0.0) != i1
    assert g.isn(HOST, 80, PEER, 1, 1.0) == (i1 + 250_000) & 0xFFFFFFFF   # 4 us ticks
    assert Stack(secret=b"t" * 32)._isn.isn(HOST, 80, PEER, 1, 0.0) != i1


def test_malformed_input_counted_never_raises(stack: Stack) -> None:
    import random
    rng = random.Random(5)
    peer = Peer(stack)
    good = peer.datagram(SYN | ACKF, b"payload")
    for _ in range(2000):
        d = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            d[rng.randrange(len(d))] = rng.randrange(256)
        d = d[:rng.randint(0, len(d))]
        stack.input(bytes(d), 0.0)
        stack.wants(bytes(d))
    stack.input(b"", 0.0)
    stack.output(0.0)
    assert stack.counters["StackErrors"] == 0, stack.last_error
    assert stack.counters["InErrs"] + stack.counters["IpInErrors"] > 0


def test_segments_respect_peer_mss() -> None:
    s = Stack(secret=b"m" * 32, mtu=9000)
    s.listen(HOST, 80, Echo)
    peer = Peer(s)
    sa = peer.handshake(mss=1000)
    assert sa.opts.mss == 8960                 # ours from the MTU
    (echo,) = peer.send(ACKF | PSH, b"q" * 900)
    assert len(echo.payload) == 900 and echo.flags & PSH
    Echo.instances[-1].conn.send(b"z" * 5500)
    segs: list[Seg] = peer.out()
    assert [len(x.payload) for x in segs] == [1000] * 5 + [500]


def _icmp_about(seg_pkt: bytes, icmp_type: int, code: int, mtu: int = 0) -> bytes:
    """An ICMP error from a router quoting the stack's datagram `seg_pkt`."""
    from pyfw.wire import ipv4
    from pyfw.wire.checksum import checksum
    body = bytearray(8) + seg_pkt[:28]
    body[0], body[1] = icmp_type, code
    body[6], body[7] = mtu >> 8, mtu & 255
    c = checksum(body)
    body[2], body[3] = c >> 8, c & 255
    return bytes(ipv4.build(PEER, HOST, 1, body))


def test_icmp_frag_needed_lowers_mss_and_resends(stack: Stack) -> None:
    peer = Peer(stack, port=81)
    peer.handshake()
    c = _conn(stack)
    c.send(b"m" * 2920)
    raw = stack.output(0.0)
    assert len(raw) == 2
    err = _icmp_about(raw[0], 3, 4, mtu=1000)
    assert stack.wants(err)
    stack.input(err, 0.0)
    assert c.mss == 960 and stack.counters["PmtuUpdates"] == 1
    segs = peer.out()
    assert [len(x.payload) for x in segs] == [960, 960, 960, 40]
    # an error quoting a sequence number outside the flight is ignored
    seg = segs[0]
    seg.seq = (seg.seq + 10_000_000) & 0xFFFFFFFF
    stack.input(_icmp_about(stack_pkt(seg), 3, 4, mtu=600), 0.0)
    assert c.mss == 960 and stack.counters["OutOfWindowIcmps"] == 1
    # not ours: an ICMP error about some other connection
    seg.sport = 9
    assert not stack.wants(_icmp_about(stack_pkt(seg), 3, 4, 600))


def stack_pkt(seg: Seg) -> bytes:
    """A datagram as the stack would have sent `seg` (for quoting in ICMP)."""
    from pyfw.wire import ipv4, tcp
    return bytes(ipv4.build(HOST, PEER, 6, tcp.build(HOST, PEER, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags,
                                                     seg.win, b"", seg.payload)))


def test_icmp_unreachable_fails_syn_sent_only() -> None:
    a = Stack(secret=b"i" * 32)
    app = Collector()
    c = a.connect(HOST, 5000, PEER, 80, app, now=0.0)
    (syn,) = a.output(0.0)
    a.input(_icmp_about(syn, 3, 1), 0.1)          # host unreachable
    assert c.state == "CLOSED" and c.error == "unreachable" and app.closed
    # in ESTABLISHED it is a soft error only
    s = Stack(secret=b"j" * 32)
    s.listen(HOST, 80, Echo)
    peer = Peer(s)
    peer.handshake()
    conn = _conn(s)
    conn.send(b"x")
    (data,) = s.output(0.0)
    s.input(_icmp_about(data, 3, 3), 0.0)
    assert conn.state == "ESTABLISHED" and conn.soft_error == "unreachable"


def test_max_connections_refuses_syns() -> None:
    s = Stack(secret=b"c" * 32, max_connections=4)
    s.listen(HOST, 80, Echo)
    for i in range(4):
        Peer(s, sport=100 + i).handshake()
    assert Peer(s, sport=200).send(SYN) == []
    assert s.counters["ListenOverflows"] == 1 and len(s.connections()) == 4


def test_idle_timeout_closes() -> None:
    from pyfw.stack.http import status_app
    s = Stack(secret=b"d" * 32)
    s.listen(HOST, 80, status_app(lambda: {}, idle_timeout=30.0))
    peer = Peer(s)
    peer.handshake()
    c = _conn(s)
    assert peer.tick(29.0) == []
    (fin,) = peer.tick(30.0)
    assert fin.flags & FIN and c.state == "FIN_WAIT_1" and s.counters["IdleCloses"] == 1


def test_martian_sources_and_group_destinations_dropped(stack: Stack) -> None:
    from pyfw.stack.stack import parse_addr
    from pyfw.wire import ipv4, tcp
    for src, dst in (("224.0.0.1", "192.0.2.1"), ("255.255.255.255", "192.0.2.1"), ("0.0.0.0", "192.0.2.1"),
                     ("127.0.0.1", "192.0.2.1"), ("192.0.2.99", "255.255.255.255"), ("192.0.2.99", "239.1.1.1")):
        s, d = parse_addr(src), parse_addr(dst)
        seg = tcp.build(s, d, 1, 80, 1, 0, SYN, 1000)
        stack.input(bytes(ipv4.build(s, d, 6, seg)), 0.0)
    assert stack.output(0.0) == [] and stack.connections() == []
    assert stack.counters["IpInAddrErrors"] == 6


def test_abort_all_resets(stack: Stack) -> None:
    for i in range(3):
        Peer(stack, sport=500 + i).handshake()
    stack.abort_all()
    segs = Peer(stack).out()
    assert len(segs) == 3 and all(s.flags == RST for s in segs)
    assert stack.connections() == []


def test_super_segment_acked_at_once(stack: Stack) -> None:
    """A segment bigger than the MSS (the gateway hands GSO super-frames
    over whole) is acknowledged at once, not after the delayed-ACK timer."""
    peer = Peer(stack, port=81)
    peer.handshake()
    (ack,) = peer.send(ACKF, b"g" * 20000)
    assert ack.ack == peer.seq
    assert peer.send(ACKF, b"h" * 1460) == []      # one full segment: delayed
