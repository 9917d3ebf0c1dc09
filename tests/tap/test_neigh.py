"""The neighbour cache (pyfw/engine/neigh.py) on its own clock: Linux's
states and default timers, what it sends, what it queues and gives back."""

from __future__ import annotations

import struct

from pyfw.engine.host import ip_int, parse_host
from pyfw.engine.neigh import (
    NUD_DELAY,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
    NeighParams,
    NeighTable,
)
from pyfw.wire import arp, ethernet

HOST = parse_host("""
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
[[neighbor]]
ip = "203.0.113.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"
""")
GW_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("02aa00000005")
PEER = ip_int("192.168.1.5")
ME = ip_int("192.168.1.1")


def datagram(src: int = ip_int("203.0.113.9"), dst: int = PEER, size: int = 100) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 17, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return head + bytes(size - 20)


def reply(sha: bytes, sip: int, tip: int = ME, to: bytes = GW_MAC) -> bytes:
    return bytes(ethernet.build(to, sha, ethernet.ETH_P_ARP, arp.build(arp.ARPOP_REPLY, sha, sip, to, tip)))


def request(sha: bytes, sip: int, tip: int = ME) -> bytes:
    return bytes(arp.build_request(sha, sip, tip))


def parsed(frame: bytes) -> arp.Arp:
    a = arp.Arp.checked(bytearray(frame[14:]))
    assert a is not None and frame[12:14] == b"\x08\x06"
    return a


def test_resolution_queues_and_releases() -> None:
    t = NeighTable(HOST)
    out = t.output("eth0", PEER, datagram(), 0.0, "first")
    assert len(out) == 1 and out[0].frame[:6] == b"\xff" * 6
    a = parsed(out[0].frame)
    # broadcast who-has from the device's address for that subnet (the
    # packet's source is not ours)
    assert (a.op, a.sha, a.spa, a.tpa, a.tha) == (1, GW_MAC, ME, PEER, bytes(6))
    assert t.output("eth0", PEER, datagram(), 0.1, "second") == []  # waits, no second request
    assert t.lookup("eth0", PEER).state == NUD_INCOMPLETE  # type: ignore[union-attr]
    got = t.arp_input(reply(PEER_MAC, PEER), "eth0", 0.2)
    assert [o.opaque for o in got] == ["first", "second"]
    assert all(o.frame[:6] == PEER_MAC and o.frame[6:12] == GW_MAC and o.frame[12:14] == b"\x08\x00" for o in got)
    assert t.lookup("eth0", PEER).state == NUD_REACHABLE  # type: ignore[union-attr]
    # now sent at once
    assert [o.frame[:6] for o in t.output("eth0", PEER, datagram(), 0.3)] == [PEER_MAC]


def test_three_broadcast_probes_then_failed() -> None:
    t = NeighTable(HOST)
    sent = t.output("eth0", PEER, datagram(), 0.0, "x")
    times = [0.0]
    failed: list = []
    now = 0.0
    while now < 10 and not failed:
        nd = t.next_deadline()
        assert nd is not None
        now = nd
        out, failed = t.tick(now)
        if out:
            times.append(now)
            sent += out
    assert times == [0.0, 1.0, 2.0] and all(o.frame[:6] == b"\xff" * 6 for o in sent)
    assert now == 3.0 and [o for _, o in failed] == ["x"]
    assert t.lookup("eth0", PEER).state == NUD_FAILED  # type: ignore[union-attr]
    # the next packet starts over
    assert len(t.output("eth0", PEER, datagram(), 4.0)) == 1
    assert t.lookup("eth0", PEER).state == NUD_INCOMPLETE  # type: ignore[union-attr]


def test_a_request_for_us_is_answered_and_learnt_stale() -> None:
    t = NeighTable(HOST)
    out = t.arp_input(request(PEER_MAC, PEER), "eth0", 0.0)
    assert len(out) == 1 and out[0].frame[:6] == PEER_MAC
    a = parsed(out[0].frame)
    assert (a.op, a.sha, a.spa, a.tha, a.tpa) == (2, GW_MAC, ME, PEER_MAC, PEER)
    n = t.lookup("eth0", PEER)
    assert n is not None and n.state == NUD_STALE and n.mac == PEER_MAC
    # first use: DELAY; 5 s without confirmation: PROBE with unicast requests
    assert [o.frame[:6] for o in t.output("eth0", PEER, datagram(), 1.0)] == [PEER_MAC]
    assert n.state == NUD_DELAY
    out, _ = t.tick(6.0)
    assert n.state == NUD_PROBE and len(out) == 1 and out[0].frame[:6] == PEER_MAC
    # a unicast reply confirms it
    t.arp_input(reply(PEER_MAC, PEER), "eth0", 6.5)
    assert n.state == NUD_REACHABLE


def test_probe_without_answer_fails_after_three_unicast_requests() -> None:
    t = NeighTable(HOST)
    t.arp_input(request(PEER_MAC, PEER), "eth0", 0.0)
    t.output("eth0", PEER, datagram(), 0.0)
    probes = []
    now = 0.0
    while now < 20:
        nd = t.next_deadline()
        assert nd is not None
        now = nd
        out, _ = t.tick(now)
        probes += [(now, o.frame[:6]) for o in out]
        if t.lookup("eth0", PEER).state == NUD_FAILED:  # type: ignore[union-attr]
            break
    assert probes == [(5.0, PEER_MAC), (6.0, PEER_MAC), (7.0, PEER_MAC)]
    assert now == 8.0


def test_reachable_goes_stale_when_unused() -> None:
    t = NeighTable(HOST, NeighParams(base_reachable_time=30.0))
    t.output("eth0", PEER, datagram(), 0.0)
    t.arp_input(reply(PEER_MAC, PEER), "eth0", 0.0)
    n = t.lookup("eth0", PEER)
    assert n is not None and n.state == NUD_REACHABLE
    assert 15.0 <= t.reachable_time < 45.0
    t.tick(t.reachable_time + 0.01)
    assert n.state == NUD_STALE


def test_unsolicited_replies_create_nothing_and_locktime_guards_the_address() -> None:
    t = NeighTable(HOST)
    assert t.arp_input(reply(PEER_MAC, PEER), "eth0", 0.0) == []
    assert t.lookup("eth0", PEER) is None  # arp_accept 0
    t.arp_input(request(PEER_MAC, PEER), "eth0", 0.0)
    other = bytes.fromhex("02bb00000005")
    t.arp_input(reply(other, ip_int("192.168.1.5")), "eth0", 0.5)  # within locktime: ignored
    assert t.lookup("eth0", PEER).mac == PEER_MAC  # type: ignore[union-attr]
    t.arp_input(reply(other, PEER), "eth0", 2.0)
    assert t.lookup("eth0", PEER).mac == other  # type: ignore[union-attr]


def test_queue_is_bounded_in_bytes_oldest_dropped() -> None:
    t = NeighTable(HOST)
    for i in range(200):
        t.output("eth0", PEER, datagram(size=1500), 0.0, i)
    n = t.lookup("eth0", PEER)
    assert n is not None and len(n.queue) == 101  # unres_qlen for full-size frames
    assert n.queue[0][1] == 99 and n.queue[-1][1] == 199
    assert t.stats["unresolved_discards"] == 99


def test_the_waiting_packets_source_is_the_requests_sender_when_ours() -> None:
    t = NeighTable(HOST)
    out = t.output("eth1", ip_int("203.0.113.7"), datagram(src=ip_int("192.168.1.1"), dst=ip_int("203.0.113.7")), 0.0)
    assert parsed(out[0].frame).spa == ip_int("192.168.1.1")  # arp_announce 0


def test_static_entries_and_table_bound_under_a_storm() -> None:
    t = NeighTable(HOST)
    n = t.lookup("eth1", ip_int("203.0.113.254"))
    assert n is not None and n.state == NUD_PERMANENT
    for i in range(5000):
        mac = bytes([2, 0x99, 0, 0, i >> 8, i & 0xFF])
        t.arp_input(request(mac, ip_int("192.168.1.0") + 2 + i % 250 + (i // 250) * 0), "eth0", i * 0.001)
        t.arp_input(request(mac, ip_int("10.0.0.0") + i), "eth0", i * 0.001)  # not on the subnet: still learnt
    assert len(t.entries) <= 1024
    assert t.lookup("eth1", ip_int("203.0.113.254")) is not None
    # an answer still goes out for a new requester
    assert t.arp_input(request(PEER_MAC, PEER), "eth0", 10.0)


def test_gratuitous_arp_for_every_address() -> None:
    out = NeighTable(HOST).announce()
    got = {(o.dev, parsed(o.frame).spa, parsed(o.frame).tpa, o.frame[:6]) for o in out}
    assert got == {("eth0", ME, ME, b"\xff" * 6),
                   ("eth1", ip_int("203.0.113.1"), ip_int("203.0.113.1"), b"\xff" * 6)}
