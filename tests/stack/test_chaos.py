"""Two stacks over a very bad link plus an off-path injector of random but
well-formed segments for the same connection: whatever happens, nothing
escapes as an exception, the state stays consistent, and what arrives is
always a prefix of what was sent (intact when the connection survives)."""

from __future__ import annotations

import random

import pytest
from stack_sim import A_ADDR, B_ADDR, Collector, Faults, Sim, pair

from pyfw.stack import Stack
from pyfw.stack.tcp import CLOSED, Connection
from pyfw.wire import ipv4, tcp
from pyfw.wire.tcp import ACKF, FIN, PSH, RST, SYN

FLAGS = [ACKF, ACKF | PSH, ACKF | FIN, RST, RST | ACKF, SYN, SYN | ACKF, FIN, 0, ACKF | SYN | FIN]


def _check(conn: Connection) -> None:
    if conn.state == CLOSED:
        return
    assert conn.snd_una <= conn.snd_nxt <= conn.snd_max
    assert conn.buf_seq <= conn.snd_una + 1     # only acknowledged data is freed
    assert conn.cwnd >= conn.mss or conn.state in ("SYN_SENT", "SYN_RCVD")
    assert conn.ooo_bytes == sum(len(d) for _, d in conn.ooo)
    for (s1, d1), (s2, _) in zip(conn.ooo, conn.ooo[1:]):
        assert s1 + len(d1) <= s2
    assert not conn.ooo or conn.ooo[0][0] > conn.rcv_nxt


def _run(seed: int, blind: bool) -> tuple[bytes, bytes, Stack, Stack, Connection, int]:
    """A 150 KB transfer A -> B through faults, with forged segments for the
    same 4-tuple injected both ways at random times.  `blind`: the forger
    does not know the sequence space (any seq, an ACK field outside what
    RFC 5961 accepts); else it forges near the live numbers."""
    rng = random.Random(seed)
    a, b = pair(rng.choice(["reno", "cubic"]))
    if seed % 3 == 0:
        b = Stack(cc="reno", secret=b"z" * 32, sack=False)
    sinks: list[Collector] = []

    def factory(conn: Connection) -> Collector:
        c = Collector()
        sinks.append(c)
        return c

    b.listen(B_ADDR, 7, factory)
    faults = Faults(loss=rng.uniform(0, 0.1), dup=rng.uniform(0, 0.1), reorder=rng.uniform(0, 0.2))
    sim = Sim(a, b, seed=seed, rate=2_000_000, queue=32_000, delay=0.002, faults=faults)
    data = rng.randbytes(150_000)
    sender = Collector()
    port = 3000 + seed
    conn = a.connect(A_ADDR, port, B_ADDR, 7, sender, now=0.0)
    conn.send(data)
    conn.close()
    injected = 0
    while sim.now < 120 and not (sinks and sinks[0].closed and conn.state in (CLOSED, "TIME_WAIT")):
        if not sim.step():
            break
        if rng.random() < 0.1:
            to_b = rng.random() < 0.5
            victim = (b.connections() or [None])[0] if to_b else conn
            if victim is None or victim.state == CLOSED:
                continue
            if blind:
                seq = rng.randrange(1 << 32)
                off = rng.randrange(1 << 24, (1 << 31) - (1 << 24))
                ack = (victim.snd_una + (off if rng.random() < 0.5 else -off)) & 0xFFFFFFFF
            else:
                seq = (victim.rcv_nxt + rng.randint(-70000, 70000)) & 0xFFFFFFFF
                ack = (victim.snd_una + rng.randint(-70000, 70000)) & 0xFFFFFFFF
            src, dst, sport, dport = (A_ADDR, B_ADDR, port, 7) if to_b else (B_ADDR, A_ADDR, 7, port)
            seg = tcp.build(src, dst, sport, dport, seq, ack, rng.choice(FLAGS), rng.randrange(65536), b"",
                            rng.randbytes(rng.randint(0, 1500)))
            (b if to_b else a).input(bytes(ipv4.build(src, dst, 6, seg)), sim.now)
            injected += 1
        _check(conn)
        for c in b.connections():
            _check(c)
    for st in (a, b):
        assert st.counters["StackErrors"] == 0, st.last_error
        assert st.counters["AppErrors"] == 0, st.last_app_error
    assert injected > 0
    return data, bytes(sinks[0].data) if sinks else b"", a, b, conn, injected


@pytest.mark.parametrize("seed", range(10))
def test_blind_injection_changes_nothing(seed: int) -> None:
    """RFC 5961's promise: without the sequence numbers a forger can neither
    reset the connection nor get data or ACKs accepted."""
    data, got, a, b, conn, _ = _run(seed, blind=True)
    assert got == data
    assert conn.error is None and b.counters["EstabResets"] == 0 and a.counters["EstabResets"] == 0


@pytest.mark.parametrize("seed", range(10))
def test_in_window_forgery_keeps_state_consistent(seed: int) -> None:
    """A forger that knows the numbers can break the stream (as with any TCP);
    the stacks must still neither raise nor lose their invariants."""
    _run(100 + seed, blind=False)
