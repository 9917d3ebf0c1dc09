"""pyfw.wire.tcp / udp / icmp against scapy's packets and the kernel's
rules (quote sizes, RST numbers, TCPMSS)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP

from pyfw.wire import checksum as cs
from pyfw.wire import icmp, ipv4, tcp, udp

A = 0x0A000001
B = 0x0A000002


def _ip(l4: object, **kw: Any) -> bytearray:
    return bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", **kw) / l4))


# ------------------------------------------------------------------ UDP
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_udp_build_matches_scapy(sport: int, dport: int, payload: bytes) -> None:
    ref = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport, dport=dport) / payload)[20:]
    mine = udp.build(A, B, sport, dport, payload)
    if ref[6:8] == b"\0\0":
        assert mine[6:8] == b"\xff\xff"
    else:
        assert bytes(mine) == ref
    assert udp.Udp(mine).checksum_ok(A, B)


def test_udp_port_setters() -> None:
    p = _ip(UDP(sport=1000, dport=53) / b"q")
    u = udp.Udp(p, 20)
    u.sport = 4000
    u.dport = 5353
    assert bytes(p) == bytes(_ip(UDP(sport=4000, dport=5353) / b"q"))
    z = _ip(UDP(sport=1, dport=2, chksum=0) / b"q")
    udp.Udp(z, 20).dport = 99
    assert z[26:28] == b"\0\0"


# ------------------------------------------------------------------ TCP
_OPTS: list[list[tuple[str, Any]]] = [
    [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 7)],
    [("NOP", None), ("NOP", None), ("Timestamp", (0xFFFFFFFF, 5))],
    [("NOP", None), ("NOP", None), ("SAck", (100, 200, 300, 400))],
    [("WScale", 20), ("EOL", None)],
]


def test_tcp_build_and_options_match_scapy() -> None:
    for opts in _OPTS:
        ref = raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, seq=3, ack=4, flags="SA",
                                                          window=999, options=opts) / b"data")[20:]
        doff = (ref[12] >> 4) * 4
        mine = tcp.build(A, B, 1, 2, 3, 4, tcp.SYN | tcp.ACKF, window=999, options=ref[20:doff], payload=b"data")
        assert bytes(mine) == ref
        parsed = tcp.parse_options(ref[20:doff])
        d = dict((k, v) for k, v in opts if k not in ("NOP", "EOL"))
        assert parsed.mss == d.get("MSS")
        assert parsed.wscale == (min(d["WScale"], 14) if "WScale" in d else None)
        assert parsed.sack_perm == ("SAckOK" in d)
        if "Timestamp" in d:
            assert (parsed.ts_val, parsed.ts_ecr) == d["Timestamp"]
        if "SAck" in d:
            assert parsed.sack == [(100, 200), (300, 400)]
        v = tcp.Tcp.checked(mine)
        assert v is not None and v.checksum_ok(A, B) and v.doff == doff and v.window == 999


def test_parse_options_stops_like_conntrack() -> None:
    # a zero length stops the walk (no infinite loop), a partial option too
    assert tcp.parse_options(b"\x02\x00\x05\xb4") == tcp.TcpOptions()
    assert tcp.parse_options(b"\x03\x03\x07\x02\x04\x05").wscale == 7
    assert tcp.parse_options(b"\x03\x03\x07\x02\x04\x05").mss is None
    assert tcp.parse_options(b"\x00\x02\x04\x05\xb4") == tcp.TcpOptions()


def test_sack_right_edge() -> None:
    sack = b"\x01\x01\x05\x12" + (10).to_bytes(4, "big") + (50).to_bytes(4, "big") \
        + (60).to_bytes(4, "big") + (0x90).to_bytes(4, "big")
    assert tcp.sack_right_edge(sack, 20) == 0x90
    assert tcp.sack_right_edge(sack, 0x100) == 0x100
    # wrap-around: after() in sequence space
    big = b"\x05\x0a" + (0xFFFFFFF0).to_bytes(4, "big") + (5).to_bytes(4, "big")
    assert tcp.sack_right_edge(big, 0xFFFFFFF8) == 5
    ts = b"\x01\x01\x08\x0a" + bytes(8)
    assert tcp.sack_right_edge(ts, 7) == 7


def _syn(opts: list[tuple[str, object]], payload: bytes = b"") -> bytearray:
    return _ip(TCP(sport=1234, dport=80, flags="S", seq=1, options=opts) / payload)


def test_clamp_mss_lowers_never_raises() -> None:
    p = _syn([("MSS", 1460), ("SAckOK", b"")])
    assert tcp.clamp_mss(p, 1400) == 0
    assert bytes(p) == bytes(_syn([("MSS", 1400), ("SAckOK", b"")]))
    assert tcp.clamp_mss(p, 1500) == 0
    assert bytes(p) == bytes(_syn([("MSS", 1400), ("SAckOK", b"")]))


def test_clamp_mss_adds_option() -> None:
    p = _syn([("WScale", 7)])
    assert tcp.clamp_mss(p, 1400) == 4
    ref = _syn([("MSS", 536), ("WScale", 7)])
    assert bytes(p) == bytes(ref)           # at most 536 when the SYN had none
    p = _syn([], b"data")
    assert tcp.clamp_mss(p, 1000) == 0 and bytes(p) == bytes(_syn([], b"data"))
    p = _syn([])
    assert tcp.clamp_mss(p, 500) == 4
    assert bytes(p) == bytes(_syn([("MSS", 500)]))
    trunc = _syn([])[:30]
    assert tcp.clamp_mss(trunc, 500) == -1


def test_rst_numbers() -> None:
    syn = _ip(TCP(sport=5, dport=6, flags="S", seq=100) / b"xyz", tos=0x13)
    r = tcp.build_rst_for(syn)
    assert r is not None
    t = tcp.Tcp(r, 20)
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window, t.doff) == (6, 5, 0, 104, tcp.RST | tcp.ACKF, 0, 20)
    assert r[1] == 0x10 and r[6] == 0x40 and r[4:6] == b"\0\0"
    assert ipv4.Ipv4(r).src == B and ipv4.Ipv4(r).dst == A and t.checksum_ok(B, A)
    ack = _ip(TCP(sport=5, dport=6, flags="A", seq=100, ack=0xABCDEF))
    r = tcp.build_rst_for(ack, reject=True)
    assert r is not None
    t = tcp.Tcp(r, 20)
    assert (t.seq, t.ack, t.flags) == (0xABCDEF, 0, tcp.RST) and r[1] == 0
    fin = _ip(TCP(sport=5, dport=6, flags="F", seq=0xFFFFFFFF))
    r = tcp.build_rst_for(fin)
    assert r is not None and tcp.Tcp(r, 20).ack == 0
    assert tcp.build_rst_for(_ip(TCP(flags="R"))) is None
    assert tcp.build_rst_for(_ip(TCP(flags="S"), frag=3)) is None


# ------------------------------------------------------------------ ICMP
def test_error_quotes_up_to_576() -> None:
    big = _ip(UDP(sport=1, dport=2) / bytes(2000), tos=0x2B)
    e = icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, big)
    assert e is not None and len(e) == 576
    assert e[1] == 0xC0 | (0x2B & 0x1E) and e[6] == 0 and e[8] == 64
    assert bytes(e[28:]) == bytes(big[:548])
    assert ipv4.Ipv4(e).src == B and ipv4.Ipv4(e).dst == A and cs.verify(e[20:])
    small = _ip(UDP(sport=1, dport=2) / b"x")
    e = icmp.build_error(3, 3, small)
    assert e is not None and bytes(e[28:]) == bytes(small)
    e = icmp.build_error(3, 3, big, route_mtu=100)
    assert e is not None and len(e) == 100
    assert icmp.build_error(3, 3, big, route_mtu=48) is None
    fn = icmp.build_error(3, 4, big, mtu=1280)
    assert fn is not None and fn[26:28] == (1280).to_bytes(2, "big")
    pp = icmp.build_error(12, 0, big, info=22 << 24)
    assert pp is not None and pp[24] == 22


def test_error_matches_scapy() -> None:
    q = _ip(UDP(sport=1, dport=2) / b"hello")
    e = icmp.build_error(3, 3, q, ident=7)
    ref = raw(IP(src="10.0.0.2", dst="10.0.0.1", tos=0xC0, id=7) / ICMP(type=3, code=3) / bytes(q))
    assert bytes(e or b"") == ref


def test_may_send_error() -> None:
    udp_pkt = _ip(UDP() / b"x")
    assert icmp.may_send_error(udp_pkt)
    assert not icmp.may_send_error(udp_pkt, pkttype=1)
    assert not icmp.may_send_error(udp_pkt, route_bcast_mcast=True)
    assert not icmp.may_send_error(_ip(UDP() / b"x", frag=1))
    assert icmp.may_send_error(_ip(ICMP(type=8)))
    assert not icmp.may_send_error(_ip(ICMP(type=3)))
    assert not icmp.may_send_error(_ip(ICMP(type=11)))
    assert not icmp.may_send_error(_ip(ICMP(type=40)))
    assert icmp.may_send_error(_ip(ICMP(type=18)))


def test_echo_reply_matches_scapy() -> None:
    req = _ip(ICMP(type=8, code=3, id=77, seq=5) / b"abcdef", tos=0x28)
    r = icmp.build_echo_reply(req, ident=9)
    ref = raw(IP(src="10.0.0.2", dst="10.0.0.1", tos=0x28, id=9) / ICMP(type=0, code=3, id=77, seq=5) / b"abcdef")
    assert bytes(r or b"") == ref
    v = icmp.Icmp(bytearray(ref), 20)
    assert (v.type, v.code, v.ident, v.seq) == (0, 3, 77, 5) and v.checksum_ok()
    v.ident = 1234
    assert v.checksum_ok() and v.ident == 1234
