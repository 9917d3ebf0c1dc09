"""The UDP lane of the fast path (fastpath._udp_lane: udp_packet and
udp_error inline for a connection whose status the packet cannot change)
against the slow path: long UDP streams both ways, NATed and not, over the
two seconds that make a stream ASSURED, with bad and zero checksums, wrong
UDP lengths and long pauses mixed in; verdicts, frames, counters, the
connection table and its statistics must be identical, and the lane must
both take packets and decline some."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_fastpath import Flow, run  # noqa: E402

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -p udp -m udp --dport 8080 -j DNAT --to-destination 192.168.1.50:80
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -p udp -m udp --dport 5555 -j DROP
-A FORWARD -i eth0 -o eth1 -j ACCEPT
-A FORWARD -i eth1 -o eth0 -p udp -j ACCEPT
COMMIT
"""


def odd_udp(rng: random.Random, f: Flow) -> tuple[bytes, str]:
    fr, iface = (f.orig if rng.random() < 0.5 else f.reply)(payload=bytes(rng.randrange(1, 30)), udp_csum=f.udp_csum)
    b = bytearray(fr)
    kind = rng.randrange(3)
    if kind == 0:    # a wrong UDP checksum (a zero one stays "none")
        b[14 + 26] ^= 0x21
    elif kind == 1:  # a UDP length longer than the datagram
        struct.pack_into("!H", b, 14 + 24, (b[14 + 24] << 8 | b[14 + 25]) + 9)
    else:            # shorter than a header
        struct.pack_into("!H", b, 14 + 24, 5)
    return bytes(b), iface


def udp_traffic(rng: random.Random, packets: int) -> list:  # type: ignore[type-arg]
    flows: list[Flow] = []
    out: list = []  # type: ignore[type-arg]
    now, n = 50.0, 0
    while len(out) < packets:
        live = [f for f in flows if not f.done]
        if len(live) < 6:
            n += 1
            f = Flow(rng, n)
            f.proto = 17
            flows.append(f)
            live.append(f)
        f = rng.choice(live)
        if f.stage > 2 and rng.random() < 0.06:
            fr, iface = odd_udp(rng, f)
        else:
            fr, iface = f.next(rng)
        out.append((now, fr, iface))
        now += rng.choice((0.001, 0.05, 0.3, 0.9)) if rng.random() < 0.99 else 45.0
    return out


@pytest.mark.parametrize("seed", range(6))
def test_udp_lane_same_as_slow_path(seed: int) -> None:
    rng = random.Random(seed)
    events = udp_traffic(rng, 600)
    slow = run(RULES, events, fastpath=False)
    fast = run(RULES, events, fastpath=True)
    for k, (a, b) in enumerate(zip(slow[0], fast[0], strict=True)):
        assert a == b, f"frame {k}: {a} != {b}"
    assert slow[1] == fast[1]  # counters
    assert slow[2] == fast[2]  # conntrack -L (timeouts included)
    assert slow[3] == fast[3]  # conntrack -S
    fp = fast[-1].fastpath
    taken = {True: fp.udp_lane_hits, False: fp.udp_lane_misses}
    assert taken[True] > 100 and taken[False] > 0, taken

