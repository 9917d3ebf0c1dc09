"""pyfw.wire.frag: fragmentation geometry and the reassembly queue's rules
(overlap, duplicates, timeouts, distance, memory, ECN), with scapy
reassembling what pyfw cut."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, UDP, defragment

from pyfw.wire import frag, ipv4

A = 0x0A000001
B = 0x0A000002


def _dgram(n: int, **kw: Any) -> bytearray:
    return bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", id=0x1234, **kw) / UDP(sport=1, dport=2)
                         / bytes(i & 0xFF for i in range(n))))


def _frag(ident: int, offset: int, data: bytes, mf: bool, tos: int = 0, df: bool = False) -> bytearray:
    fo = (offset >> 3) | (ipv4.IP_MF if mf else 0)
    return ipv4.build(A, B, 17, data, ident=ident, tos=tos, df=df, frag_off=fo)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9000), st.integers(576, 9000))
def test_fragment_geometry_and_scapy_reassembly(n: int, mtu: int) -> None:
    d = _dgram(n)
    frags = frag.fragment(d, mtu)
    if len(d) <= mtu:
        assert frags == [d]
        return
    for i, f in enumerate(frags):
        assert len(f) <= mtu
        v = ipv4.Ipv4(f)
        assert v.checksum_ok() and v.ident == 0x1234 and v.tot_len == len(f)
        assert v.mf == (i < len(frags) - 1) and not v.df
        if i < len(frags) - 1:
            assert (len(f) - 20) == (mtu - 20) & ~7
    whole = defragment([IP(bytes(f)) for f in frags])
    assert raw(whole[0]) == bytes(d)


def test_later_fragments_lose_uncopied_options() -> None:
    d = ipv4.build(A, B, 17, bytes(3000), ident=5, options=b"\x94\x04\x00\x00\x19\x04\x00\x00")
    frags = frag.fragment(d, 1280)
    assert frags[0][20:28] == b"\x94\x04\x00\x00\x19\x04\x00\x00"
    assert all(f[20:28] == b"\x94\x04\x00\x00\x01\x01\x01\x01" for f in frags[1:])
    assert all((len(f) - 28) % 8 == 0 for f in frags[:-1])


def test_fragmenting_a_fragment_keeps_mf() -> None:
    d = _frag(9, 800, bytes(2000), mf=True)
    frags = frag.fragment(d, 1000)
    assert all(ipv4.Ipv4(f).mf for f in frags)
    assert ipv4.Ipv4(frags[0]).frag_offset == 800


def test_exceeds_and_needs() -> None:
    assert not frag.exceeds_mtu(1500, True, 1500)
    assert frag.exceeds_mtu(1501, True, 1500)
    assert not frag.exceeds_mtu(1501, False, 1500)
    assert not frag.exceeds_mtu(3000, True, 1500, frag_max_size=1000, ignore_df=True)
    assert frag.exceeds_mtu(3000, True, 1500, frag_max_size=1600, ignore_df=True)
    assert frag.needs_fragment(100, 1500, frag_max_size=60)
    assert not frag.needs_fragment(100, 1500)


# ------------------------------------------------------------------ reassembly
def _split(d: bytes, sizes: list[int]) -> list[bytearray]:
    body = d[20:]
    out = []
    off = 0
    for i, n in enumerate(sizes):
        h = bytearray(d[:20])
        h[2:4] = (20 + n).to_bytes(2, "big")
        h[6:8] = ((off >> 3) | (ipv4.IP_MF if i < len(sizes) - 1 else 0)).to_bytes(2, "big")
        ipv4.send_check(h)
        out.append(h + body[off:off + n])
        off += n
    return out


def test_reassembly_any_order_and_pieces() -> None:
    d = bytes(ipv4.build(A, B, 17, bytes(range(256)) * 10, ident=77, ttl=9))
    parts = _split(d, [1000, 1000, 560])
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        df = frag.Defrag()
        res = [df.add(parts[i], 1.0) for i in order]
        assert res[:2] == [None, None]
        r = res[2]
        assert r is not None and bytes(r.datagram) == d
        assert r.pieces == [1000, 1000, 560] and r.frag_max_size == 1020 and not r.pmtu_df
        assert df.stats["ReasmOKs"] == 1 and not df.queues and df.mem == 0


def test_reassembled_refragmented_in_its_pieces() -> None:
    d = bytes(ipv4.build(A, B, 17, bytes(2560), ident=78))
    parts = _split(d, [1000, 1000, 560])
    df = frag.Defrag()
    r = [df.add(p, 0.0) for p in parts][-1]
    assert r is not None
    again = frag.fragment(r.datagram, 1500, frag_max_size=r.frag_max_size, pmtu_df=r.pmtu_df, pieces=r.pieces)
    assert [bytes(x) for x in again] == [bytes(p) for p in parts]
    # egress smaller than a piece: sliced by the slow path at the egress MTU
    again = frag.fragment(r.datagram, 600, frag_max_size=r.frag_max_size, pieces=r.pieces)
    assert [len(x) - 20 for x in again] == [576, 576, 576, 576, 256]


def test_df_fragments_give_df_datagram() -> None:
    d = bytes(ipv4.build(A, B, 17, bytes(2000), ident=79))
    parts = [_frag(79, 0, d[20:1020], True, df=True), _frag(79, 1000, d[1020:], False, df=False)]
    df = frag.Defrag()
    r = [df.add(p, 0.0) for p in parts][-1]
    assert r is not None and r.pmtu_df and ipv4.Ipv4(r.datagram).df
    parts = [_frag(80, 0, d[20:1020], True, df=False), _frag(80, 1000, d[1020:1820], False, df=True)]
    r = [df.add(p, 0.0) for p in parts][-1]
    assert r is not None and not r.pmtu_df and not ipv4.Ipv4(r.datagram).df


def test_overlap_kills_queue_duplicate_does_not() -> None:
    df = frag.Defrag()
    assert df.add(_frag(1, 0, bytes(800), True), 0.0) is None
    assert df.add(_frag(1, 0, bytes(800), True), 0.0) is None     # exact duplicate
    assert df.last_drop == "DUP_FRAG" and len(df.queues) == 1
    assert df.add(_frag(1, 400, bytes(800), True), 0.0) is None   # overlaps the tail
    assert df.last_drop == "FRAG_OVERLAP" and not df.queues
    assert df.stats["ReasmOverlaps"] == 1 and df.stats["ReasmFails"] == 1
    # inside a run but spanning two fragments: still a duplicate
    df = frag.Defrag()
    df.add(_frag(2, 0, bytes(800), True), 0.0)
    df.add(_frag(2, 800, bytes(800), True), 0.0)
    assert df.add(_frag(2, 400, bytes(800), True), 0.0) is None and df.last_drop == "DUP_FRAG"
    # across a gap between runs: overlap
    df = frag.Defrag()
    df.add(_frag(3, 0, bytes(800), True), 0.0)
    df.add(_frag(3, 1600, bytes(800), True), 0.0)
    df.add(_frag(3, 800, bytes(400), True), 0.0)
    assert df.add(_frag(3, 1000, bytes(800), True), 0.0) is None and df.last_drop == "FRAG_OVERLAP"


def test_bad_last_fragments() -> None:
    df = frag.Defrag()
    df.add(_frag(4, 1600, bytes(100), False), 0.0)
    assert df.add(_frag(4, 1600, bytes(200), False), 0.0) is None and df.last_drop == "FRAG_INVALID"
    df = frag.Defrag()
    df.add(_frag(5, 0, bytes(2000), True), 0.0)
    assert df.add(_frag(5, 800, bytes(100), False), 0.0) is None and df.last_drop == "FRAG_INVALID"
    df = frag.Defrag()
    df.add(_frag(6, 0, bytes(800), True), 0.0)
    assert df.add(_frag(6, 800, bytes(5), True), 0.0) is None      # < 8 bytes with MF: empty
    assert df.last_drop == "FRAG_INVALID" and not df.queues


def test_non_last_fragment_trimmed_to_8() -> None:
    d = bytes(ipv4.build(A, B, 17, bytes(range(200)) * 5, ident=7))
    body = d[20:]
    df = frag.Defrag()
    df.add(_frag(7, 0, body[:803], True), 0.0)          # 3 bytes beyond 800 are ignored
    r = df.add(_frag(7, 800, body[800:], False), 0.0)
    assert r is not None and bytes(r.datagram) == d and r.pieces == [800, 200]


def test_timeout_and_head() -> None:
    df = frag.Defrag()
    df.add(_frag(8, 800, bytes(100), False), 0.0)
    df.add(_frag(9, 0, bytes(800), True), 5.0)
    assert df.next_expiry() == 30.0
    gone = df.expire(30.0)
    assert len(gone) == 1 and gone[0].head is None               # no first fragment: no ICMP
    (g,) = df.expire(35.0)
    assert g.head is not None and ipv4.Ipv4(g.head).ident == 9
    assert df.stats["ReasmTimeout"] == 2 and df.mem == 0 and not df.queues


def test_too_far_resets_queue() -> None:
    df = frag.Defrag()
    df.add(_frag(10, 0, bytes(800), True), 0.0)
    for i in range(64):
        df.add(_frag(100 + i, 0, bytes(8), True), 1.0)
    df.add(_frag(10, 800, bytes(8), True), 2.0)                  # 65 fragments later: queue restarted
    q = df.queues[(A, B, 10, 17, frag.IP_DEFRAG_CONNTRACK_IN)]
    assert q.expires == 32.0 and not q.first_in and q.meat == 8
    assert df.stats["ReasmFails"] == 1


def test_memory_limit() -> None:
    df = frag.Defrag(high_thresh=10000)
    for i in range(4):
        df.add(_frag(200 + i, 0, bytes(800), True), 0.0)
    assert df.mem > 10000
    assert df.add(_frag(300, 0, bytes(8), True), 0.0) is None and df.last_drop == "NOMEM"
    assert df.add(_frag(200, 800, bytes(8), False), 0.0) is None and df.last_drop == "NOMEM"


def test_ecn_rules() -> None:
    def run(t1: int, t2: int) -> frag.Reassembled | None:
        df = frag.Defrag()
        df.add(_frag(11, 0, bytes(800), True, tos=t1), 0.0)
        return df.add(_frag(11, 800, bytes(8), False, tos=t2), 0.0)

    r = run(0x02, 0x03)
    assert r is not None and r.datagram[1] == 0x03                # CE spreads over ECT
    assert run(0x00, 0x03) is None                                # not-ECT mixed with CE: dropped
    r = run(0x00, 0x00)
    assert r is not None and r.datagram[1] == 0


def test_users_and_too_big() -> None:
    df = frag.Defrag()
    df.add(_frag(12, 0, bytes(800), True), 0.0, user=frag.IP_DEFRAG_CONNTRACK_IN)
    assert df.add(_frag(12, 800, bytes(8), False), 0.0, user=frag.IP_DEFRAG_CONNTRACK_OUT) is None
    assert len(df.queues) == 2
    df = frag.Defrag()
    df.add(_frag(13, 0, bytes(1480), True), 0.0)
    assert df.add(_frag(13, 65528, bytes(100), False), 0.0) is None
    assert len(df.queues) == 1   # not complete yet (a hole)
