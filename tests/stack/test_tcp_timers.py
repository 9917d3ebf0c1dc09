"""Timers and loss recovery: RFC 6298 RTO (estimation, Karn, backoff,
limits), SYN retransmission, the persist timer, fast retransmit and
NewReno partial ACKs, and the congestion controllers' arithmetic."""

from __future__ import annotations

import pytest
from raw_peer import HOST, Peer, Seg
from stack_sim import A_ADDR, B_ADDR, Collector, Sim, pair

from pyfw.stack import Stack
from pyfw.stack.cc import Cubic, make
from pyfw.stack.rtt import MIN_RTO, RttEstimator
from pyfw.stack.tcp import Connection
from pyfw.wire.tcp import ACKF, SYN


class Holder:
    conns: list[Connection] = []

    def __init__(self, conn: Connection) -> None:
        self.closed = 0
        Holder.conns.append(conn)
        Holder.apps.append(self)

    apps: list[Holder] = []

    def on_data(self, conn: Connection, data: bytes) -> None:
        pass

    def on_close(self, conn: Connection) -> None:
        self.closed += 1


@pytest.fixture()
def server() -> Stack:
    Holder.conns.clear()
    Holder.apps.clear()
    s = Stack(cc="reno", secret=b"t" * 32)
    s.listen(HOST, 80, Holder)
    return s


def _times(peer: Peer, until: float, step: float = 0.001) -> list[tuple[float, Seg]]:
    """Advance the clock through every deadline up to `until`, collecting output."""
    got = []
    while True:
        d = peer.stack.next_deadline()
        if d is None or d > until:
            return got
        for seg in peer.tick(d):
            got.append((d, seg))


def test_rtt_estimator_rfc6298() -> None:
    r = RttEstimator()
    assert r.rto == 1.0
    r.sample(0.1)
    assert r.srtt == pytest.approx(0.1) and r.rttvar == pytest.approx(0.05)
    assert r.rto == pytest.approx(0.3)            # 0.1 + 4 * 0.05
    r.sample(0.3)
    assert r.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert r.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    r2 = RttEstimator()
    r2.sample(0.001)
    assert r2.rto == MIN_RTO                      # Linux's 200 ms floor
    r2.backoff()
    r2.backoff()
    assert r2.rto == pytest.approx(0.8)
    for _ in range(20):
        r2.backoff()
    assert r2.rto == 120.0


def test_syn_retransmission_backoff_and_give_up() -> None:
    a = Stack(secret=b"q" * 32)
    app = Collector()
    c = a.connect(A_ADDR, 4000, B_ADDR, 80, app, now=0.0)
    sent = [0.0] if a.output(0.0) else []
    t = 0.0
    while (d := a.next_deadline()) is not None:
        t = d
        if a.output(t):
            sent.append(t)
    # Linux: 1 s initial RTO doubling, tcp_syn_retries = 6, then it gives up
    assert sent == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert t == 127.0 and c.state == "CLOSED" and c.error == "timeout" and app.closed


def test_data_rto_backoff_then_abort(server: Stack) -> None:
    peer = Peer(server)
    peer.now = 0.0
    peer.send(SYN, options=bytes((2, 4, 5, 0xB4)))
    peer.now = 0.05                                # 50 ms handshake RTT
    peer.ack = server.connections()[0].iss + 1
    peer.send(ACKF)
    conn = Holder.conns[0]
    assert conn.rtt.srtt == pytest.approx(0.05)
    conn.send(b"x" * 100)
    (first,) = peer.out()
    got = _times(peer, 2000.0)
    times = [0.05] + [t for t, s in got if s.payload]
    assert all(s.seq == first.seq and s.payload == first.payload for _, s in got if s.payload)
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:])]
    # RTO 0.2 s (0.05 + 4*0.025 is below Linux's floor), doubling, capped at 120 s; 15 retries
    expect = [min(120.0, 0.2 * 2 ** i) for i in range(15)]
    assert gaps == pytest.approx(expect)
    assert conn.state == "CLOSED" and conn.error == "timeout" and Holder.apps[0].closed == 1


def test_karn_no_sample_from_retransmitted_segment(server: Stack) -> None:
    peer = Peer(server)
    peer.handshake()
    conn = Holder.conns[0]
    srtt = conn.rtt.srtt
    conn.send(b"y" * 10)
    peer.out()
    (re,) = peer.tick(conn.rto_at or 0)          # retransmitted after the RTO
    peer.ack = re.seq + 10
    peer.now += 0.01
    peer.send(ACKF)
    assert conn.rtt.srtt == srtt                  # no sample: ambiguous
    assert conn.rtt.backoffs == 1                 # and the backed-off RTO stays
    conn.send(b"z" * 10)
    (new,) = peer.out()
    peer.now += 0.03
    peer.ack = new.seq + 10
    peer.send(ACKF)
    assert conn.rtt.srtt != srtt and conn.rtt.backoffs == 0


def test_fast_retransmit_and_newreno_partial_ack(server: Stack) -> None:
    peer = Peer(server)
    peer.handshake()
    conn = Holder.conns[0]
    conn.send(bytes(1460 * 8))
    segs = peer.out()
    assert len(segs) == 8 and conn.cwnd == 10 * 1460
    s0 = segs[0].seq
    # segments 1 and 4 lost: ACK seg 0, then dupacks for 2, 3
    peer.ack = s0 + 1460
    peer.send(ACKF)
    for _ in range(3):
        out = peer.send(ACKF)
    (rx,) = [s for s in out if s.payload]
    assert rx.seq == s0 + 1460                    # fast retransmit of the hole, before any RTO
    assert conn.in_recovery and conn.ssthresh == 7 * 1460 // 2 and conn.cwnd == conn.ssthresh + 3 * 1460
    assert server.counters["FastRetrans"] == 1
    # partial ACK (up to the second hole): the next hole goes at once (RFC 6582)
    peer.ack = s0 + 4 * 1460
    out = peer.send(ACKF)
    assert [s.seq for s in out if s.payload][0] == s0 + 4 * 1460
    assert conn.in_recovery
    # full ACK: recovery over, cwnd deflated to at most ssthresh
    peer.ack = s0 + 8 * 1460
    peer.send(ACKF)
    assert not conn.in_recovery and conn.cwnd <= conn.ssthresh


def test_persist_probes_zero_window_then_resume(server: Stack) -> None:
    peer = Peer(server)
    peer.handshake()
    conn = Holder.conns[0]
    peer.send(ACKF, win=0, advance=False)         # the peer's window closes
    assert conn.snd_wnd == 0
    conn.send(b"w" * 3000)
    assert peer.out() == []                       # nothing may go
    got = _times(peer, 3.0)
    probes = [(t, s) for t, s in got]
    assert probes and all(not s.payload and s.seq == ((conn.snd_una - 1) & 0xFFFFFFFF) for _, s in probes)
    gaps = [round(b[0] - a[0], 6) for a, b in zip(probes, probes[1:])]
    assert all(g2 == pytest.approx(2 * g1) for g1, g2 in zip(gaps, gaps[1:]))   # backoff
    # the window opens (answering a probe): the data flows
    out = peer.send(ACKF, win=65535, advance=False)
    assert sum(len(s.payload) for s in out) == 3000
    assert not conn.persist


def test_zero_window_receiver_pause_in_memory() -> None:
    a, b = pair(rcvbuf=65536)
    sinks: list[Collector] = []

    def factory(conn: Connection) -> Collector:
        col = Collector()
        conn.pause_reading()
        sinks.append(col)
        return col

    b.listen(0, 7, factory)
    sim = Sim(a, b, delay=0.001)
    data = bytes(range(256)) * 1024              # 256 KB, four windows
    sender = Collector()
    c = a.connect(A_ADDR, 1234, B_ADDR, 7, sender, now=0.0)
    c.send(data)
    c.close()
    sim.advance(2.0)
    (srv,) = b.connections()
    assert srv.rcv_adv == srv.rcv_nxt                # the window is shut ...
    assert 65536 - 32 <= len(srv.pending) <= 65536 + 32 and sinks[0].received == 0   # ... by the held data
    assert c.persist                               # the sender probes
    srv.resume_reading()
    sim.run(lambda: sinks[0].closed, limit=200)
    assert bytes(sinks[0].data) == data


def test_reno_growth() -> None:
    class W:
        cwnd = 0
        ssthresh = 0
        mss = 1000

        def flight_size(self) -> int:
            return self.cwnd

        def smoothed_rtt(self) -> float | None:
            return 0.1

    w = W()
    cc = make("reno")
    cc.initial_window(w)
    assert w.cwnd == 10_000
    cc.on_ack(w, 5000, 0.0)
    assert w.cwnd == 12_000                        # ABC: at most 2 SMSS per ACK
    cc.on_congestion(w, 0.0)
    assert w.ssthresh == 6000
    w.cwnd = w.ssthresh
    for _ in range(6):
        cc.on_ack(w, 1000, 0.0)
    assert w.cwnd == 7000                          # one SMSS per window in avoidance
    cc.on_rto(w, 0.0)
    assert w.cwnd == 1000 and w.ssthresh == 3500


def test_cubic_curve() -> None:
    class W:
        cwnd = 100_000
        ssthresh = 1 << 30
        mss = 1000

        def flight_size(self) -> int:
            return self.cwnd

        def smoothed_rtt(self) -> float | None:
            return 0.05

    w = W()
    cc = Cubic()
    cc.on_congestion(w, 0.0)
    assert w.ssthresh == 70_000 and cc.w_max == 100
    w.cwnd = w.ssthresh
    # K = cbrt(W_max (1 - beta) / C) = cbrt(100 * 0.3 / 0.4)
    t = 0.0
    while t < 4.0:
        cc.on_ack(w, 1000, t)
        t += 0.001
    assert cc.k == pytest.approx((30 / 0.4) ** (1 / 3))
    # near K the window sits at the plateau around W_max ...
    assert 95_000 <= w.cwnd <= 101_000
    while t < 8.0:
        cc.on_ack(w, 1000, t)
        t += 0.001
    # ... and beyond it grows convexly past W_max
    assert w.cwnd > 105_000
    # fast convergence: a loss below the old W_max lowers W_max further
    w.cwnd = 90_000
    cc.on_congestion(w, t)
    assert cc.w_max == pytest.approx(90 * 1.7 / 2)


def test_cwnd_restarts_after_idle(server: Stack) -> None:
    peer = Peer(server)
    peer.handshake()
    conn = Holder.conns[0]
    conn.send(bytes(1460 * 10))
    segs = peer.out()
    peer.ack = segs[-1].seq + len(segs[-1].payload)
    peer.send(ACKF)
    assert conn.cwnd > 10 * 1460
    peer.now = 5.0                                # idle much longer than the RTO
    conn.send(bytes(1460 * 20))
    assert len(peer.out()) == 10 and conn.cwnd == 10 * 1460


def test_small_window_peer_gets_half_window_segments(server: Stack) -> None:
    peer = Peer(server)
    peer.handshake(wscale=None)
    conn = Holder.conns[0]
    peer.send(ACKF, win=1000, advance=False)
    conn.send(bytes(5000))
    (seg,) = peer.out()
    assert len(seg.payload) == 1000               # the whole window, nothing in flight
    peer.ack = seg.seq + 1000
    out = peer.send(ACKF, win=600, advance=False)  # 600 >= half the largest window: sent
    assert [len(s.payload) for s in out] == [600]
    peer.ack += 300
    assert peer.send(ACKF, win=300, advance=False) == []   # 0 usable ... nothing
    peer.ack += 300
    out = peer.send(ACKF, win=1000, advance=False)
    assert [len(s.payload) for s in out] == [1000]


def test_cubic_hystart_leaves_slow_start_on_delay_rise() -> None:
    class W:
        cwnd = 40_000
        ssthresh = 1 << 30
        mss = 1000

        def flight_size(self) -> int:
            return self.cwnd

        def smoothed_rtt(self) -> float | None:
            return 0.02

    w = W()
    cc = Cubic()
    assert cc.wants_rtt_samples(w)
    snd_max = 100_000
    ack = 0
    for rnd, rtt in enumerate((0.020, 0.0215, 0.030)):
        for i in range(10):
            ack += 1000
            cc.on_rtt_sample(w, rtt + i * 1e-4, ack, snd_max)
            if rnd < 2:
                assert w.ssthresh == 1 << 30   # +1.5 ms is below the 4 ms threshold
        ack = snd_max
        snd_max += 100_000
    assert w.ssthresh == w.cwnd and cc.hystart_exits == 1
    assert not cc.wants_rtt_samples(w)


def test_lost_retransmission_resent_before_the_rto() -> None:
    import struct

    from raw_peer import HOST as H
    s = Stack(secret=b"r" * 32)
    Holder.conns.clear()
    s.listen(H, 80, Holder)
    peer = Peer(s)
    (sa,) = peer.send(SYN, options=bytes((2, 4, 5, 0xB4, 1, 1, 4, 2)))
    peer.ack = sa.seq + 1
    peer.now = 0.02
    peer.send(ACKF)                               # SRTT 20 ms
    conn = Holder.conns[0]
    m = 1460
    conn.send(bytes(m * 40))
    segs = peer.out()
    base = segs[0].seq

    def sack(right: int) -> bytes:
        return bytes((1, 1, 5, 10)) + struct.pack("!II", base + m, base + right * m)

    out = []
    for r in (2, 3, 4):                          # segment 0 lost: recovery, 0 resent at t=0.03
        peer.now = 0.03
        out += peer.send(ACKF, ack=base, options=sack(r), advance=False)
    assert [x.seq for x in out if x.payload][0] == base and conn.in_recovery
    # the retransmission is lost too; newer data keeps being SACKed
    again = []
    t = 0.031
    for r in range(5, 11):
        t += 0.01
        peer.now = t
        again += [x for x in peer.send(ACKF, ack=base, options=sack(r), advance=False) if x.payload]
    assert base in [x.seq for x in again]        # resent again, long before the 200 ms RTO
    assert s.counters["LostRetransmits"] >= 1 and s.counters["Timeouts"] == 0
