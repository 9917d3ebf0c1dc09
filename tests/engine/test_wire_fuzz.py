"""Random and truncated bytes into every parser, validator and builder of
pyfw.wire: nothing raises; the results are the documented ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP

from pyfw.wire import arp, ethernet, frag, icmp, ipv4, tcp, udp

_REASONS = {None, ipv4.DROP_IP_INHDR, ipv4.DROP_IP_CSUM, ipv4.DROP_PKT_TOO_SMALL}
_SEEDS = [
    bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2", options=[b"\x07\x07\x04\x00\x00\x00\x00\x00"])
                  / TCP(flags="S", options=[("MSS", 1460), ("WScale", 3)]) / b"x")),
    bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / (b"y" * 30))),
    bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3) / IP() / UDP())),
]


def _fixed(data: bytes) -> bytearray:
    """Random bytes made into a header that passes the checksum check."""
    b = bytearray(data)
    if len(b) >= 20:
        b[0] = 0x40 | (b[0] & 0x0F)
        ihl = (b[0] & 0x0F) * 4
        if 20 <= ihl <= len(b):
            ipv4.send_check(b)
    return b


def _everything(data: bytearray) -> None:
    assert ipv4.validate(data) in _REASONS
    ipv4.compile_options(bytes(data))
    o = ipv4.compile_options(data, spec_dst=0x0A000002, now=12.5)
    if o.error is None and len(data) >= 20:
        ipv4.reply_options(data, o, 0x0A000002)
    ipv4.options_fragment(bytes(data[:40]))
    icmp.may_send_error(data)
    icmp.build_error(3, 3, data, src=1)
    icmp.build_echo_reply(data)
    tcp.build_rst_for(data)
    tcp.parse_options(bytes(data))
    tcp.sack_right_edge(bytes(data), 12345)
    tcp.clamp_mss(bytearray(data), 1000)
    arp.validate(data)
    arp.answer(data, _Host(), "eth0")
    for cls in (ipv4.Ipv4, tcp.Tcp, udp.Udp, icmp.Icmp):
        cls.checked(data)
    v = ipv4.Ipv4.checked(data)
    if v is not None:
        assert v.ihl >= 20 and v.tot_len >= 0 and len(v.options) <= 40 and v.frag_offset >= 0


class _Host:
    def mac(self, iface: str) -> str:
        return "02:00:00:00:00:01"

    def is_local(self, addr: int) -> bool:
        return addr == 0x0A000002


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes(data: bytes) -> None:
    _everything(bytearray(data))


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=20, max_size=120))
def test_random_headers_with_good_checksum(data: bytes) -> None:
    b = _fixed(data)
    _everything(b)
    if ipv4.rcv_core(b) is None:
        assert len(b) == ipv4.tot_len(b)
        d = frag.Defrag()
        d.add(b, 0.0)
        d.expire(100.0)
        for f in frag.fragment(b, 576):
            assert ipv4.validate(f) is None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_SEEDS), st.integers(0, 200), st.integers(0, 255), st.integers(0, 199))
def test_truncated_and_flipped(seed: bytearray, cut: int, value: int, pos: int) -> None:
    b = bytearray(seed[:cut])
    if b:
        b[pos % len(b)] = value
    _everything(b)
    _everything(_fixed(bytes(b)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400), st.integers(0, 300), st.booleans(),
                          st.integers(0, 3)), max_size=12))
def test_defrag_never_raises(frags: list[tuple[int, int, int, bool, int]]) -> None:
    d = frag.Defrag(high_thresh=20000)
    t = 0.0
    for ident, off8, n, mf, ecn in frags:
        fo = off8 | (ipv4.IP_MF if mf else 0)
        p = ipv4.build(1, 2, 17, bytes(n), ident=ident, frag_off=fo, tos=ecn)
        r = d.add(p, t)
        if r is not None:
            assert ipv4.validate(r.datagram) is None
            assert sum(r.pieces) == len(r.datagram) - 20
            frag.fragment(r.datagram, 576, frag_max_size=r.frag_max_size, pmtu_df=r.pmtu_df, pieces=r.pieces)
        t += 7.0
        d.expire(t)
    assert d.mem >= 0


@given(st.binary(max_size=80))
def test_ethernet_and_arp_frames(data: bytes) -> None:
    e = ethernet.Ethernet.checked(bytearray(data))
    if e is not None:
        ethernet.pkt_type(e.dst, b"\x02" + bytes(5))
        arp.answer(ethernet.build(ethernet.BROADCAST, b"\x02" * 6, ethernet.ETH_P_ARP, data), _Host(), "eth0")
