"""Per-packet semantics of the match extensions (compile()), rule text
through the real parser, packets made with scapy.  The kernel comparison
of the same closures is in test_match_kernel.py."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("scapy")
from matchkit import (  # noqa: E402
    HOTDROP,
    FakeEnv,
    compile_rule,
    ip4,
    make_packet,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from pyfw.engine.api import (  # noqa: E402
    IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY,
    IP_CT_NEW,
    IP_CT_RELATED,
    IP_CT_RELATED_REPLY,
    IP_CT_UNTRACKED,
    IPS_CONFIRMED,
    IPS_DST_NAT,
    IPS_SEEN_REPLY,
    IPS_SRC_NAT,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
)
from pyfw.engine.conntrack.conn import Conn, Tuple  # noqa: E402

A, B = "10.0.0.1", "10.0.0.2"


def tcp(dport: int = 80, sport: int = 1234, flags: str = "S", options: Any = (), **ip: Any) -> Any:
    return IP(src=ip.pop("src", A), dst=ip.pop("dst", B), **ip) / TCP(
        sport=sport, dport=dport, flags=flags, options=list(options))


def udp(dport: int = 53, sport: int = 1234, **ip: Any) -> Any:
    return IP(src=ip.pop("src", A), dst=ip.pop("dst", B), **ip) / UDP(sport=sport, dport=dport)


def icmp(type_: int = 8, code: int = 0, **ip: Any) -> Any:
    return IP(src=ip.pop("src", A), dst=ip.pop("dst", B), **ip) / ICMP(type=type_, code=code)


def verdict(spec: str, ip: Any, env: Any = None, **kw: Any) -> bool | str:
    return compile_rule(spec, env)(make_packet(ip, **kw))


# --------------------------------------------------------------------- tcp
@pytest.mark.parametrize("spec,pkt,want", [
    ("-p tcp --dport 80", tcp(80), True),
    ("-p tcp --dport 80", tcp(81), False),
    ("-p tcp ! --dport 80", tcp(81), True),
    ("-p tcp ! --dport 80", tcp(80), False),
    ("-p tcp --dport 1000:2000", tcp(1000), True),
    ("-p tcp --dport 1000:2000", tcp(2000), True),
    ("-p tcp --dport 1000:2000", tcp(2001), False),
    ("-p tcp ! --dport 1000:2000", tcp(999), True),
    ("-p tcp --sport 1234", tcp(), True),
    ("-p tcp --sport :1000", tcp(), False),
    ("-p tcp --sport 1000: --dport :100", tcp(80), True),
    ("-p tcp ! --sport 0:65535", tcp(), False),
    ("-p tcp --syn", tcp(flags="S"), True),
    ("-p tcp --syn", tcp(flags="SA"), False),
    ("-p tcp --syn", tcp(flags="SE"), True),  # ECE is outside the mask
    ("-p tcp ! --syn", tcp(flags="SA"), True),
    ("-p tcp --tcp-flags ALL NONE", tcp(flags=""), True),
    ("-p tcp --tcp-flags ALL NONE", tcp(flags="N"), True),  # NS (bit 8) is not compared
    ("-p tcp --tcp-flags SYN,FIN SYN,FIN", tcp(flags="SF"), True),
    ("-p tcp --tcp-flags ACK ACK", tcp(flags="PA"), True),
    ("-p tcp ! --tcp-flags ACK ACK", tcp(flags="PA"), False),
    ("-p tcp --tcp-option 2", tcp(options=[("MSS", 1460)]), True),
    ("-p tcp --tcp-option 2", tcp(options=[("NOP", None), ("WScale", 7)]), False),
    ("-p tcp --tcp-option 3", tcp(options=[("NOP", None), ("WScale", 7)]), True),
    ("-p tcp ! --tcp-option 2", tcp(options=[("NOP", None), ("WScale", 7)]), True),
    ("-p tcp --tcp-option 2", tcp(), False),  # no options at all
    ("-p tcp ! --tcp-option 2", tcp(), True),
    ("-p tcp --tcp-option 8", tcp(options=[("EOL", None), ("NOP", None), ("NOP", None),
                                          ("NOP", None)]), False),
    ("-p tcp --dport 80 --tcp-option 4", tcp(options=[("SAckOK", b"")]), True),
])
def test_tcp(spec: str, pkt: Any, want: bool) -> None:
    assert verdict(spec, pkt) is want


def test_tcp_fragments_and_tinygrams() -> None:
    rule = compile_rule("-p tcp --dport 80")
    inv = compile_rule("-p tcp ! --dport 80")
    # offset 1 (8 bytes): hot drop; later fragments: no match; first fragment: normal
    assert rule(make_packet(IP(src=A, dst=B, proto=6, frag=1) / Raw(b"x" * 16))) == HOTDROP
    assert inv(make_packet(IP(src=A, dst=B, proto=6, frag=1) / Raw(b"x" * 16))) == HOTDROP
    assert rule(make_packet(IP(src=A, dst=B, proto=6, frag=2) / Raw(b"x" * 16))) is False
    assert inv(make_packet(IP(src=A, dst=B, proto=6, frag=2) / Raw(b"x" * 16))) is False
    assert rule(make_packet(IP(src=A, dst=B, flags="MF") / TCP(dport=80))) is True
    # fewer than 20 bytes of TCP header: hot drop, whatever the rule
    short = IP(src=A, dst=B, proto=6) / Raw(bytes(TCP(dport=80))[:19])
    assert rule(make_packet(short)) == HOTDROP
    assert compile_rule("-p tcp")(make_packet(short)) is True  # no tcp match, no hot drop


def test_tcp_option_malformed() -> None:
    opt = compile_rule("-p tcp --tcp-option 2")
    # data offset 4 (< 5) with an option test: hot drop
    hdr = bytearray(bytes(TCP(dport=80, dataofs=5)))
    hdr[12] = 4 << 4
    assert opt(make_packet(IP(src=A, dst=B, proto=6) / Raw(bytes(hdr)))) == HOTDROP
    assert compile_rule("-p tcp --dport 80")(make_packet(IP(src=A, dst=B, proto=6) / Raw(bytes(hdr)))) is True
    # options announced past the end of the packet: hot drop
    hdr = bytearray(bytes(TCP(dport=80)))
    hdr[12] = 8 << 4
    assert opt(make_packet(IP(src=A, dst=B, proto=6) / Raw(bytes(hdr) + b"\x01\x01"))) == HOTDROP
    # a length byte of 0 steps one byte (no endless loop)
    hdr = bytearray(bytes(TCP(dport=80)))
    hdr[12] = 6 << 4
    assert opt(make_packet(IP(src=A, dst=B, proto=6) / Raw(bytes(hdr) + b"\x05\x00\x02\x04"))) is True


# --------------------------------------------------------------------- udp
@pytest.mark.parametrize("spec,pkt,want", [
    ("-p udp --dport 53", udp(53), True),
    ("-p udp --dport 53", udp(54), False),
    ("-p udp ! --dport 53", udp(54), True),
    ("-p udp --sport 1000:2000 --dport 53", udp(53, 1500), True),
    ("-p udp --sport 1000:2000 --dport 53", udp(53, 999), False),
    ("-p udp ! --sport 1000:2000 ! --dport 53", udp(54, 999), True),
    ("-p udp --dport 2:1", udp(1), False),  # reversed range: never
    ("-p udp ! --dport 2:1", udp(1), True),
])
def test_udp(spec: str, pkt: Any, want: bool) -> None:
    assert verdict(spec, pkt) is want


def test_udp_fragments_and_tinygrams() -> None:
    rule = compile_rule("-p udp --dport 53")
    assert rule(make_packet(IP(src=A, dst=B, proto=17, frag=1) / Raw(b"x" * 16))) is False
    assert rule(make_packet(IP(src=A, dst=B, proto=17) / Raw(b"x" * 7))) == HOTDROP
    assert rule(make_packet(IP(src=A, dst=B, proto=17, flags="MF") / UDP(dport=53))) is True


# --------------------------------------------------------------------- icmp
@pytest.mark.parametrize("spec,pkt,want", [
    ("-p icmp --icmp-type echo-request", icmp(8), True),
    ("-p icmp --icmp-type echo-request", icmp(0), False),
    ("-p icmp --icmp-type echo-request", icmp(8, 5), True),
    ("-p icmp ! --icmp-type echo-request", icmp(0), True),
    ("-p icmp --icmp-type any", icmp(42, 7), True),
    ("-p icmp ! --icmp-type any", icmp(42, 7), False),
    ("-p icmp --icmp-type port-unreachable", icmp(3, 3), True),
    ("-p icmp --icmp-type port-unreachable", icmp(3, 1), False),
    ("-p icmp --icmp-type destination-unreachable", icmp(3, 13), True),
    ("-p icmp --icmp-type 3/13", icmp(3, 13), True),
    ("-p icmp --icmp-type 3/13", icmp(3, 12), False),
    ("-p icmp --icmp-type 11", icmp(11, 1), True),
])
def test_icmp(spec: str, pkt: Any, want: bool) -> None:
    assert verdict(spec, pkt) is want


def test_icmp_tinygram() -> None:
    rule = compile_rule("-p icmp --icmp-type any")
    assert rule(make_packet(IP(src=A, dst=B, proto=1) / Raw(b"\x08\x00\x00\x00"))) == HOTDROP
    assert rule(make_packet(IP(src=A, dst=B, proto=1) / Raw(b"\x08\x00" + b"\x00" * 6))) is True
    assert rule(make_packet(IP(src=A, dst=B, proto=1, frag=3) / Raw(b"\x08"))) is False


# --------------------------------------------------------------------- multiport
@pytest.mark.parametrize("spec,pkt,want", [
    ("-p tcp -m multiport --dports 22,80,443", tcp(80), True),
    ("-p tcp -m multiport --dports 22,80,443", tcp(81), False),
    ("-p tcp -m multiport ! --dports 22,80,443", tcp(81), True),
    ("-p tcp -m multiport --dports 1000:2000,80", tcp(1500), True),
    ("-p tcp -m multiport --dports 1000:2000,80", tcp(2001), False),
    ("-p tcp -m multiport --sports 1234", tcp(80), True),
    ("-p tcp -m multiport --sports 80", tcp(80), False),
    ("-p tcp -m multiport --ports 80", tcp(80, 5), True),
    ("-p tcp -m multiport --ports 80", tcp(5, 80), True),
    ("-p tcp -m multiport --ports 80", tcp(5, 6), False),
    ("-p tcp -m multiport ! --ports 1:10", tcp(5, 60000), False),
    ("-p udp -m multiport --dports 53,123", udp(123), True),
])
def test_multiport(spec: str, pkt: Any, want: bool) -> None:
    assert verdict(spec, pkt) is want


def test_multiport_short_headers() -> None:
    rule = compile_rule("-p tcp -m multiport --dports 80")
    # 4 bytes of TCP are enough for multiport (the ports), not for tcp
    four = IP(src=A, dst=B, proto=6) / Raw(bytes(TCP(sport=1, dport=80))[:4])
    assert rule(make_packet(four)) is True
    assert rule(make_packet(IP(src=A, dst=B, proto=6) / Raw(b"\x00\x01\x00"))) == HOTDROP
    assert rule(make_packet(IP(src=A, dst=B, proto=6, frag=1) / Raw(b"x" * 8))) is False


# --------------------------------------------------------------------- conntrack / state
def conn(orig: tuple[str, str, int, int, int], reply: tuple[str, str, int, int, int] | None = None,
         status: int = IPS_CONFIRMED | IPS_SEEN_REPLY, timeout_at: float = 100.0, mark: int = 0) -> Conn:
    s, d, p, sp, dp = orig
    o = Tuple(ip4(s), ip4(d), p, sp, dp)
    r = o.inverted() if reply is None else Tuple(ip4(reply[0]), ip4(reply[1]), reply[2], reply[3], reply[4])
    return Conn(orig=o, reply=r, status=status, timeout_at=timeout_at, mark=mark)


def ct_packet(ct: Conn | None, ctinfo: int, time: float = 0.0, **kw: Any) -> Any:
    p = make_packet(udp(), time=time)
    p.ct = ct
    p.ctinfo = ctinfo
    p.ctdir = 1 if ctinfo >= 3 and ctinfo != IP_CT_UNTRACKED else 0
    for k, v in kw.items():
        setattr(p, k, v)
    return p


FLOW = (A, B, 17, 1234, 53)


@pytest.mark.parametrize("spec,ctinfo,want", [
    ("-m state --state NEW", IP_CT_NEW, True),
    ("-m state --state NEW", IP_CT_ESTABLISHED, False),
    ("-m state --state ESTABLISHED", IP_CT_ESTABLISHED_REPLY, True),
    ("-m state --state RELATED", IP_CT_RELATED_REPLY, True),
    ("-m state --state RELATED,ESTABLISHED", IP_CT_RELATED, True),
    ("-m state ! --state NEW", IP_CT_ESTABLISHED, True),
    ("-m state --state INVALID", IP_CT_NEW, False),
    ("-m conntrack --ctstate NEW,INVALID", IP_CT_NEW, True),
    ("-m conntrack ! --ctstate NEW,INVALID", IP_CT_NEW, False),
    ("-m conntrack --ctstate SNAT", IP_CT_ESTABLISHED, False),
    ("-m conntrack --ctdir ORIGINAL", IP_CT_ESTABLISHED, True),
    ("-m conntrack --ctdir ORIGINAL", IP_CT_ESTABLISHED_REPLY, False),
    ("-m conntrack --ctdir REPLY", IP_CT_RELATED_REPLY, True),
    ("-m conntrack --ctstate ESTABLISHED --ctdir REPLY", IP_CT_ESTABLISHED, False),
])
def test_ctstate(spec: str, ctinfo: int, want: bool) -> None:
    assert compile_rule(spec)(ct_packet(conn(FLOW), ctinfo)) is want


@pytest.mark.parametrize("spec,want_invalid,want_untracked", [
    ("-m state --state INVALID", True, False),
    ("-m state --state UNTRACKED", False, True),
    ("-m state ! --state INVALID", False, True),
    ("-m conntrack --ctstate NEW", False, False),
    ("-m conntrack ! --ctstate NEW", True, True),
    # every other option needs an entry: false without one, even with `!`
    ("-m conntrack ! --ctproto 6", False, False),
    ("-m conntrack ! --ctstatus ASSURED", False, False),
    ("-m conntrack --ctdir REPLY", False, False),
    # ... but with a passing state test they are skipped (the kernel returns
    # "state was tested" for a packet without an entry)
    ("-m conntrack --ctstate INVALID,UNTRACKED --ctproto 17", True, True),
])
def test_ctstate_without_entry(spec: str, want_invalid: bool, want_untracked: bool) -> None:
    rule = compile_rule(spec)
    assert rule(ct_packet(None, -1)) is want_invalid
    assert rule(ct_packet(None, IP_CT_UNTRACKED)) is want_untracked
    assert rule(ct_packet(None, -1, notrack=True)) is want_untracked


def test_ct_template() -> None:
    """After a CT target in raw (before conntrack) the kernel's match sees the
    template: NEW, CONFIRMED, zero tuples, nothing left to expire, mark 0."""
    p = ct_packet(None, -1)
    p.ct_template = object()
    for spec, want in (("-m state --state NEW", True), ("-m state --state INVALID", False),
                       ("-m conntrack --ctstatus CONFIRMED", True), ("-m conntrack --ctexpire 0", True),
                       ("-m conntrack --ctproto 17", False), ("-m conntrack --ctorigsrc 0.0.0.0/32", True),
                       ("-m connmark --mark 0", True), ("-m connmark ! --mark 0", False)):
        assert compile_rule(spec)(p) is want, spec


def test_ct_nat_states() -> None:
    # DNAT 10.0.0.2:53 -> 192.168.1.5:5353 : the reply comes from the new address
    dnat = conn(FLOW, ("192.168.1.5", A, 17, 5353, 1234))
    snat = conn(FLOW, (B, "1.2.3.4", 17, 53, 40000))
    both = conn(FLOW, ("192.168.1.5", "1.2.3.4", 17, 5353, 40000))
    by_status = conn(FLOW, status=IPS_CONFIRMED | IPS_SRC_NAT)
    cases = {
        "-m conntrack --ctstate DNAT": (True, False, True, False),
        "-m conntrack --ctstate SNAT": (False, True, True, True),
        "-m conntrack --ctstate SNAT,DNAT": (True, True, True, True),
        "-m conntrack ! --ctstate DNAT": (False, True, False, True),
        "-m conntrack --ctstate NEW": (True, True, True, True),
        "-m conntrack --ctrepldst 1.2.3.4": (False, True, True, False),
        "-m conntrack --ctreplsrc 192.168.1.0/24 --ctreplsrcport 5000:6000": (True, False, True, False),
        "-m conntrack --ctorigdst 10.0.0.2 --ctorigdstport 53": (True, True, True, True),
    }
    for spec, wants in cases.items():
        got = tuple(compile_rule(spec)(ct_packet(c, IP_CT_NEW)) for c in (dnat, snat, both, by_status))
        assert got == wants, spec
    assert compile_rule("-m conntrack --ctstate DNAT")(ct_packet(conn(FLOW, status=IPS_DST_NAT), 0))


@pytest.mark.parametrize("spec,want", [
    ("-m conntrack --ctproto 17", True),
    ("-m conntrack --ctproto 6", False),
    ("-m conntrack ! --ctproto 6", True),
    ("-m conntrack --ctorigsrc 10.0.0.0/8", True),
    ("-m conntrack --ctorigsrc 10.0.0.2", False),
    ("-m conntrack ! --ctorigsrc 10.0.0.2", True),
    ("-m conntrack --ctorigdst 10.0.0.2", True),
    ("-m conntrack --ctreplsrc 10.0.0.2 --ctrepldst 10.0.0.1", True),
    ("-m conntrack --ctrepldst 10.0.0.2", False),
    ("-m conntrack --ctorigsrcport 1234", True),
    ("-m conntrack --ctorigsrcport 1000:1233", False),
    ("-m conntrack ! --ctorigsrcport 1000:1233", True),
    ("-m conntrack --ctorigdstport 53 --ctreplsrcport 53 --ctrepldstport 1234", True),
    ("-m conntrack --ctstatus SEEN_REPLY", True),
    ("-m conntrack --ctstatus ASSURED", False),
    ("-m conntrack --ctstatus ASSURED,CONFIRMED", True),
    ("-m conntrack ! --ctstatus ASSURED", True),
    ("-m conntrack --ctstatus NONE", False),  # an empty mask never holds
    ("-m conntrack ! --ctstatus NONE", True),
    ("-m conntrack --ctexpire 90", False),  # 89.5 s left: 89
    ("-m conntrack --ctexpire 89", True),
    ("-m conntrack --ctexpire 80:89", True),
    ("-m conntrack --ctexpire 90:100", False),
    ("-m conntrack ! --ctexpire 90:100", True),
])
def test_ct_fields(spec: str, want: bool) -> None:
    p = ct_packet(conn(FLOW), IP_CT_ESTABLISHED, time=10.5)
    assert compile_rule(spec)(p) is want


def test_ctexpire_unconfirmed_and_icmp() -> None:
    new = conn(FLOW, status=0, timeout_at=30.0)  # relative timeout until confirmed
    assert compile_rule("-m conntrack --ctexpire 0")(ct_packet(new, IP_CT_NEW, time=1.0))
    ping = conn((A, B, 1, 7, 8 << 8))
    p = ct_packet(ping, IP_CT_ESTABLISHED)
    # ICMP: the id is the "source port", type << 8 | code the "destination port"
    assert compile_rule("-m conntrack --ctorigsrcport 7 --ctorigdstport 2048")(p) is True


# --------------------------------------------------------------------- mark / connmark / comment
@pytest.mark.parametrize("spec,mark,want", [
    ("-m mark --mark 1", 1, True),
    ("-m mark --mark 1", 3, False),
    ("-m mark --mark 1/1", 3, True),
    ("-m mark ! --mark 1/1", 3, False),
    ("-m mark --mark 0x10/0xf0", 0x1f, True),
    ("-m mark --mark 0x11/0xf0", 0x11, False),  # value bits outside the mask: never
    ("-m comment --comment hello", 0, True),
])
def test_mark(spec: str, mark: int, want: bool) -> None:
    p = make_packet(udp())
    p.mark = mark
    assert compile_rule(spec)(p) is want


def test_connmark() -> None:
    p = ct_packet(conn(FLOW, mark=0x15), IP_CT_ESTABLISHED)
    assert compile_rule("-m connmark --mark 0x15")(p) is True
    assert compile_rule("-m connmark --mark 0x5/0xf")(p) is True
    assert compile_rule("-m connmark ! --mark 0x5/0xf")(p) is False
    nothing = ct_packet(None, -1)
    assert compile_rule("-m connmark --mark 0")(nothing) is False
    assert compile_rule("-m connmark ! --mark 1")(nothing) is False


# --------------------------------------------------------------------- iprange / addrtype
@pytest.mark.parametrize("spec,want", [
    ("-m iprange --src-range 10.0.0.0-10.0.0.1", True),
    ("-m iprange --src-range 10.0.0.2-10.0.0.9", False),
    ("-m iprange ! --src-range 10.0.0.2-10.0.0.9", True),
    ("-m iprange --src-range 10.0.0.1 --dst-range 10.0.0.2-10.0.0.2", True),
    ("-m iprange --src-range 10.0.0.1 ! --dst-range 10.0.0.2-10.0.0.3", False),
    ("-m iprange --dst-range 10.0.0.5-10.0.0.1", False),  # reversed
    ("-m iprange ! --dst-range 10.0.0.5-10.0.0.1", True),
])
def test_iprange(spec: str, want: bool) -> None:
    assert verdict(spec, udp()) is want


@pytest.mark.parametrize("spec,src,dst,want", [
    ("-m addrtype --dst-type LOCAL", A, "192.168.1.1", True),
    ("-m addrtype --dst-type LOCAL", A, "192.168.1.2", False),
    ("-m addrtype --dst-type UNICAST", A, "192.168.1.2", True),
    ("-m addrtype ! --dst-type LOCAL", A, "192.168.1.2", True),
    ("-m addrtype --dst-type BROADCAST", A, "192.168.1.255", True),
    ("-m addrtype --dst-type BROADCAST", A, "255.255.255.255", True),
    ("-m addrtype --dst-type BROADCAST", A, "0.1.2.3", True),
    ("-m addrtype --dst-type MULTICAST", A, "224.0.0.1", True),
    ("-m addrtype --src-type LOCAL --dst-type LOCAL", "127.0.0.1", "192.168.1.1", True),
    ("-m addrtype --src-type LOCAL ! --dst-type LOCAL", "127.0.0.1", "192.168.1.1", False),
    ("-m addrtype --dst-type LOCAL,BROADCAST", A, "192.168.1.255", True),
    # limited to the in interface eth0: 127.0.0.1 is lo's, so UNICAST there
    ("-m addrtype --dst-type LOCAL --limit-iface-in", A, "127.0.0.1", False),
    ("-m addrtype --dst-type UNICAST --limit-iface-in", A, "127.0.0.1", True),
    ("-m addrtype --dst-type LOCAL --limit-iface-in", A, "192.168.1.1", True),
])
def test_addrtype(spec: str, src: str, dst: str, want: bool) -> None:
    assert verdict(spec, udp(src=src, dst=dst)) is want


def test_addrtype_limit_out() -> None:
    rule = compile_rule("-m addrtype --src-type LOCAL --limit-iface-out", chain="OUTPUT")
    assert rule(make_packet(udp(src="192.168.1.1"), indev="", outdev="eth0")) is True
    assert rule(make_packet(udp(src="192.168.1.1"), indev="", outdev="lo")) is False


# --------------------------------------------------------------------- length / ttl / tos / dscp
@pytest.mark.parametrize("spec,pkt,want", [
    ("-m length --length 28", udp(), True),
    ("-m length --length 29:", udp(), False),
    ("-m length ! --length 29:", udp(), True),
    ("-m length --length :100", tcp(), True),
    ("-m length --length 50:40", udp(), False),
    ("-m ttl --ttl-eq 64", udp(), True),
    ("-m ttl ! --ttl-eq 64", udp(), False),
    ("-m ttl --ttl-lt 64", udp(ttl=63), True),
    ("-m ttl --ttl-lt 64", udp(), False),
    ("-m ttl --ttl-gt 1", udp(ttl=2), True),
    ("-m ttl --ttl-gt 2", udp(ttl=2), False),
    ("-m tos --tos Minimize-Delay", udp(tos=0x10), True),
    ("-m tos --tos Minimize-Delay", udp(tos=0x11), False),  # mask 0x3f
    ("-m tos --tos Minimize-Delay", udp(tos=0x50), True),
    ("-m tos --tos 0x10/0xff", udp(tos=0x50), False),
    ("-m tos ! --tos 0x10/0xff", udp(tos=0x50), True),
    ("-m dscp --dscp 46", udp(tos=0xB8), True),
    ("-m dscp --dscp 46", udp(tos=0xB9), True),  # ECN bits ignored
    ("-m dscp --dscp-class EF", udp(tos=0xB8), True),
    ("-m dscp ! --dscp-class EF", udp(tos=0xB8), False),
    ("-m dscp --dscp 0", udp(tos=3), True),
])
def test_header_fields(spec: str, pkt: Any, want: bool) -> None:
    assert verdict(spec, pkt) is want


# --------------------------------------------------------------------- mac / pkttype
def test_mac() -> None:
    frame = Ether(src="02:00:00:00:00:07", dst="02:00:00:00:00:01")
    eth = bytes(frame)[:14]
    assert verdict("-m mac --mac-source 02:00:00:00:00:07", udp(), eth=eth) is True
    assert verdict("-m mac --mac-source 02:00:00:00:00:08", udp(), eth=eth) is False
    assert verdict("-m mac ! --mac-source 02:00:00:00:00:08", udp(), eth=eth) is True
    # no Ethernet header, or the loopback device: never, even with `!`
    assert verdict("-m mac ! --mac-source 02:00:00:00:00:08", udp()) is False
    assert verdict("-m mac ! --mac-source 02:00:00:00:00:08", udp(), eth=eth, indev="lo") is False


@pytest.mark.parametrize("spec,kind,want", [
    ("-m pkttype --pkt-type unicast", PACKET_HOST, True),
    ("-m pkttype --pkt-type unicast", PACKET_BROADCAST, False),
    ("-m pkttype --pkt-type broadcast", PACKET_BROADCAST, True),
    ("-m pkttype --pkt-type multicast", PACKET_MULTICAST, True),
    ("-m pkttype --pkt-type otherhost", PACKET_OTHERHOST, True),
    ("-m pkttype ! --pkt-type unicast", PACKET_MULTICAST, True),
    ("-m pkttype --pkt-type broadcast", 5, True),  # PACKET_LOOPBACK, unicast dst
])
def test_pkttype(spec: str, kind: int, want: bool) -> None:
    p = make_packet(udp())
    p.pkttype = kind
    assert compile_rule(spec)(p) is want
    if kind == 5:
        q = make_packet(udp(dst="224.0.0.9"))
        q.pkttype = 5
        assert compile_rule("-m pkttype --pkt-type multicast")(q) is True


# --------------------------------------------------------------------- owner
def owner_pkt(uid: int | None, gid: int | None = None, groups: tuple[int, ...] = (),
              kernel: bool = False) -> Any:
    p = make_packet(udp(src=B, dst=A), indev="", outdev="eth0", hook="OUTPUT")
    p.local = True
    p.uid, p.gid = uid, gid
    p.extra = {"groups": groups} if groups else None
    if kernel:
        p.extra = {"kernel_sk": True}
    return p


@pytest.mark.parametrize("spec,wants", [
    # (user 1000/100 groups 5,6), (kernel socket), (no socket)
    ("-m owner --uid-owner 1000", (True, False, False)),
    ("-m owner --uid-owner 0-999", (False, False, False)),
    ("-m owner ! --uid-owner 0-999", (True, True, True)),
    ("-m owner --gid-owner 100", (True, False, False)),
    ("-m owner --gid-owner 6", (False, False, False)),
    ("-m owner --gid-owner 6 --suppl-groups", (True, False, False)),
    ("-m owner ! --gid-owner 6 --suppl-groups", (False, True, False)),
    ("-m owner ! --gid-owner 6", (True, True, True)),
    ("-m owner --socket-exists", (True, True, False)),
    ("-m owner ! --socket-exists", (False, False, True)),
    ("-m owner --socket-exists --uid-owner 1000", (True, False, False)),
    ("-m owner ! --uid-owner 1000 ! --gid-owner 100", (False, True, True)),
])
def test_owner(spec: str, wants: tuple[bool, bool, bool]) -> None:
    rule = compile_rule(spec, chain="OUTPUT")
    got = (rule(owner_pkt(1000, 100, (5, 6))), rule(owner_pkt(None, kernel=True)), rule(owner_pkt(None)))
    assert got == wants


# --------------------------------------------------------------------- limit
def run_times(spec: str, times: list[float], env: Any = None, make: Any = None) -> list[bool | str]:
    rule = compile_rule(spec, env)
    out = []
    for i, t in enumerate(times):
        p = make(i) if make is not None else udp()
        out.append(rule(make_packet(p, time=t)))
    return out


def test_limit_burst_and_refill() -> None:
    # 1/sec, burst 3: three at once, then one a second
    got = run_times("-m limit --limit 1/sec --limit-burst 3",
                    [0, 0.01, 0.02, 0.03, 0.5, 1.1, 1.2, 2.2, 2.25, 5.0, 5.01, 5.02, 5.03])
    assert got == [True, True, True, False, False, True, False, True, False, True, True, True, False]


def test_limit_default_and_separate_buckets() -> None:
    # default 3/hour burst 5; each rule has its own bucket
    env = FakeEnv()
    a = compile_rule("-m limit", env)
    b = compile_rule("-m limit", env)
    assert [a(make_packet(udp(), time=t)) for t in range(7)] == [True] * 5 + [False] * 2
    assert b(make_packet(udp(), time=7)) is True
    assert a(make_packet(udp(), time=7 + 1200)) is True  # 20 minutes: one token
    assert a(make_packet(udp(), time=7 + 1201)) is False


def test_limit_credit_arithmetic() -> None:
    # 250/sec at HZ 250: one packet per jiffy
    got = run_times("-m limit --limit 250/sec --limit-burst 1", [0, 0.001, 0.004, 0.0079, 0.008])
    assert got == [True, False, True, False, True]


# --------------------------------------------------------------------- hashlimit
def test_hashlimit_per_source() -> None:
    env = FakeEnv()
    spec = ("-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip "
            "--hashlimit-name t1")
    srcs = ["10.1.0.1", "10.1.0.1", "10.1.0.1", "10.1.0.2", "10.1.0.2", "10.1.0.2", "10.1.0.1"]
    got = run_times(spec, [0, 0, 0, 0, 0, 0, 1.1], env, lambda i: udp(src=srcs[i]))
    assert got == [True, True, False, True, True, False, True]


def test_hashlimit_above_masks_and_ports() -> None:
    env = FakeEnv()
    spec = ("-m hashlimit --hashlimit-above 1/min --hashlimit-burst 1 --hashlimit-mode srcip,dstport "
            "--hashlimit-srcmask 24 --hashlimit-name t2")
    pkts = [udp(src="10.1.0.1", dport=1), udp(src="10.1.0.9", dport=1), udp(src="10.1.1.1", dport=1),
            udp(src="10.1.0.1", dport=2)]
    got = run_times(spec, [0, 0, 0, 0], env, lambda i: pkts[i])
    assert got == [False, True, False, False]
    table = env.objects[("hashlimit", "t2")]
    assert sorted(table.entries) == [(ip4("10.1.0.0"), 0, 0, 1), (ip4("10.1.0.0"), 0, 0, 2),
                                     (ip4("10.1.1.0"), 0, 0, 1)]


def test_hashlimit_shared_table_keeps_first_config() -> None:
    env = FakeEnv()
    first = compile_rule("-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 1 "
                         "--hashlimit-name shared", env)
    second = compile_rule("-m hashlimit --hashlimit-upto 100/sec --hashlimit-burst 100 "
                          "--hashlimit-name shared", env)
    assert first(make_packet(udp(), time=0)) is True
    # same (mode-less) bucket, with the first rule's rate
    assert second(make_packet(udp(), time=0)) is False


def test_hashlimit_expire_gc_and_max() -> None:
    env = FakeEnv()
    spec = ("-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 1 --hashlimit-mode srcip "
            "--hashlimit-htable-expire 1000 --hashlimit-htable-gcinterval 500 "
            "--hashlimit-htable-max 2 --hashlimit-htable-size 2 --hashlimit-name t3")
    rule = compile_rule(spec, env)
    table = env.objects[("hashlimit", "t3")]
    assert rule(make_packet(udp(src="10.2.0.1"), time=0)) is True
    assert rule(make_packet(udp(src="10.2.0.1"), time=0.5)) is False   # still there, no credit
    assert rule(make_packet(udp(src="10.2.0.2"), time=0.6)) is True
    assert rule(make_packet(udp(src="10.2.0.3"), time=0.6)) == HOTDROP  # table full
    # 10.2.0.1 expires at 1.5 s, 10.2.0.2 at 1.6 s; the gc runs every 0.5 s
    assert rule(make_packet(udp(src="10.2.0.3"), time=1.55)) is True  # gc at 1.5 freed one
    assert len(table.entries) == 2
    assert rule(make_packet(udp(src="10.2.0.1"), time=1.56)) == HOTDROP  # still full
    assert rule(make_packet(udp(src="10.2.0.1"), time=2.1)) is True   # gc at 2.0 freed 10.2.0.2


def test_hashlimit_bytes_and_rate_match() -> None:
    env = FakeEnv()
    # 1 kb/s with a 2 kb burst: 1000-byte packets, two refills of the bucket
    rule = compile_rule("-m hashlimit --hashlimit-upto 1kb/s --hashlimit-burst 2kb "
                        "--hashlimit-name b1", env)
    big = IP(src=A, dst=B) / UDP() / Raw(b"x" * 972)
    got = [rule(make_packet(big, time=0)) for _ in range(5)]
    assert got == [True, True, True, False, False]
    # rate-match: 2 per second window, burst 0
    rm = compile_rule("-m hashlimit --hashlimit-upto 2/sec --hashlimit-burst 1 --hashlimit-rate-match "
                      "--hashlimit-name r1", env)
    got = [rm(make_packet(udp(), time=t)) for t in (0, 0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 2.3)]
    assert got == [True, True, True, False, False, False, False, True]


# --------------------------------------------------------------------- recent
def test_recent_set_rcheck_update_remove() -> None:
    env = FakeEnv()
    set_ = compile_rule("-p tcp --dport 22 -m recent --set --name ssh", env)
    check = compile_rule("-m recent --rcheck --seconds 10 --hitcount 3 --name ssh", env)
    upd = compile_rule("-m recent --update --seconds 10 --name ssh", env)
    rem = compile_rule("-p tcp --dport 23 -m recent --remove --name ssh", env)
    x = tcp(22, src="10.3.0.1")
    assert check(make_packet(x, time=0)) is False
    assert upd(make_packet(x, time=0)) is False
    for t in (0, 1, 2):
        assert set_(make_packet(x, time=t)) is True
    assert check(make_packet(x, time=3)) is True
    assert check(make_packet(x, time=10.5)) is False  # the stamp at 0 is too old
    assert upd(make_packet(x, time=10.5)) is True      # and records 10.5
    assert check(make_packet(x, time=11)) is True
    assert rem(make_packet(tcp(23, src="10.3.0.1"), time=12)) is True
    assert rem(make_packet(tcp(23, src="10.3.0.1"), time=12)) is False
    assert upd(make_packet(x, time=12)) is False


def test_recent_invert_ttl_mask_rdest() -> None:
    env = FakeEnv()
    set_ = compile_rule("-m recent --set --name l --mask 255.255.255.0 --rdest", env)
    check = compile_rule("-m recent ! --rcheck --name l --rdest", env)
    ttl = compile_rule("-m recent --rcheck --rttl --name l --rdest", env)
    assert check(make_packet(udp(dst="10.4.0.7"), time=0)) is True
    assert set_(make_packet(udp(dst="10.4.0.7", ttl=10), time=0)) is True
    assert check(make_packet(udp(dst="10.4.0.99"), time=0)) is False  # same /24
    assert ttl(make_packet(udp(dst="10.4.0.1", ttl=10), time=0)) is True
    assert ttl(make_packet(udp(dst="10.4.0.1", ttl=11), time=0)) is False
    # FORWARD / POSTROUTING: the TTL before the decrement
    assert ttl(make_packet(udp(dst="10.4.0.1", ttl=9), outdev="eth1", time=0)) is True


def test_recent_hitcount_ring_and_flush() -> None:
    env = FakeEnv()
    set_ = compile_rule("-m recent --set --name h", env)
    two = compile_rule("-m recent --rcheck --hitcount 2 --name h", env)
    for t in range(40):
        set_(make_packet(udp(), time=t))
    table = env.objects[("recent", "h")]
    assert table.nstamps_max_mask == 31 and len(table.entries[ip4(A)].stamps) == 32
    assert two(make_packet(udp(), time=40)) is True
    # a rule wanting more stamps flushes the list
    compile_rule("-m recent --rcheck --hitcount 40 --name h", env)
    assert table.nstamps_max_mask == 63 and not table.entries


def test_recent_reap_and_list_size() -> None:
    env = FakeEnv()
    set_ = compile_rule("-m recent --set --name r", env)
    reap = compile_rule("-m recent --update --seconds 5 --reap --name r", env)
    set_(make_packet(udp(src="10.5.0.1"), time=0))
    set_(make_packet(udp(src="10.5.0.2"), time=4))
    # 10.5.0.2 matches; the oldest (10.5.0.1, last seen 0) is reaped
    assert reap(make_packet(udp(src="10.5.0.2"), time=6)) is True
    assert list(env.objects[("recent", "r")].entries) == [ip4("10.5.0.2")]
    for i in range(150):
        set_(make_packet(udp(src=f"10.6.{i // 250}.{i % 250}"), time=10))
    entries = env.objects[("recent", "r")].entries
    assert len(entries) == 100 and next(iter(entries)) == ip4("10.6.0.50")
