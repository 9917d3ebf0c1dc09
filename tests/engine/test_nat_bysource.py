"""Many connections from one source address and port (a resolver's fixed
port, STUN): finding the mapping an earlier connection got must not walk
every earlier connection each time (that made the 4,000th flow 25x slower
than the first)."""

from __future__ import annotations

import struct

from pyfw.engine.engine import Engine
from pyfw.engine.host import parse_host
from pyfw.engine.nat.core import Nat
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore
from pyfw.wire.checksum import checksum

HOST = """
[host]
name = "gw"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:01"
addresses = ["192.168.1.1/24"]
[[interface]]
name = "eth1"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
[[route]]
to = "default"
via = "203.0.113.254"
dev = "eth1"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"
[sysctl]
"net.ipv4.ip_forward" = 1
"""


def udp_frame(dst: int) -> bytes:
    l4 = struct.pack("!HHHH", 5353, 53, 8, 0)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                                bytes([192, 168, 1, 5]), dst.to_bytes(4, "big")))
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x05\x08\x00" + bytes(hdr) + l4


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
        res = engine.receive(udp_frame((198 << 24) | (51 << 16) | i), "eth0", 1.0)
        assert res.verdict == "ACCEPT" and res.out == "eth1"
        out = res.emitted[-1].frame
        assert out[14 + 12:14 + 16] == bytes([203, 0, 113, 1])   # masqueraded...
        assert out[14 + 20:14 + 22] == struct.pack("!H", 5353)   # ...keeping its port
    assert calls < 4 * n, calls   # a full walk each time would be ~n*n/2
