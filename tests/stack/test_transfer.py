"""Two stacks over the in-memory link: bulk transfers arrive intact
(sha256) through loss, duplication and reordering, for Reno and CUBIC."""

from __future__ import annotations

import hashlib

import pytest
from stack_sim import A_ADDR, B_ADDR, Collector, Faults, HttpGet, Sim, http_pair, pair

from pyfw.stack.http import pattern_bytes

N = 10_000_000
FAULTY = Faults(loss=0.01, dup=0.01, reorder=0.02)


def _sha(n: int) -> str:
    return hashlib.sha256(pattern_bytes(n)).hexdigest()


@pytest.mark.parametrize("cc", ["reno", "cubic"])
@pytest.mark.parametrize("faults", [Faults(), FAULTY], ids=["clean", "faulty"])
def test_10mb_download_intact(cc: str, faults: Faults) -> None:
    sim, a, b = http_pair(cc, seed=7, rate=12_500_000, delay=0.005, faults=faults)
    app = HttpGet(f"/bytes?n={N}")
    a.connect(A_ADDR, 40000, B_ADDR, 80, app, now=0.0)
    sim.run(lambda: app.closed, limit=120)
    assert app.complete and app.closed
    assert app.hash.hexdigest() == _sha(N)
    assert a.counters["StackErrors"] == b.counters["StackErrors"] == 0, (a.last_error, b.last_error)
    assert a.counters["AppErrors"] == b.counters["AppErrors"] == 0
    if faults.loss:
        assert b.counters["RetransSegs"] > 0
    # both ends are gone or in TIME_WAIT: the server closed first (a
    # duplicated FIN may draw an RST from the client that ends it early)
    sim.advance(1.0)
    assert not a.connections()
    states = [c.state for c in b.connections()]
    assert states == ["TIME_WAIT"] or (faults.dup and states == [])
    sim.advance(61.0)
    assert not b.connections()


class Sink(Collector):
    pass


class Pusher:
    """Client that uploads `data` then closes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    def on_connect(self, conn):  # type: ignore[no-untyped-def]
        conn.send(self.data)
        conn.close()

    def on_data(self, conn, data):  # type: ignore[no-untyped-def]
        pass

    def on_close(self, conn):  # type: ignore[no-untyped-def]
        self.closed = True


@pytest.mark.parametrize("cc", ["reno", "cubic"])
def test_upload_with_faults_and_bottleneck(cc: str) -> None:
    a, b = pair(cc)
    sinks: list[Sink] = []

    def factory(conn):  # type: ignore[no-untyped-def]
        s = Sink()
        sinks.append(s)
        return s

    b.listen(0, 9000, factory)
    sim = Sim(a, b, seed=3, rate=2_500_000, queue=64 * 1024, delay=0.01,
              faults=Faults(loss=0.02, dup=0.02, reorder=0.05))
    data = bytes(range(251)) * 8000   # 2 MB, period prime to the MSS
    push = Pusher(data)
    a.connect(A_ADDR, 40001, B_ADDR, 9000, push, now=0.0)
    sim.run(lambda: bool(sinks) and sinks[0].closed, limit=120)
    assert sinks and sinks[0].closed
    assert bytes(sinks[0].data) == data
    assert a.counters["StackErrors"] == b.counters["StackErrors"] == 0
