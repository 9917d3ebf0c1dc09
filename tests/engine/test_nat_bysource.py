"""Many connections from one source address and port (a resolver's fixed
port, STUN): finding the mapping an earlier connection got must not walk
every earlier connection each time (that made the 4,000th flow 25x slower
than the first)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_fastpath import HOST, LAN_NET, WAN_ADDR, frame  # noqa: E402

from pyfw.engine.engine import Engine  # noqa: E402
from pyfw.engine.host import parse_host  # noqa: E402
from pyfw.ruleset.model import Ruleset  # noqa: E402
from pyfw.ruleset.restore import RestoreOptions, restore  # noqa: E402


def test_one_source_port_many_destinations_is_linear() -> None:
    rs = restore(Ruleset(), "*nat\n-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n", RestoreOptions()).ruleset
    engine = Engine(rs, parse_host(HOST))
    calls = 0

    class Counting:
        """The NAT's view of the connection table, counting the liveness
        lookups of _alive (a full walk per connection would be ~n*n/2)."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def lookup(self, t: object) -> object:
            nonlocal calls
            calls += 1
            return self.inner.lookup(t)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    engine.nat.index = Counting(engine.nat.index)
    n = 600
    for i in range(n):
        res = engine.receive(frame("eth0", LAN_NET + 5, (198 << 24) | (51 << 16) | i, 17, 5353, 53), "eth0", 1.0)
        assert res.verdict == "ACCEPT" and res.out == "eth1"
        out = res.emitted[-1].frame
        assert out[14 + 12:14 + 16] == WAN_ADDR.to_bytes(4, "big")   # masqueraded...
        assert out[14 + 20:14 + 22] == struct.pack("!H", 5353)   # ...keeping its port
    assert n // 2 <= calls < 8 * n, calls   # a full walk each time would be ~n*n/2
