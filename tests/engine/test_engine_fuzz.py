"""Random and malformed frames through the whole engine: nothing raises (not
even into the engine's own safety net), every frame gets a result, and the
connection table stays within nf_conntrack_max."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyfw.engine.engine import Engine
from pyfw.engine.host import parse_host
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

HOST = """
[host]
name = "fuzz"
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
[sysctl]
"net.ipv4.ip_forward" = 1
"net.netfilter.nf_conntrack_max" = 64
"""

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -m limit --limit 10/sec -j LOG --log-prefix "in: "
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -p udp -j REJECT
-A INPUT -p icmp -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -p tcp -m multiport --dports 22,80,443 -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -j ACCEPT
COMMIT
"""

ENGINE = Engine(restore(Ruleset(), RULES, RestoreOptions()).ruleset, parse_host(HOST, "fuzz.toml"))
MACS = [bytes.fromhex("020000000001"), bytes.fromhex("020000000002"), b"\xff" * 6]


def ipv4(draw_bytes: bytes, proto: int, src: int, dst: int, frag: int, ttl: int, ihl: int) -> bytes:
    body = draw_bytes
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(body), 1, frag, ttl, proto, 0,
                      src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return hdr + body


addresses = st.sampled_from([0xC0A80105, 0xC0A80101, 0xCB007101, 0x08080808, 0xFFFFFFFF, 0x7F000001, 0,
                             0xE0000001, 0xC0A801FF])

frames = st.one_of(
    st.binary(max_size=80),  # anything at all
    st.builds(lambda mac, body: mac + b"\x02\x00\x00\x00\x00\x05\x08\x00" + body,
              st.sampled_from(MACS), st.binary(max_size=80)),
    st.builds(lambda mac, body, proto, src, dst, frag, ttl, ihl, cut:
              (mac + b"\x02\x00\x00\x00\x00\x05\x08\x00" + ipv4(body, proto, src, dst, frag, ttl, ihl))[:cut],
              st.sampled_from(MACS), st.binary(max_size=64), st.sampled_from([1, 6, 17, 47, 50, 0, 255]),
              addresses, addresses, st.sampled_from([0, 0x4000, 0x2000, 0x2001, 0x0002, 0x1FFF]),
              st.integers(0, 255), st.integers(0, 15), st.integers(0, 200)),
    st.builds(lambda mac, body: mac + b"\x02\x00\x00\x00\x00\x05\x08\x06" + body,
              st.sampled_from(MACS), st.binary(min_size=0, max_size=40)),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(frames, st.sampled_from(["eth0", "eth1", "local"])), min_size=1, max_size=20))
def test_nothing_raises_and_every_frame_is_accounted_for(batch: list[tuple[bytes, str]]) -> None:
    for frame, iface in batch:
        now = ENGINE.now + 0.01
        if iface == "local":
            res = ENGINE.send(frame[14:], now)
        else:
            res = ENGINE.receive(frame, iface, now)
        assert res.path in ("input", "forward", "output", "no-route", "prerouting", "arp", "malformed", "ignored")
        assert not (res.reason or "").startswith("internal"), res.reason
        assert ENGINE.stats.get("engine_error", 0) == 0
        assert ENGINE.ct.count() <= 64 + 1


def test_a_flood_of_new_connections_stays_within_the_limit() -> None:
    eng = Engine(restore(Ruleset(), RULES, RestoreOptions()).ruleset, parse_host(HOST, "fuzz.toml"))
    for i in range(2000):
        l4 = struct.pack("!HHHH", 1000 + i, 53, 8, 0)
        ip = ipv4(l4, 17, 0xC0A80105, 0x08080808, 0, 64, 5)
        res = eng.receive(MACS[0] + b"\x02\x00\x00\x00\x00\x05\x08\x00" + ip, "eth0", 1.0 + i * 1e-4)
        assert res.reason is None or not res.reason.startswith("internal")
        assert eng.ct.count() <= 64
