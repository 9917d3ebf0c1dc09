"""The table: limits and early drop, clashes at confirm time, zones,
flush/delete, statistics, accounting."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ct_util import IP, A, B, TcpFlow, feed, mkpkt, only  # noqa: E402
from scapy.layers.inet import UDP  # type: ignore[import-untyped]  # noqa: E402

from pyfw.engine.api import NF_ACCEPT, NF_DROP  # noqa: E402
from pyfw.engine.conntrack import Conntrack, Tuple, format_entry  # noqa: E402
from pyfw.ext.target_ct import CT_ZONE_DIR_ORIG, CTData  # noqa: E402

T = 3000.0


def udp(sport: int, rev: bool = False) -> Any:
    if rev:
        return IP(src=B, dst=A) / UDP(sport=53, dport=sport) / b"r"
    return IP(src=A, dst=B) / UDP(sport=sport, dport=53) / b"q"


def small(maximum: int, buckets: int = 1) -> Conntrack:
    return Conntrack(sysctls={"net.netfilter.nf_conntrack_max": maximum,
                              "net.netfilter.nf_conntrack_buckets": buckets})


def test_early_drop_evicts_unassured() -> None:
    ct = small(3)
    for i in range(3):
        feed(ct, udp(6000 + i), T)
    assert ct.count() == 3
    name, p, ok = feed(ct, udp(7000), T)
    assert name == "NEW" and ok
    # one bucket: every non-assured entry in it goes
    assert [c.orig.sport for c in ct.entries()] == [7000]
    assert ct.stats()["early_drop"] == 3


def test_table_full_of_assured_drops_packet() -> None:
    ct = small(2)
    for i in range(2):
        feed(ct, udp(6100 + i), T)
        feed(ct, udp(6100 + i, rev=True), T + 0.1)
        feed(ct, udp(6100 + i), T + 3)  # a stream: ASSURED
    assert all(c.status & 4 for c in ct.entries())
    p = mkpkt(udp(7100), T + 4)
    assert ct.in_hook(p) == NF_DROP and p.ct is None
    st = ct.stats()
    assert st["drop"] == 1 and st["early_drop"] == 0
    # the gc pass after a failed early drop does not touch ASSURED entries
    ct.expire(T + 5)
    assert ct.count() == 2


def test_early_drop_scans_eight_buckets_only() -> None:
    ct = small(1, buckets=1 << 20)
    feed(ct, udp(6200), T)
    # with a million buckets another tuple almost never lands within 8 of it
    p = mkpkt(udp(6201), T)
    assert ct.in_hook(p) == NF_DROP


def test_expired_entries_free_room() -> None:
    ct = small(1)
    feed(ct, udp(6300), T)
    name, _p, ok = feed(ct, udp(6301), T + 31)
    assert name == "NEW" and ok and [c.orig.sport for c in ct.entries(T + 31)] == [6301]


def test_clash_udp_merges() -> None:
    ct = Conntrack()
    p1 = mkpkt(udp(6400), T)
    p2 = mkpkt(udp(6400), T)
    ct.in_hook(p1)
    ct.in_hook(p2)
    assert p1.ct is not p2.ct
    assert ct.confirm(p1) and ct.confirm(p2)
    assert p2.ct is p1.ct and ct.stats()["clash_resolve"] == 1
    assert ct.count() == 1


def test_clash_tcp_drops() -> None:
    ct = Conntrack()
    f = TcpFlow(sport=41500)
    s = f.seg(0, "S")
    p1, p2 = mkpkt(s, T), mkpkt(s, T)
    ct.in_hook(p1)
    ct.in_hook(p2)
    assert ct.confirm(p1)
    assert not ct.confirm(p2)
    st = ct.stats()
    assert st["insert_failed"] == 1 and st["drop"] == 1


def test_clash_nat_reply_only() -> None:
    """Two UDP flows NAT maps onto the same reply: the loser is kept by its
    reply tuple only, with a 1 s fixed timeout, hidden from the listing."""
    ct = Conntrack()
    p1, p2 = mkpkt(udp(6500), T), mkpkt(udp(6501), T)
    ct.in_hook(p1)
    ct.in_hook(p2)
    p2.ct.orig = Tuple(p2.ct.orig.src, p2.ct.orig.dst, 17, 6500, 53)  # pretend: same original
    p2.ct.reply = Tuple(p2.ct.reply.src, p2.ct.reply.dst, 17, 53, 7777)  # but a new reply
    assert ct.confirm(p1) and ct.confirm(p2)
    assert ct.count() == 2 and len(ct.entries(T)) == 1
    assert ct.entries(T)[0] is p1.ct


def test_zones_separate_connections() -> None:
    ct = Conntrack()
    feed(ct, udp(6600), T)
    p = mkpkt(udp(6600), T)
    p.ct_template = CTData(zone=5)
    ct.in_hook(p)
    assert p.ctinfo == 2  # NEW: zone 5 is another table
    ct.confirm(p)
    assert ct.count() == 2
    lines = [format_entry(c, T) for c in ct.entries(T)]
    assert any(line.endswith("mark=0 zone=5 use=1") for line in lines)
    q = mkpkt(udp(6601), T)
    q.ct_template = CTData(zone=7, flags=CT_ZONE_DIR_ORIG)
    ct.in_hook(q)
    ct.confirm(q)
    assert "sport=6601 dport=53 zone-orig=7 [UNREPLIED]" in format_entry(q.ct, T)
    # its reply is in zone 0
    r = mkpkt(udp(6601, rev=True), T)
    ct.in_hook(r)
    assert r.ct is q.ct and r.ctdir == 1


def test_flush_delete_lookup() -> None:
    ct = Conntrack()
    feed(ct, udp(6700), T)
    feed(ct, udp(6701), T)
    conn = ct.entries(T)[0]
    hit = ct.lookup(conn.reply, now=T)
    assert hit is not None and hit == (conn, 1)
    assert ct.delete(conn.reply)
    assert ct.count() == 1
    assert ct.flush() == 1 and ct.count() == 0
    assert feed(ct, udp(6700), T)[0] == "NEW"


def test_tuple_taken() -> None:
    ct = Conntrack()
    feed(ct, udp(6800), T)
    p = mkpkt(udp(6801), T)
    ct.in_hook(p)
    taken = Tuple(ct.entries(T)[0].reply.src, ct.entries(T)[0].reply.dst, 17, 53, 6800)
    assert ct.tuple_taken(taken, p.ct, T)
    assert not ct.tuple_taken(p.ct.reply, p.ct, T)
    assert ct.stats()["found"] == 1


def test_acct_and_stats_text() -> None:
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_acct": 1})
    feed(ct, udp(6900), T)
    feed(ct, udp(6900, rev=True), T)
    text = format_entry(only(ct), T)
    assert "dport=53 packets=1 bytes=29 src=" in text and "dport=6900 packets=1 bytes=29 mark=0" in text
    assert ct.format_stats() == ("cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 "
                                 "error=0 search_restart=0 clash_resolve=0 chaintoolong=0 ")


def test_in_hook_returns_accept() -> None:
    ct = Conntrack()
    assert ct.in_hook(mkpkt(udp(7000), T)) == NF_ACCEPT


def test_looped_back_packet_keeps_its_connection() -> None:
    ct = Conntrack()
    p = mkpkt(udp(7001), T, hook="OUTPUT")
    ct.in_hook(p)
    conn = p.ct
    ct.confirm(p)
    p.hook = "PREROUTING"
    ct.in_hook(p)
    assert p.ct is conn and p.ctinfo == 2


def test_attach_reject_answer() -> None:
    ct = Conntrack()
    f = TcpFlow(sport=41600)
    name, p, _ = feed(ct, f.seg(0, "S"), T)
    rst = mkpkt(f.seg(1, "RA", seq=0), T, hook="OUTPUT")
    ct.attach(rst, p)
    assert rst.ctinfo == 4 and rst.ctdir == 1 and rst.ct is p.ct
    ct.in_hook(rst)
    assert rst.ctinfo == 4
    assert ct.confirm(rst)


def test_truncated_datagram_never_raises() -> None:
    ct = Conntrack()
    raw = bytearray(bytes(TcpFlow(sport=41700).seg(0, "S", options=[("WScale", 7), ("SAckOK", b"")])))
    for cut in range(20, len(raw)):
        p = mkpkt(IP(bytes(raw)), T)
        p.data = p.data[:cut]
        ct.in_hook(p)
        ct.confirm(p)


def test_random_packets_never_raise() -> None:
    import random

    rnd = random.Random(7)
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_max": 50, "net.netfilter.nf_conntrack_buckets": 16})
    for i in range(4000):
        proto = rnd.choice((1, 6, 17, 47, 136, 132, 99))
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 80)))
        if proto == 1 and rnd.random() < 0.5:
            inner = bytes(IP(src=B, dst=A, proto=rnd.choice((1, 6, 17)))) + body[:20]
            body = bytes([rnd.choice((3, 11, 5, 12, 4)), 0, 0, 0, 0, 0, 0, 0]) + inner
        if proto == 6 and len(body) >= 20 and rnd.random() < 0.7:
            body = body[:12] + bytes([rnd.choice((5, 6, 8, 15)) << 4, rnd.getrandbits(8)]) + body[14:]
        pkt = IP(src=rnd.choice((A, B)), dst=rnd.choice((A, B)), proto=proto) / body
        p = mkpkt(pkt, T + i * 0.01, hook=rnd.choice(("PREROUTING", "OUTPUT")))
        ct.in_hook(p)
        ct.confirm(p)
        if i % 500 == 0:
            ct.expire(T + i * 0.01)
    assert ct.count() <= 50
