"""pyfw.wire.ipv4: views, receive checks, rewrites and options, against
scapy's packets and the kernel's rules."""

from __future__ import annotations

import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP

from pyfw.wire import checksum as cs
from pyfw.wire import ipv4

A = 0x0A000001
B = 0x0A000002
C = 0xC0A80105


def _s(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def _pkt(**kw: Any) -> bytearray:
    return bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", **kw) / UDP(sport=1, dport=2) / b"payload"))


# ------------------------------------------------------------------ validate
def test_validate_good_and_padded() -> None:
    p = _pkt()
    assert ipv4.validate(p) is None
    padded = p + bytes(20)
    assert ipv4.rcv_core(padded) is None
    assert padded == p


def test_validate_reasons() -> None:
    p = _pkt()
    assert ipv4.validate(p[:19]) == ipv4.DROP_IP_INHDR
    v6 = bytearray(p)
    v6[0] = 0x65
    assert ipv4.validate(v6) == ipv4.DROP_IP_INHDR
    ihl4 = bytearray(p)
    ihl4[0] = 0x44
    assert ipv4.validate(ihl4) == ipv4.DROP_IP_INHDR
    ihl15 = bytearray(p)
    ihl15[0] = 0x4F
    assert ipv4.validate(ihl15) == ipv4.DROP_IP_INHDR   # header runs past the frame
    bad = bytearray(p)
    bad[10] ^= 1
    assert ipv4.validate(bad) == ipv4.DROP_IP_CSUM
    long = bytearray(p)
    long[2:4] = (len(p) + 1).to_bytes(2, "big")
    ipv4.send_check(long)
    assert ipv4.validate(long) == ipv4.DROP_PKT_TOO_SMALL
    short = bytearray(p)
    short[2:4] = (19).to_bytes(2, "big")
    ipv4.send_check(short)
    assert ipv4.validate(short) == ipv4.DROP_IP_INHDR
    assert ipv4.validate(p, pkttype=ipv4.PACKET_OTHERHOST) == ipv4.DROP_OTHERHOST
    assert ipv4.DROP_MIBS[ipv4.DROP_IP_CSUM] == ("InCsumErrors", "InHdrErrors")


def test_checksum_checked_before_lengths() -> None:
    # ip_rcv_core checks the header checksum before tot_len
    p = _pkt()
    p[2:4] = (len(p) + 50).to_bytes(2, "big")   # checksum now stale too
    assert ipv4.validate(p) == ipv4.DROP_IP_CSUM


# ------------------------------------------------------------------ build and view
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(1, 255), st.booleans(), st.binary(max_size=200),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))
def test_build_matches_scapy(tos: int, ident: int, ttl: int, df: bool, payload: bytes, s: int, d: int) -> None:
    mine = ipv4.build(s, d, 253, payload, ttl=ttl, ident=ident, tos=tos, df=df)
    theirs = raw(IP(src=_s(s), dst=_s(d), proto=253, ttl=ttl, id=ident, tos=tos,
                    flags="DF" if df else 0) / payload)
    assert bytes(mine) == theirs
    v = ipv4.Ipv4.checked(mine)
    assert v is not None
    assert (v.src, v.dst, v.ttl, v.tos, v.ident, v.df, v.mf, v.proto) == (s, d, ttl, tos, ident, df, False, 253)
    assert v.checksum_ok() and v.tot_len == len(mine) and v.ihl == 20


def test_build_with_options_matches_scapy() -> None:
    opts = b"\x94\x04\x00\x00"
    mine = ipv4.build(A, B, 17, b"x", options=opts)
    theirs = raw(IP(src="10.0.0.1", dst="10.0.0.2", proto=17, id=0, options=[opts]) / b"x")
    assert bytes(mine) == theirs


def test_view_setters() -> None:
    p = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", ttl=9, tos=0) / TCP(sport=5, dport=6) / b"abc"))
    v = ipv4.Ipv4(p)
    v.ttl = 200
    v.tos = 0xB8
    v.src = C
    v.dst = A
    ref = raw(IP(src="192.168.1.5", dst="10.0.0.1", ttl=200, tos=0xB8) / TCP(sport=5, dport=6) / b"abc")
    assert bytes(p) == ref


# ------------------------------------------------------------------ rewrites
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=100),
       st.sampled_from(["tcp", "udp", "udp0", "icmp"]))
def test_nat_rewrites_match_recomputation(new_src: int, new_dst: int, payload: bytes, kind: str) -> None:
    l4 = {"tcp": TCP(sport=1000, dport=80, seq=5), "udp": UDP(sport=53, dport=53),
          "udp0": UDP(sport=53, dport=53, chksum=0), "icmp": ICMP(type=8)}[kind]
    p = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / l4 / payload))
    ipv4.set_src(p, new_src)
    ipv4.set_dst(p, new_dst)
    s, d = _s(new_src), _s(new_dst)
    again = {"tcp": TCP(sport=1000, dport=80, seq=5), "udp": UDP(sport=53, dport=53),
             "udp0": UDP(sport=53, dport=53, chksum=0), "icmp": ICMP(type=8)}[kind]
    ref = bytearray(raw(IP(src=s, dst=d) / again / payload))
    if kind == "udp" and ref[26:28] == b"\0\0":
        ref[26:28] = b"\xff\xff"   # scapy leaves a computed 0; Linux sends 0xffff
    assert bytes(p) == bytes(ref)


def test_udp_without_checksum_stays_without() -> None:
    p = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2, chksum=0) / b"x"))
    ipv4.set_src(p, C)
    assert p[26:28] == b"\0\0"


def test_no_l4_fix_for_later_fragments_or_short_quotes() -> None:
    p = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", frag=10) / (b"\xaa" * 24)))
    before = bytes(p[20:])
    ipv4.set_src(p, C)
    assert bytes(p[20:]) == before
    short = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP()))[:28]   # as quoted in an ICMP error
    before = bytes(short[20:])
    ipv4.set_dst(short, C)
    assert bytes(short[20:]) == before and cs.verify(short[:20])


def test_decrease_ttl_and_set_ttl() -> None:
    p = _pkt(ttl=64)
    assert ipv4.decrease_ttl(p) == 63
    assert bytes(p) == bytes(_pkt(ttl=63))
    ipv4.set_ttl(p, 1)
    assert bytes(p) == bytes(_pkt(ttl=1))


# ------------------------------------------------------------------ options
def _with_opts(opts: bytes) -> bytearray:
    return ipv4.build(A, B, 17, b"\0" * 8, options=opts)


def test_compile_good_options() -> None:
    rr = b"\x07\x0b\x04" + bytes(8) + b"\x00"
    o = ipv4.compile_options(_with_opts(rr))
    assert o.error is None and o.rr == 20 and o.rr_needaddr and o.optlen == 12
    ra = ipv4.compile_options(_with_opts(b"\x94\x04\x00\x00"))
    assert ra.router_alert == 20 and ra.error is None
    lsrr = ipv4.compile_options(_with_opts(b"\x83\x07\x04\x0a\x00\x00\x09\x00"))
    assert lsrr.srr == 20 and not lsrr.is_strictroute and lsrr.error is None
    unknown = ipv4.compile_options(_with_opts(b"\x19\x04\x00\x00"))
    assert unknown.error is None


def test_compile_bad_options_pointer() -> None:
    # option runs past the header: pointer at the option
    assert ipv4.compile_options(_with_opts(b"\x44\x0c\x09\x00" + bytes(4))).error == 20
    # RR pointer < 4: pointer at the pointer octet
    assert ipv4.compile_options(_with_opts(b"\x07\x07\x03" + bytes(5))).error == 22
    # two RRs: at the second
    assert ipv4.compile_options(_with_opts(b"\x07\x03\x04\x07\x03\x04\x00\x00")).error == 23
    # length 1
    assert ipv4.compile_options(_with_opts(b"\x19\x01\x00\x00")).error == 20
    # timestamp overflow 15
    assert ipv4.compile_options(_with_opts(b"\x44\x04\x05\xf0")).error == 23
    # CIPSO without a configured DOI
    assert ipv4.compile_options(_with_opts(b"\x86\x08\x00\x00\x00\x01\x00\x00")).error == 22
    assert ipv4.compile_options(_with_opts(b"\x86\x04\x00\x00")).error == 21


def test_compile_mangles_received_options() -> None:
    rr = b"\x07\x0b\x04" + bytes(8) + b"\x00"
    p = _with_opts(rr)
    o = ipv4.compile_options(p, spec_dst=C)
    assert p[20:32] == b"\x07\x0b\x08" + C.to_bytes(4, "big") + bytes(4) + b"\x00"
    assert o.is_changed
    ts = b"\x44\x0c\x05\x00" + bytes(8)
    p = _with_opts(ts)
    ipv4.compile_options(p, spec_dst=C, now=3600.25)
    assert p[22] == 9 and int.from_bytes(p[24:28], "big") == 3600250
    tsaddr = b"\x44\x0c\x05\x01" + bytes(8)
    p = _with_opts(tsaddr)
    ipv4.compile_options(p, spec_dst=C, now=1.0)
    assert p[22] == 13 and p[24:28] == C.to_bytes(4, "big") and int.from_bytes(p[28:32], "big") == 1000
    full = b"\x44\x08\x09\x00" + bytes(4)   # no room: overflow counted
    p = _with_opts(full)
    ipv4.compile_options(p, spec_dst=C)
    assert p[23] == 0x10
    junk = b"\x00\x01\x02\x03"
    p = _with_opts(junk)
    ipv4.compile_options(p, spec_dst=C)
    assert p[20:24] == bytes(4)


def test_options_fragment() -> None:
    opts = b"\x94\x04\x00\x00\x07\x07\x04\x00\x00\x00\x00\x01"
    assert ipv4.options_fragment(opts) == b"\x94\x04\x00\x00" + b"\x01" * 7 + b"\x01"
    assert ipv4.options_fragment(b"\x07\x03\x04\x00") == b"\x01\x01\x01\x00"
    assert ipv4.options_fragment(b"\x00\x07\x03\x04") == b"\x00\x07\x03\x04"


def test_reply_options_timestamp_and_srr() -> None:
    ts = b"\x44\x0c\x05\x00" + bytes(8)
    p = _with_opts(ts)
    o = ipv4.compile_options(p, spec_dst=B, now=2.0)
    r = ipv4.reply_options(p, o, B, now=3.0)
    assert r is not None
    opts, faddr = r
    assert faddr is None
    assert opts[:4] == b"\x44\x0c\x0d\x00" and int.from_bytes(opts[4:8], "big") == 2000
    assert int.from_bytes(opts[8:12], "big") == 3000
    # a loose source route that came via 10.0.0.9 and C: reversed, first hop C
    lsrr = b"\x83\x0b\x0c\x0a\x00\x00\x09" + C.to_bytes(4, "big") + b"\x00"
    p = _with_opts(lsrr)
    o = ipv4.compile_options(p)
    r = ipv4.reply_options(p, o, B)
    assert r is not None
    opts, faddr = r
    assert faddr == C
    assert opts == b"\x83\x0b\x04" + (0x0A000009).to_bytes(4, "big") + A.to_bytes(4, "big") + b"\x00"


def test_decrease_ttl_on_a_packet() -> None:
    from pyfw.engine.packet import Packet

    pkt = Packet(_pkt(ttl=10))
    assert ipv4.decrease_ttl(pkt) == 9
    assert pkt.ttl == 9 and bytes(pkt.data) == bytes(_pkt(ttl=9))
