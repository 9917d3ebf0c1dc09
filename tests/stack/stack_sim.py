"""An in-memory link between two pyfw.stack.Stack instances: a discrete
event simulation with a bottleneck (rate, drop-tail queue), propagation
delay and seeded loss, duplication and reordering.  Time is simulated, so a
run is deterministic and costs only the stacks' own CPU."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pyfw.stack import Stack
from pyfw.stack.http import status_app
from pyfw.stack.stack import parse_addr
from pyfw.stack.tcp import Connection

A_ADDR = parse_addr("10.0.0.1")
B_ADDR = parse_addr("10.0.0.2")


@dataclass
class Faults:
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.004


@dataclass
class Direction:
    rate: float | None            # bytes per second, None = unlimited
    queue: int                    # bytes the bottleneck queue holds
    busy_until: float = 0.0
    sent: int = 0
    dropped: int = 0


@dataclass
class Sim:
    a: Stack
    b: Stack
    seed: int = 1
    delay: float = 0.005
    rate: float | None = None
    queue: int = 256 * 1024
    faults: Faults = field(default_factory=Faults)
    now: float = 0.0
    #: Optional tap on every datagram sent: (from_index, datagram) -> keep?
    filter: Callable[[int, bytes], bool] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.events: list[tuple[float, int, int, bytes]] = []
        self.count = 0
        self.dirs = [Direction(self.rate, self.queue), Direction(self.rate, self.queue)]
        self.stacks = (self.a, self.b)
        self.log: list[tuple[float, int, bytes]] = []
        self.keep_log = False

    def _send(self, src: int, pkt: bytes) -> None:
        if self.keep_log:
            self.log.append((self.now, src, pkt))
        if self.filter is not None and not self.filter(src, pkt):
            return
        d = self.dirs[src]
        d.sent += 1
        f = self.faults
        rng = self.rng
        if f.loss and rng.random() < f.loss:
            d.dropped += 1
            return
        copies = 2 if f.dup and rng.random() < f.dup else 1
        for _ in range(copies):
            start = max(self.now, d.busy_until)
            if d.rate is not None:
                if (start - self.now) * d.rate > d.queue:
                    d.dropped += 1
                    continue
                d.busy_until = start + len(pkt) / d.rate
                t = d.busy_until + self.delay
            else:
                t = self.now + self.delay
            if f.reorder and rng.random() < f.reorder:
                t += rng.random() * f.reorder_delay
            self.count += 1
            heapq.heappush(self.events, (t, self.count, 1 - src, pkt))

    def flush(self) -> None:
        for i, st in enumerate(self.stacks):
            for pkt in st.output(self.now):
                self._send(i, pkt)

    def step(self) -> bool:
        """Advance to the next event or timer; False when nothing is left."""
        self.flush()
        t: float | None = self.events[0][0] if self.events else None
        for st in self.stacks:
            d = st.next_deadline()
            if d is not None and (t is None or d < t):
                t = d
        if t is None:
            return False
        self.now = max(self.now, t)
        ev = self.events
        while ev and ev[0][0] <= self.now:
            _, _, dst, pkt = heapq.heappop(ev)
            self.stacks[dst].input(pkt, self.now)
        return True

    def run(self, done: Callable[[], bool], limit: float = 600.0) -> None:
        while not done():
            if self.now > limit or not self.step():
                break
        self.flush()

    def advance(self, seconds: float) -> None:
        """Run until `seconds` of simulated time have passed."""
        end = self.now + seconds
        while True:
            self.flush()
            t: float | None = self.events[0][0] if self.events else None
            for st in self.stacks:
                d = st.next_deadline()
                if d is not None and (t is None or d < t):
                    t = d
            if t is None or t > end:
                self.now = end
                self.flush()
                return
            self.step()


class Collector:
    """A client app: records what arrives and whether it closed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.connected = False
        self.hash = hashlib.sha256()
        self.received = 0
        self.keep = True

    def on_connect(self, conn: Connection) -> None:
        self.connected = True

    def on_data(self, conn: Connection, data: bytes) -> None:
        self.received += len(data)
        self.hash.update(data)
        if self.keep:
            self.data += data

    def on_close(self, conn: Connection) -> None:
        self.closed = True
        conn.close()


class HttpGet(Collector):
    """GET a path on connect; the body's sha256 and length, headers parsed."""

    def __init__(self, path: str, close: bool = True) -> None:
        super().__init__()
        self.path = path
        self.close = close
        self.head: bytes | None = None
        self.length = -1
        self.body = 0
        self.keep = False
        self._buf = bytearray()

    def on_connect(self, conn: Connection) -> None:
        super().on_connect(conn)
        extra = "Connection: close\r\n" if self.close else ""
        conn.send(f"GET {self.path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())

    def on_data(self, conn: Connection, data: bytes) -> None:
        if self.head is None:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self._buf[:end])
            for line in self.head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    self.length = int(v)
            data = bytes(self._buf[end + 4:])
            self._buf.clear()
        self.body += len(data)
        self.hash.update(data)
        if self.close is False and self.body >= self.length:
            conn.close()

    @property
    def complete(self) -> bool:
        return self.head is not None and self.body == self.length


def pair(cc: str = "cubic", **kw: object) -> tuple[Stack, Stack]:
    return Stack(cc=cc, secret=b"a" * 32, **kw), Stack(cc=cc, secret=b"b" * 32, **kw)  # type: ignore[arg-type]


def http_pair(cc: str = "cubic", **simkw: object) -> tuple[Sim, Stack, Stack]:
    a, b = pair(cc)
    b.listen(B_ADDR, 80, status_app(lambda: {"hello": "world"}))
    sim = Sim(a, b, **simkw)  # type: ignore[arg-type]
    return sim, a, b
