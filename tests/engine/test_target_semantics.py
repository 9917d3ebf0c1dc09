"""Per-packet behaviour of the non-NAT targets, without a kernel.

The byte-for-byte comparisons with the real kernel are in
test_target_kernel.py; these pin the rules the kernel sources state
(what is left alone, masks, shifts, the verdict encoding) so they run
everywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPerror, TCPerror, raw  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets_support import FakeEnv, FakeHost, compile_target, ip, mkpkt  # noqa: E402

from pyfw.engine.api import (  # noqa: E402
    IP_CT_UNTRACKED,
    NF_DROP,
    NF_QUEUE,
    NF_VERDICT_FLAG_QUEUE_BYPASS,
    XT_CONTINUE,
)
from pyfw.engine.conntrack.conn import Conn, Tuple  # noqa: E402
from pyfw.engine.jhash import jhash_3words  # noqa: E402
from pyfw.engine.logtext import format_packet, format_trace  # noqa: E402
from pyfw.ext._csum import sum16, verifies  # noqa: E402
from pyfw.ext.target_nfqueue import nfqueue_hash  # noqa: E402

ETH = bytes.fromhex("0a0000000002" "0a0000000001" "0800")


def _ip_ok(d: bytes | bytearray) -> bool:
    ihl = (d[0] & 15) * 4
    return verifies(sum16(d, 0, ihl))


def _tcp_ok(d: bytes | bytearray) -> bool:
    ihl = (d[0] & 15) * 4
    return verifies(sum16(d, ihl) + sum16(d, 12, 20) + 6 + len(d) - ihl)


def udp_pkt(**kw: object) -> bytes:
    kw.setdefault("id", 7)
    return raw(IP(src="10.77.0.1", dst="10.77.0.2", **kw) / UDP(sport=1234, dport=9) / b"hello")


def syn(options: list[tuple[str, object]] | None = None, payload: bytes = b"", **kw: object) -> bytes:
    return raw(IP(src="10.77.0.1", dst="10.77.1.2", id=9, **kw)
               / TCP(sport=40000, dport=80, flags="S", seq=5, options=options or []) / payload)


# ---------------------------------------------------------------- MARK
@pytest.mark.parametrize("words,before,after", [
    (["--set-mark", "0x10"], 0xFF, 0x10),
    (["--set-mark", "0x10/0xf0"], 0xFF, 0x1F),
    (["--set-xmark", "0x3/0x1"], 0xF0, 0xF3),
    (["--and-mark", "0x0f"], 0xFF, 0x0F),
    (["--or-mark", "0x100"], 0x1, 0x101),
    (["--xor-mark", "0xff"], 0x0F, 0xF0),
])
def test_mark(words: list[str], before: int, after: int) -> None:
    fn = compile_target(["-j", "MARK", *words], table="mangle", chain="PREROUTING")
    p = mkpkt(udp_pkt())
    p.mark = before
    assert fn(p) == XT_CONTINUE
    assert p.mark == after


# ---------------------------------------------------------------- CONNMARK
def _ct(mark: int = 0) -> Conn:
    t = Tuple(1, 2, 17, 3, 4)
    return Conn(t, t.inverted(), mark=mark)


@pytest.mark.parametrize("words,nfmark,ctmark,want_nf,want_ct", [
    (["--set-mark", "0x5"], 0, 0xF0, 0, 0x5),
    (["--set-xmark", "0x5/0xf"], 0, 0xF0, 0, 0xF5),
    (["--set-mark", "0x1", "--left-shift-mark", "4"], 0, 0, 0, 0x10),
    (["--save-mark"], 0x1234, 0, 0x1234, 0x1234),
    (["--save-mark", "--mask", "0xff"], 0x1234, 0xAB00, 0x1234, 0xAB34),
    (["--save-mark", "--nfmask", "0xf0", "--ctmask", "0xff", "--right-shift-mark", "4"],
     0xF0, 0x100, 0xF0, 0x10F),
    (["--restore-mark"], 0x1, 0x77, 0x77, 0x77),
    (["--restore-mark", "--ctmask", "0xf", "--nfmask", "0xf0", "--left-shift-mark", "4"],
     0x0F, 0x3, 0x3F, 0x3),
    (["--set-mark", "0xffffffff", "--left-shift-mark", "8"], 0, 0, 0, 0xFFFFFF00),
])
def test_connmark(words: list[str], nfmark: int, ctmark: int, want_nf: int, want_ct: int) -> None:
    fn = compile_target(["-j", "CONNMARK", *words], table="mangle", chain="PREROUTING")
    p = mkpkt(udp_pkt())
    p.mark = nfmark
    p.ct = _ct(ctmark)
    assert fn(p) == XT_CONTINUE
    assert (p.mark, p.ct.mark) == (want_nf, want_ct)


def test_connmark_without_connection_does_nothing() -> None:
    fn = compile_target(["-j", "CONNMARK", "--restore-mark"], table="mangle", chain="PREROUTING")
    p = mkpkt(udp_pkt())
    p.mark = 9
    assert fn(p) == XT_CONTINUE and p.mark == 9


# ---------------------------------------------------------------- TOS / DSCP / TTL
@pytest.mark.parametrize("words,tos,want", [
    (["TOS", "--set-tos", "0x10"], 0x03, 0x10),
    (["TOS", "--set-tos", "0x10/0x3f"], 0xE3, 0xD0),
    (["TOS", "--and-tos", "0x0f"], 0xFF, 0x0F),
    (["TOS", "--or-tos", "0x08"], 0x01, 0x09),
    (["TOS", "--xor-tos", "0xff"], 0x0F, 0xF0),
    (["TOS", "--set-tos", "Minimize-Delay"], 0xC3, 0xD0),
    (["DSCP", "--set-dscp", "0x2e"], 0x03, 0xBB),
    (["DSCP", "--set-dscp-class", "AF41"], 0x00, 0x88),
])
def test_tos_dscp(words: list[str], tos: int, want: int) -> None:
    fn = compile_target(["-j", *words], table="mangle", chain="FORWARD")
    p = mkpkt(udp_pkt(tos=tos))
    assert fn(p) == XT_CONTINUE
    assert p.data[1] == want == p.tos
    assert _ip_ok(p.data)


@pytest.mark.parametrize("words,ttl,want", [
    (["--ttl-set", "5"], 64, 5), (["--ttl-inc", "10"], 250, 255), (["--ttl-inc", "10"], 64, 74),
    (["--ttl-dec", "5"], 3, 0), (["--ttl-dec", "1"], 64, 63), (["--ttl-set", "64"], 64, 64),
])
def test_ttl(words: list[str], ttl: int, want: int) -> None:
    fn = compile_target(["-j", "TTL", *words], table="mangle", chain="FORWARD")
    before = udp_pkt(ttl=ttl)
    p = mkpkt(before)
    assert fn(p) == XT_CONTINUE
    assert p.data[8] == want == p.ttl
    assert _ip_ok(p.data)
    if want == ttl:
        assert bytes(p.data) == before


def test_ttl_checksum_keeps_kernel_representation() -> None:
    """csum_replace2 writes a zero-equivalent result as 0x0000."""
    fn = compile_target(["-j", "TTL", "--ttl-set", "63"], table="mangle", chain="FORWARD")
    d = bytearray(udp_pkt(id=0, ttl=63))
    d[10:12] = b"\0\0"
    base = sum16(d, 0, 20)
    # the id that makes the TTL-63 header sum to 0xffff (checksum 0x0000)
    ident = (0xFFFF - base % 0xFFFF) % 0xFFFF
    p = mkpkt(udp_pkt(id=ident, ttl=64))
    fn(p)
    assert p.data[10:12] == b"\x00\x00"


# ---------------------------------------------------------------- TCPMSS
def _mss(d: bytes | bytearray) -> int | None:
    t = TCP(bytes(d[20:]))
    for name, value in t.options:
        if name == "MSS":
            return int(value)  # type: ignore[arg-type]
    return None


def test_tcpmss_lowers_never_raises() -> None:
    fn = compile_target(["-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS",
                         "--set-mss", "1000"], table="mangle", chain="FORWARD")
    p = mkpkt(syn([("MSS", 1460), ("NOP", None), ("WScale", 7)]))
    assert fn(p) == XT_CONTINUE and _mss(p.data) == 1000 and _tcp_ok(p.data)
    before = syn([("MSS", 900)])
    p = mkpkt(before)
    assert fn(p) == XT_CONTINUE and bytes(p.data) == before


def test_tcpmss_adds_option_capped_at_536() -> None:
    fn = compile_target(["-p", "tcp", "--syn", "-j", "TCPMSS", "--set-mss", "1000"],
                        table="mangle", chain="FORWARD")
    p = mkpkt(syn())
    assert fn(p) == XT_CONTINUE
    assert _mss(p.data) == 536 and len(p.data) == 44 and p.tot_len == 44 and p.tcp_doff == 24
    assert _ip_ok(p.data) and _tcp_ok(p.data)
    before = syn(payload=b"data")  # data after the header: left alone
    p = mkpkt(before)
    assert fn(p) == XT_CONTINUE and bytes(p.data) == before


def test_tcpmss_clamp_uses_both_routes() -> None:
    host = FakeHost()
    host.mtus["b1"] = 1400
    fn = compile_target(["-p", "tcp", "--syn", "-j", "TCPMSS", "--clamp-mss-to-pmtu"],
                        FakeEnv(host), table="mangle", chain="FORWARD")
    p = mkpkt(syn([("MSS", 1460)]), indev="b0", outdev="b1", hook="FORWARD")
    fn(p)
    assert _mss(p.data) == 1360
    host.mtus["b1"] = 1500
    host.mtus["b0"] = 1300  # the way back to the source is narrower
    p = mkpkt(syn([("MSS", 1460)]), indev="b0", outdev="b1", hook="FORWARD")
    fn(p)
    assert _mss(p.data) == 1260
    host.mtus["b0"] = 40
    p = mkpkt(syn([("MSS", 1460)]), indev="b0", outdev="b1", hook="FORWARD")
    assert fn(p) == NF_DROP


def test_tcpmss_drops_short_header() -> None:
    fn = compile_target(["-p", "tcp", "--syn", "-j", "TCPMSS", "--set-mss", "500"],
                        table="mangle", chain="FORWARD")
    d = bytearray(syn([("MSS", 1460)]))
    d[32] = 0xF0  # doff 15 but only 24 bytes
    assert fn(mkpkt(bytes(d))) == NF_DROP


# ---------------------------------------------------------------- CT / NOTRACK / TRACE
def test_notrack_and_ct() -> None:
    p = mkpkt(udp_pkt())
    assert compile_target(["-j", "NOTRACK"], table="raw", chain="PREROUTING")(p) == XT_CONTINUE
    assert p.notrack and p.ctinfo == IP_CT_UNTRACKED
    p = mkpkt(udp_pkt())
    compile_target(["-j", "CT", "--notrack"], table="raw", chain="PREROUTING")(p)
    assert p.notrack
    p = mkpkt(udp_pkt())
    fn = compile_target(["-p", "udp", "-j", "CT", "--zone", "7"], table="raw", chain="PREROUTING")
    fn(p)
    assert not p.notrack and p.ct_template.zone == 7
    # a second CT (or NOTRACK) leaves the first template alone
    compile_target(["-j", "NOTRACK"], table="raw", chain="PREROUTING")(p)
    assert not p.notrack and p.ct_template.zone == 7


def test_trace() -> None:
    p = mkpkt(udp_pkt())
    assert compile_target(["-j", "TRACE"], table="raw", chain="PREROUTING")(p) == XT_CONTINUE
    assert p.trace
    line = format_trace(p, "raw", "PREROUTING", "rule", 1)
    assert line.startswith("TRACE: raw:PREROUTING:rule:1 IN= OUT= SRC=10.77.0.1")


# ---------------------------------------------------------------- NFQUEUE / NFLOG
def test_nfqueue_verdicts() -> None:
    p = mkpkt(udp_pkt())
    assert compile_target(["-j", "NFQUEUE", "--queue-num", "3"])(p) == NF_QUEUE | 3 << 16
    v = compile_target(["-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"])(p)
    assert v == NF_QUEUE | 3 << 16 | NF_VERDICT_FLAG_QUEUE_BYPASS
    assert compile_target(["-j", "NFQUEUE", "--queue-balance", "4:7", "--queue-cpu-fanout"])(p) \
        == NF_QUEUE | 4 << 16
    fn = compile_target(["-j", "NFQUEUE", "--queue-balance", "4:7"])
    seen = set()
    for i in range(64):
        a = raw(IP(src=f"10.0.{i}.1", dst="10.77.0.2") / UDP())
        b = raw(IP(src="10.77.0.2", dst=f"10.0.{i}.1") / UDP())
        va, vb = fn(mkpkt(a)), fn(mkpkt(b))
        assert va == vb  # both directions of a flow: one queue
        seen.add(va >> 16)
    assert seen == {4, 5, 6, 7}


def test_jhash_known_values() -> None:
    # lookup3's final mix over three words with the kernel's initval offset
    # (values from a C build of the same arithmetic: 32-bit wrap-around)
    assert jhash_3words(1, 2, 3, 4) == 2164462655
    assert jhash_3words(0xFFFFFFFF, 0x12345678, 17, 0xDEADBEEF) == 808516801
    assert jhash_3words(0, 0, 0, 0) == 459859287
    assert nfqueue_hash(raw(IP(src="1.2.3.4", dst="5.6.7.8")), 1, 0) == 0


def test_nflog_records() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "NFLOG", "--nflog-group", "5", "--nflog-prefix", "hi"], env)
    p = mkpkt(udp_pkt())
    assert fn(p) == XT_CONTINUE
    assert env.nflogs == [(5, "hi", p)] and env.logs == []


# ---------------------------------------------------------------- LOG
def test_log_line() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "LOG", "--log-prefix", "p: "], env)
    p = mkpkt(udp_pkt(tos=0xFF, flags="DF"), indev="b0", eth=ETH)
    p.mark = 0x2A
    assert fn(p) == XT_CONTINUE
    assert env.logs == [
        "p: IN=b0 OUT= MAC=0a:00:00:00:00:02:0a:00:00:00:00:01:08:00 SRC=10.77.0.1 DST=10.77.0.2 "
        "LEN=33 TOS=0x1E PREC=0xE0 TTL=64 ID=7 DF PROTO=UDP SPT=1234 DPT=9 LEN=13 MARK=0x2a "]


def test_log_output_and_loopback_and_macdecode() -> None:
    p = mkpkt(udp_pkt(), outdev="b0", hook="OUTPUT", local=True)
    p.uid, p.gid = 1000, 100
    assert format_packet(p, "", 0x08).startswith("IN= OUT=b0 SRC=")
    assert format_packet(p, "", 0x08).endswith("UID=1000 GID=100 ")
    p = mkpkt(udp_pkt(), indev="lo")
    assert "MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC" in format_packet(p, "", 0)
    p = mkpkt(udp_pkt(), indev="b0", eth=ETH)
    assert "IN=b0 OUT= MACSRC=0a:00:00:00:00:01 MACDST=0a:00:00:00:00:02 MACPROTO=0800 SRC=" \
        in format_packet(p, "", 0x20)
    p = mkpkt(udp_pkt(), indev="b0")
    assert "IN=b0 OUT= MAC= SRC=" in format_packet(p, "", 0)


def test_log_icmp_quote_and_truncation() -> None:
    inner = IPerror(src="10.77.1.2", dst="10.77.0.1", id=3) / TCPerror(sport=80, dport=5)
    err = raw(IP(src="10.77.1.2", dst="10.77.0.1", id=4) / ICMP(type=3, code=4, nexthopmtu=1400)
              / raw(inner)[:28])
    p = mkpkt(err)
    p.mark = 1
    line = format_packet(p, "", 0)
    assert line.endswith("PROTO=ICMP TYPE=3 CODE=4 [SRC=10.77.1.2 DST=10.77.0.1 LEN=40 TOS=0x00 "
                         "PREC=0x00 TTL=64 ID=3 PROTO=TCP INCOMPLETE [8 bytes] ] MTU=1400 MARK=0x1 ")
    short = bytearray(raw(IP(src="1.1.1.1", dst="2.2.2.2") / TCP()))[:30]
    short[2:4] = b"\x00\x1e"
    p = mkpkt(bytes(short))
    p.mark = 1  # not printed after an incomplete TCP header
    assert format_packet(p, "", 0).endswith("PROTO=TCP INCOMPLETE [10 bytes] ")


# ---------------------------------------------------------------- REJECT
def test_reject_icmp_reply() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "REJECT"], env)
    orig = udp_pkt(tos=0xFF)
    p = mkpkt(orig, indev="b0", eth=ETH)
    assert fn(p) == NF_DROP and env.rejected == 1
    (reply, cause), = env.sent
    assert cause is p
    r = IP(bytes(reply))
    assert (r.src, r.dst, r.tos, r.ttl, r.flags.value, r.proto) == ("10.77.0.2", "10.77.0.1", 0xDE, 64, 0, 1)
    assert (r[ICMP].type, r[ICMP].code) == (3, 3)
    assert bytes(r[ICMP].payload) == orig
    assert _ip_ok(reply) and verifies(sum16(reply, 20))


def test_reject_quotes_at_most_548_bytes() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "REJECT", "--reject-with", "icmp-admin-prohibited"], env)
    fn(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.2") / UDP() / (b"x" * 1000)), indev="b0"))
    reply = env.sent[0][0]
    assert len(reply) == 576 and reply[21] == 13


@pytest.mark.parametrize("pkt,why", [
    (raw(IP(src="10.77.0.1", dst="10.77.0.255") / UDP()), "broadcast"),
    (raw(IP(src="10.77.0.1", dst="224.0.0.9") / UDP()), "multicast"),
    (raw(IP(src="10.77.0.1", dst="10.77.0.2", frag=10) / b"12345678"), "later fragment"),
    (raw(IP(src="10.77.0.1", dst="10.77.0.2") / ICMP(type=3) / (b"x" * 28)), "icmp error"),
    (raw(IP(src="10.77.0.1", dst="10.77.0.2") / ICMP(type=42)), "unknown icmp type"),
    (raw(IP(src="10.77.0.1", dst="10.77.0.2") / UDP(chksum=0x1234)), "bad udp checksum"),
    (raw(IP(src="10.77.0.1", dst="10.77.0.2", proto=253) / b"\x01\x02"), "payload not summing to 0"),
])
def test_reject_refusals(pkt: bytes, why: str) -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "REJECT"], env)
    assert fn(mkpkt(pkt, indev="b0")) == NF_DROP
    assert env.sent == [], why


def test_reject_no_answer_to_link_broadcast() -> None:
    env = FakeEnv()
    p = mkpkt(udp_pkt(), indev="b0")
    p.pkttype = 1
    compile_target(["-j", "REJECT"], env)(p)
    assert env.sent == []


def test_reject_udp_without_checksum_is_answered() -> None:
    env = FakeEnv()
    compile_target(["-j", "REJECT"], env)(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.2") / UDP(chksum=0)),
                                                indev="b0"))
    assert len(env.sent) == 1


def test_reject_forward_source_is_route_address() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "REJECT", "--reject-with", "icmp-host-unreachable"], env, chain="FORWARD")
    fn(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.1.2", ttl=63) / UDP()), indev="b0", outdev="b1",
             hook="FORWARD"))
    r = IP(bytes(env.sent[0][0]))
    assert (r.src, r.dst, r[ICMP].code) == ("10.77.0.2", "10.77.0.1", 1)


def test_reject_output_answers_from_own_address() -> None:
    env = FakeEnv()
    fn = compile_target(["-j", "REJECT"], env, chain="OUTPUT")
    p = mkpkt(raw(IP(src="10.77.0.2", dst="10.77.0.1") / UDP(chksum=0x1)), outdev="b0",
              hook="OUTPUT", local=True)
    fn(p)  # local packets: checksum left to the device, not checked
    r = IP(bytes(env.sent[0][0]))
    assert (r.src, r.dst) == ("10.77.0.2", "10.77.0.2")


def test_reject_ratelimit_per_destination() -> None:
    host = FakeHost()
    env = FakeEnv(host)
    fn = compile_target(["-j", "REJECT"], env)
    for i in range(10):
        fn(mkpkt(udp_pkt(), indev="b0", time=0.001 * i))
    assert len(env.sent) == 6  # a burst of 6, then one a second
    fn(mkpkt(udp_pkt(), indev="b0", time=1.5))
    assert len(env.sent) == 7
    host.sysctls["net.ipv4.icmp_ratelimit"] = 0
    for _ in range(10):
        fn(mkpkt(udp_pkt(), indev="b0", time=2.0))
    assert len(env.sent) == 17


@pytest.mark.parametrize("tcp,seq,ack,flags", [
    (TCP(sport=1, dport=2, flags="S", seq=100), 0, 101, "RA"),
    (TCP(sport=1, dport=2, flags="A", seq=100, ack=777) / b"abc", 777, 0, "R"),
    (TCP(sport=1, dport=2, flags="FPA", seq=100, ack=5) / b"abc", 5, 0, "R"),
    (TCP(sport=1, dport=2, flags="F", seq=0xFFFFFFFF) / b"ab", 0, 2, "RA"),
])
def test_reject_tcp_reset(tcp: TCP, seq: int, ack: int, flags: str) -> None:
    env = FakeEnv()
    fn = compile_target(["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"], env)
    p = mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.2") / tcp), indev="b0")
    assert fn(p) == NF_DROP
    (reply, _), = env.sent
    r = IP(bytes(reply))
    assert (r.src, r.dst, r.ttl, r.flags.value, r.id, r.len) == ("10.77.0.2", "10.77.0.1", 64, 2, 0, 40)
    t = r[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, str(t.flags), t.window) == (2, 1, seq, ack, flags, 0)
    assert _tcp_ok(reply) and env.closing == [p]


def test_reject_no_reset_for_reset_or_bad_checksum() -> None:
    env = FakeEnv()
    fn = compile_target(["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"], env)
    fn(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.2") / TCP(flags="R")), indev="b0"))
    fn(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.2") / TCP(flags="S", chksum=1)), indev="b0"))
    fn(mkpkt(raw(IP(src="10.77.0.1", dst="10.77.0.255") / TCP(flags="S")), indev="b0"))
    assert env.sent == [] and env.rejected == 3


def test_reject_never_raises_on_odd_packets() -> None:
    env = FakeEnv()
    fns = [compile_target(["-j", "REJECT"], env),
           compile_target(["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"], env)]
    odd = [raw(IP(src="10.77.0.1", dst="10.77.0.2", proto=6) / b"\x00\x01"),
           raw(IP(src="10.77.0.1", dst="10.77.0.2", proto=1)),
           raw(Ether() / IP(src="10.77.0.1", dst="10.77.0.2"))[14:]]
    for d in odd:
        for fn in fns:
            assert fn(mkpkt(d, indev="b0")) == NF_DROP
    assert ip("10.77.0.1")
