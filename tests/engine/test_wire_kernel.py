"""pyfw.wire's builders against what the real kernel sends, byte for byte
from the IP header on (the IP ID of a kernel-chosen ident aside): ICMP
port unreachable, RSTs, echo replies, REJECT's answers, TTL exceeded from
a router, fragmentation over an MTU-1280 link, conntrack's reassembly and
refragmentation, ARP replies, and the counters of ip_rcv_core's drops.

Needs root (network namespaces); skipped otherwise."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wire_lab import IP, MAC, Lab  # noqa: E402

from pyfw.wire import arp, ethernet, frag, icmp, ipv4, tcp  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

pytest.importorskip("scapy")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet import ICMP, TCP, UDP, fragment  # noqa: E402
from scapy.layers.inet import IP as SIP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402


def _a(name: str) -> int:
    return int(ipaddress.IPv4Address(IP[name]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    try:
        lb = Lab(tmp_path_factory.mktemp("wirelab"))
    except Exception as exc:  # no netns support here
        pytest.skip(f"cannot build the namespace lab: {exc}")
    try:
        yield lb
    finally:
        lb.close()


def _eth(dst: str, ip_pkt: bytes) -> bytes:
    return raw(Ether(src=MAC["a0"], dst=MAC[dst], type=0x0800)) + ip_pkt


def _ip_replies(frames: list[bytes], proto: int | None = None) -> list[bytearray]:
    out = []
    for f in frames:
        if f[12:14] != b"\x08\x00":
            continue
        d = bytearray(f[14:])
        ipv4.rcv_core(d)
        if proto is None or d[9] == proto:
            out.append(d)
    return out


def _with_id(built: bytearray | None, ident: int) -> bytes:
    assert built is not None
    b = bytearray(built)
    b[4:6] = ident.to_bytes(2, "big")
    ipv4.send_check(b)
    return bytes(b)


# ------------------------------------------------------------------ host answers
def test_udp_closed_port_unreachable(lab: Lab) -> None:
    sent = raw(SIP(src=IP["a0"], dst=IP["b0"], id=4242, ttl=61, tos=0x2b) / UDP(sport=40000, dport=9)
               / (b"q" * 700))
    back, _ = lab.exchange("a", "a0", [_eth("b0", sent)])
    got = _ip_replies(back, 1)
    assert len(got) == 1
    mine = icmp.build_error(icmp.DEST_UNREACH, icmp.PORT_UNREACH, sent, src=_a("b0"))
    assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])


def test_tcp_rst_for_syn_and_for_ack(lab: Lab) -> None:
    cases = [
        SIP(src=IP["a0"], dst=IP["b0"], id=1, tos=0x13) / TCP(sport=40001, dport=1, flags="S", seq=1000,
                                                             options=[("MSS", 1460), ("SAckOK", b"")]),
        SIP(src=IP["a0"], dst=IP["b0"], id=2) / TCP(sport=40002, dport=1, flags="PA", seq=5, ack=777777)
        / (b"d" * 33),
        SIP(src=IP["a0"], dst=IP["b0"], id=3) / TCP(sport=40003, dport=1, flags="SF", seq=0xFFFFFFF0)
        / (b"e" * 20),
    ]
    for pkt in cases:
        sent = raw(pkt)
        back, _ = lab.exchange("a", "a0", [_eth("b0", sent)])
        got = _ip_replies(back, 6)
        assert len(got) == 1, pkt.summary()
        mine = tcp.build_rst_for(sent)
        assert mine is not None
        assert bytes(got[0]) == bytes(mine), pkt.summary()


def test_echo_reply(lab: Lab) -> None:
    sent = raw(SIP(src=IP["a0"], dst=IP["b0"], id=77, tos=0x28) / ICMP(type=8, code=0, id=0x1234, seq=9)
               / bytes(range(100)))
    back, _ = lab.exchange("a", "a0", [_eth("b0", sent)])
    got = _ip_replies(back, 1)
    assert len(got) == 1
    mine = icmp.build_echo_reply(sent)
    assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])


def test_replies_echo_record_route(lab: Lab) -> None:
    """A received record-route option gets our address (ip_options_compile),
    and every answer echoes it with room for one more entry, filled with
    the answer's source (__ip_options_echo + ip_options_build)."""
    rr = b"\x07\x0f\x04" + bytes(12) + b"\x00"
    cases = [
        (UDP(sport=40060, dport=9) / b"x", 17),
        (TCP(sport=40061, dport=1, flags="S", seq=7), 6),
        (ICMP(type=8, id=5, seq=1) / b"ping", 1),
    ]
    me = _a("b0")
    for l4, proto in cases:
        seg = raw(SIP(src=IP["a0"], dst=IP["b0"]) / l4)[20:]
        sent = ipv4.build(_a("a0"), me, proto, seg, ident=0x77, options=rr)
        back, _ = lab.exchange("a", "a0", [_eth("b0", bytes(sent))])
        got = _ip_replies(back)
        assert len(got) == 1, l4.summary()
        rcv = bytearray(sent)
        opts = ipv4.compile_options(rcv, spec_dst=me)
        assert opts.error is None and opts.rr == 20
        ro = ipv4.reply_options(rcv, opts, me)
        assert ro is not None and ro[1] is None
        if proto == 17:
            mine = icmp.build_error(3, 3, rcv, src=me, options=ro[0])
        elif proto == 6:
            mine = tcp.build_rst_for(rcv, options=ro[0])
        else:
            mine = icmp.build_echo_reply(rcv, options=ro[0])
        assert mine is not None
        ident = got[0][4] << 8 | got[0][5]
        assert bytes(got[0]) == (bytes(mine) if proto == 6 else _with_id(mine, ident)), l4.summary()


def test_bad_options_parameter_problem(lab: Lab) -> None:
    """Options that do not compile are answered with a parameter problem
    pointing at the bad octet, whatever the protocol."""
    bad = b"\x44\x0c\x09\x00" + bytes(4)     # timestamp claiming 12 bytes in 8
    sent = ipv4.build(_a("a0"), _a("b0"), 17, raw(UDP(sport=40070, dport=9) / b"x"), ident=0x78, options=bad)
    back, _ = lab.exchange("a", "a0", [_eth("b0", bytes(sent))])
    got = _ip_replies(back, 1)
    assert len(got) == 1
    opts = ipv4.compile_options(bytearray(sent), spec_dst=_a("b0"))
    assert opts.error == 20
    mine = icmp.build_error(icmp.PARAMETERPROB, 0, sent, src=_a("b0"), info=opts.error << 24)
    assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])


def test_reject_answers(lab: Lab) -> None:
    lab.iptables("b", "-A", "INPUT", "-p", "tcp", "--dport", "7", "-j", "REJECT", "--reject-with", "tcp-reset")
    lab.iptables("b", "-A", "INPUT", "-p", "udp", "--dport", "8", "-j", "REJECT")
    try:
        syn = raw(SIP(src=IP["a0"], dst=IP["b0"], id=9, tos=0x10) / TCP(sport=40010, dport=7, flags="S",
                                                                      seq=42))
        back, _ = lab.exchange("a", "a0", [_eth("b0", syn)])
        got = _ip_replies(back, 6)
        assert len(got) == 1
        assert bytes(got[0]) == bytes(tcp.build_rst_for(syn, reject=True) or b"")
        dgram = raw(SIP(src=IP["a0"], dst=IP["b0"], id=10) / UDP(sport=40011, dport=8) / (b"z" * 2000))
        back, _ = lab.exchange("a", "a0", [_eth("b0", dgram)])
        got = _ip_replies(back, 1)
        assert len(got) == 1
        mine = icmp.build_error(3, 3, dgram, src=_a("b0"))
        assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])
    finally:
        lab.iptables("b", "-F", "INPUT")


def test_arp_reply(lab: Lab) -> None:
    req = arp.build_request(MAC["a0"], _a("a0"), _a("b0"))
    back, _ = lab.exchange("a", "a0", [bytes(req)])
    replies = [f for f in back if f[12:14] == b"\x08\x06"]
    assert replies, back
    mine = arp.build_reply(req[14:], MAC["b0"])
    assert replies[0][:len(mine)] == bytes(mine)
    assert set(replies[0][len(mine):]) <= {0}   # veth pads nothing; tolerate zeros


# ------------------------------------------------------------------ forwarding
def test_ttl_exceeded_from_router(lab: Lab) -> None:
    sent = raw(SIP(src=IP["a0"], dst=IP["c0"], id=555, ttl=1, tos=0x04) / UDP(sport=40020, dport=33434)
               / (b"t" * 40))
    back, _ = lab.exchange("a", "a0", [_eth("b0", sent)])
    got = _ip_replies(back, 1)
    assert len(got) == 1
    mine = icmp.build_error(icmp.TIME_EXCEEDED, icmp.EXC_TTL, sent, src=_a("b0"))
    assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])


def test_frag_needed_from_router(lab: Lab) -> None:
    sent = raw(SIP(src=IP["a0"], dst=IP["c0"], id=556, flags="DF") / UDP(sport=40021, dport=9) / (b"f" * 1400))
    back, _ = lab.exchange("a", "a0", [_eth("b0", sent)])
    got = _ip_replies(back, 1)
    assert len(got) == 1
    mine = icmp.build_error(icmp.DEST_UNREACH, icmp.FRAG_NEEDED, sent, mtu=1280, src=_a("b0"))
    assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])


def _forwarded(sent: bytes | bytearray) -> bytearray:
    d = bytearray(sent)
    ipv4.decrease_ttl(d)
    return d


@pytest.mark.parametrize("options", [b"", b"\x94\x04\x00\x00\x19\x04\x00\x00"])
def test_fragmentation_mtu_1280(lab: Lab, options: bytes) -> None:
    pkt = SIP(src=IP["a0"], dst=IP["c0"], id=0x3344, ttl=20, tos=0x08) / UDP(sport=40030, dport=9) / (b"F" * 2992)
    sent = bytearray(raw(pkt))
    if options:
        sent = ipv4.build(_a("a0"), _a("c0"), 17, sent[20:], ttl=20, ident=0x3344, tos=0x08, options=options)
    _, seen = lab.exchange("a", "a0", [_eth("b0", bytes(sent))], listen=("c", "c0"))
    got = [bytes(g) for g in _ip_replies(seen, 17)]
    mine = [bytes(f) for f in frag.fragment(_forwarded(sent), 1280)]
    assert len(mine) == 3
    assert got == mine


def _defrag_forward_case(lab: Lab, frags: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Send fragments through the router with conntrack on; what arrives
    at C and what pyfw predicts."""
    _, seen = lab.exchange("a", "a0", [_eth("b0", f) for f in frags], listen=("c", "c0"))
    got = [bytes(g) for g in _ip_replies(seen, 17)]
    d = frag.Defrag()
    res = None
    for f in frags:
        res = d.add(f, 0.0) or res
    assert res is not None
    fwd = _forwarded(res.datagram)
    if frag.exceeds_mtu(len(fwd), bool(fwd[6] & 0x40), 1280, res.frag_max_size, ignore_df=True):
        return got, []
    mine = [bytes(x) for x in frag.fragment(fwd, 1280, frag_max_size=res.frag_max_size,
                                            pmtu_df=res.pmtu_df, pieces=res.pieces)]
    return got, mine


def test_conntrack_reassembles_and_refragments(lab: Lab) -> None:
    lab.iptables("b", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
    try:
        base = SIP(src=IP["a0"], dst=IP["c0"], ttl=30) / UDP(sport=40040, dport=9) / (b"R" * 2992)
        # fragments that fit the 1280 link: sent again as they came (frag_list)
        p1 = base.copy()
        p1.id = 0x5001
        small = [raw(f) for f in fragment(p1, fragsize=1000)]
        got, mine = _defrag_forward_case(lab, small)
        assert got == mine and len(mine) == len(small)
        # 1500-byte fragments: sliced again for the 1280 link
        p2 = base.copy()
        p2.id = 0x5002
        big = [raw(f) for f in fragment(p2, fragsize=1480)]
        got, mine = _defrag_forward_case(lab, big)
        assert got == mine and len(mine) == 3
        # DF fragments: reassembled with DF, refragmented in their pieces
        p3 = base.copy()
        p3.id = 0x5003
        p3.flags = "DF"
        dff = [raw(f) for f in fragment(p3, fragsize=1000)]
        assert all(f[6] & 0x40 for f in dff)
        got, mine = _defrag_forward_case(lab, dff)
        assert got == mine and len(mine) == len(dff)
        assert not any(f[6] & 0x40 for f in mine)   # the frag_list path sets no DF
        # out of order with a duplicate: same datagram
        p4 = base.copy()
        p4.id = 0x5004
        shuffled = [raw(f) for f in fragment(p4, fragsize=1000)]
        shuffled = [shuffled[2], shuffled[0], shuffled[0], shuffled[1]]
        got, mine = _defrag_forward_case(lab, shuffled)
        assert got == mine
    finally:
        lab.iptables("b", "-F", "FORWARD")


def test_df_fragments_too_big_for_egress(lab: Lab) -> None:
    """Reassembled from DF fragments larger than the egress MTU:
    fragmentation needed, quoting the reassembled datagram."""
    lab.iptables("b", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
    try:
        p = SIP(src=IP["a0"], dst=IP["c0"], ttl=30, id=0x5101, flags="DF") / UDP(sport=40045, dport=9) \
            / (b"D" * 2992)
        frags = [raw(f) for f in fragment(p, fragsize=1480)]
        back, seen = lab.exchange("a", "a0", [_eth("b0", f) for f in frags], listen=("c", "c0"))
        assert _ip_replies(seen, 17) == []
        got = _ip_replies(back, 1)
        assert len(got) == 1
        d = frag.Defrag()
        res = [d.add(f, 0.0) for f in frags][-1]
        assert res is not None and res.pmtu_df and res.frag_max_size == 1500
        assert frag.exceeds_mtu(len(res.datagram), True, 1280, res.frag_max_size, ignore_df=True)
        mine = icmp.build_error(3, 4, res.datagram, mtu=1280, src=_a("b0"))
        assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])
    finally:
        lab.iptables("b", "-F", "FORWARD")


def test_reassembly_timeout_time_exceeded(lab: Lab) -> None:
    """A lone first fragment for the host: after ipfrag_time, ICMP time
    exceeded (reassembly) quoting that fragment, also with conntrack's
    defrag in front."""
    lab.ex("b", "sysctl", "-qw", "net.ipv4.ipfrag_time=1")
    lab.iptables("b", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
    try:
        p = SIP(src=IP["a0"], dst=IP["b0"], id=0x5201, tos=0x20) / UDP(sport=40046, dport=9) / (b"T" * 1992)
        first = raw(fragment(p, fragsize=1000)[0])
        back, _ = lab.exchange("a", "a0", [_eth("b0", first)], timeout=2.5)
        got = _ip_replies(back, 1)
        assert len(got) == 1
        d = frag.Defrag(timeout=1.0)
        assert d.add(first, 10.0) is None
        assert d.expire(10.9) == []
        (gone,) = d.expire(11.0)
        assert gone.head is not None and d.stats["ReasmTimeout"] == 1
        mine = icmp.build_error(icmp.TIME_EXCEEDED, icmp.EXC_FRAGTIME, gone.head, src=_a("b0"))
        assert bytes(got[0]) == _with_id(mine, got[0][4] << 8 | got[0][5])
    finally:
        lab.iptables("b", "-F", "INPUT")
        lab.ex("b", "sysctl", "-qw", "net.ipv4.ipfrag_time=30")


def test_overlapping_fragments_dropped(lab: Lab) -> None:
    lab.iptables("b", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
    try:
        body = raw(UDP(sport=40050, dport=9) / (b"O" * 1992))
        hdr: dict[str, Any] = dict(src=IP["a0"], dst=IP["c0"], id=0x6001, proto=17)
        f1 = raw(SIP(**hdr, flags="MF", frag=0) / body[:1000])
        f2 = raw(SIP(**hdr, flags="MF", frag=992 // 8) / body[992:1600])   # overlaps f1
        f3 = raw(SIP(**hdr, frag=1600 // 8) / body[1600:])
        _, seen = lab.exchange("a", "a0", [_eth("b0", f) for f in (f1, f2, f3)], listen=("c", "c0"))
        assert _ip_replies(seen, 17) == []
        d = frag.Defrag()
        assert [d.add(f, 0.0) for f in (f1, f2, f3)] == [None, None, None]
        assert d.stats["ReasmOverlaps"] == 1
    finally:
        lab.iptables("b", "-F", "FORWARD")


# ------------------------------------------------------------------ receive checks
def test_rcv_core_drops_and_counters(lab: Lab) -> None:
    lab.iptables("b", "-t", "raw", "-A", "PREROUTING", "-i", "b0")
    good = bytearray(raw(SIP(src=IP["a0"], dst=IP["b0"], id=1) / ICMP(type=8) / b"hello"))
    bad_csum = bytearray(good)
    bad_csum[10] ^= 0xFF
    v6 = bytearray(good)
    v6[0] = 0x65
    ihl4 = bytearray(good)
    ihl4[0] = 0x44
    trunc = bytearray(good)
    trunc[2:4] = (len(good) + 10).to_bytes(2, "big")
    ipv4.send_check(trunc)
    short_tot = bytearray(good)
    short_tot[2:4] = (12).to_bytes(2, "big")
    ipv4.send_check(short_tot)
    tiny = bytearray(good[:19])
    padded = bytearray(good) + bytes(30)
    cases = [bad_csum, v6, ihl4, trunc, short_tot, tiny, padded]
    try:
        for case in cases:
            before = lab.snmp("b")
            pre = lab.iptables("b", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
            lab.exchange("a", "a0", [_eth("b0", bytes(case))], timeout=0.3)
            after = lab.snmp("b")
            post = lab.iptables("b", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n")
            delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            reason = ipv4.validate(case)
            reached = pre != post
            assert reached == (reason is None), (case.hex(), reason, delta)
            for mib in ("InHdrErrors", "InCsumErrors", "InTruncatedPkts"):
                expect = 1 if reason is not None and mib in ipv4.DROP_MIBS[reason] else 0
                assert delta.get(mib, 0) == expect, (case.hex(), reason, mib, delta)
    finally:
        lab.iptables("b", "-t", "raw", "-F")


def test_ethernet_pkt_type() -> None:
    me = MAC["b0"]
    assert ethernet.pkt_type(me, me) == ethernet.PACKET_HOST
    assert ethernet.pkt_type(ethernet.BROADCAST, me) == ethernet.PACKET_BROADCAST
    assert ethernet.pkt_type(bytes.fromhex("01005e000001"), me) == ethernet.PACKET_MULTICAST
    assert ethernet.pkt_type(MAC["a0"], me) == ethernet.PACKET_OTHERHOST

