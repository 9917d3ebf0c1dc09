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
from pyfw.engine.nat.core import Nat  # noqa: E402
from pyfw.ruleset.model import Ruleset  # noqa: E402
from pyfw.ruleset.restore import RestoreOptions, restore  # noqa: E402


def test_one_source_port_many_destinations_is_linear(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rs = restore(Ruleset(), "*nat\n-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n", RestoreOptions()).ruleset
    engine = Engine(rs, parse_host(HOST))
    calls = 0
    alive = Nat._alive

    def counting(self: Nat, c: object) -> bool:
        nonlocal calls
        calls += 1
        return alive(self, c)  # type: ignore[arg-type]

    monkeypatch.setattr(Nat, "_alive", counting)
    n = 600
    for i in range(n):
        res = engine.receive(frame("eth0", LAN_NET + 5, (198 << 24) | (51 << 16) | i, 17, 5353, 53), "eth0", 1.0)
        assert res.verdict == "ACCEPT" and res.out == "eth1"
        out = res.emitted[-1].frame
        assert out[14 + 12:14 + 16] == WAN_ADDR.to_bytes(4, "big")   # masqueraded...
        assert out[14 + 20:14 + 22] == struct.pack("!H", 5353)   # ...keeping its port
    assert calls < 4 * n, calls   # a full walk each time would be ~n*n/2
