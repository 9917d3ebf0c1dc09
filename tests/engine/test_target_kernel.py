"""The targets against the real kernel, byte for byte.

The same crafted packets go through the kernel (in the namespaces of
kernel_lab.Lab, rules loaded with iptables-legacy-restore) and through the
compiled pyfw targets (rules parsed by pyfw's own parser): LOG lines are
compared as text, REJECT's replies and the packets TOS/DSCP/TTL/TCPMSS
rewrite are compared from the IP header on (the IP ID of packets the
kernel makes aside), MARK/CONNMARK through the MARK= field of a LOG line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.all import (  # type: ignore[attr-defined]
    AH,
    ESP,
    GRE,
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    IPerror,
    Raw,
    TCPerror,
    UDPerror,
    raw,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernel_lab import Lab, lab_problem  # noqa: E402
from targets_support import (  # noqa: E402
    FakeEnv,
    FakeHost,
    compile_target,
    decrease_ttl,
    mkpkt,
)

from pyfw.engine.api import NF_DROP, XT_CONTINUE  # noqa: E402
from pyfw.engine.conntrack.conn import Conn, Tuple  # noqa: E402
from pyfw.engine.logtext import format_packet, format_trace  # noqa: E402
from pyfw.ext._csum import checksum, sum16  # noqa: E402

pytestmark = pytest.mark.skipif(lab_problem() is not None, reason=str(lab_problem()))

A, FW, FW1, C = "10.77.0.1", "10.77.0.2", "10.77.1.1", "10.77.1.2"
COMPARED: dict[str, int] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab
    print("\nkernel comparisons:", COMPARED, "total", sum(COMPARED.values()))


def _host(lab: Lab, b1_mtu: int = 1500) -> Any:
    """pyfw's own Host for fw (pyfw.engine.host), else the test double."""
    try:
        from pyfw.engine.host import host_from_dict
    except ImportError:
        h = FakeHost()
        h.names = {"b0": lab.dev["b0"], "b1": lab.dev["b1"]}
        h.mtus["b1"] = b1_mtu
        return h
    return host_from_dict({
        "host": {"name": "fw"},
        "interface": [
            {"name": lab.dev["b0"], "addresses": [FW + "/24"], "mac": lab.macs["b0"].hex(":")},
            {"name": lab.dev["b1"], "addresses": [FW1 + "/24"], "mac": lab.macs["b1"].hex(":"),
             "mtu": b1_mtu},
        ],
        "sysctl": {"net.ipv4.ip_forward": 1},
    })


def _count(kind: str, n: int = 1) -> None:
    COMPARED[kind] = COMPARED.get(kind, 0) + n


def _tables(filter_: str = "", mangle: str = "", raw_: str = "") -> str:
    out = ""
    for name, body in (("raw", raw_), ("mangle", mangle), ("filter", filter_)):
        chains = {"raw": "PREROUTING OUTPUT", "mangle": "PREROUTING INPUT FORWARD OUTPUT POSTROUTING",
                  "filter": "INPUT FORWARD OUTPUT"}[name]
        out += f"*{name}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains.split())
        out += body + "COMMIT\n"
    return out


# ====================================================================== LOG
FLAGSETS = {
    "a": [],
    "b": ["--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid"],
    "c": ["--log-macdecode"],
}
_FLAG_BITS = {"--log-tcp-sequence": 1, "--log-tcp-options": 2, "--log-ip-options": 4,
              "--log-uid": 8, "--log-macdecode": 0x20}


def _flags(words: list[str]) -> int:
    return sum(_FLAG_BITS[w] for w in words)


def _ipa(ident: int, dst: str = FW, **kw: Any) -> IP:
    return IP(src=A, dst=dst, id=ident, **kw)


def log_cases_input() -> list[bytes]:
    q_tcp = raw(IPerror(src=FW, dst=A, id=5, ttl=3) / TCPerror(sport=80, dport=1000, flags="S"))
    q_udp = raw(IPerror(src=A, dst="10.9.9.9", id=6) / UDPerror(sport=53, dport=5353) / b"q")
    q_icmp = raw(IPerror(src=A, dst="10.9.9.9", id=7) / ICMP(type=8, id=3, seq=4))
    q_opt = raw(IPerror(src=A, dst="10.9.9.9", id=8, options=b"\x01\x01\x01\x00") / UDPerror())
    short_tcp = bytearray(raw(_ipa(0) / TCP(sport=1, dport=2)))[:30]
    cases = [
        raw(_ipa(0) / UDP(sport=1234, dport=9) / b"hello"),
        raw(_ipa(0, tos=0xFF, flags="DF", ttl=1) / UDP(sport=1, dport=2)),
        raw(_ipa(0, flags="evil") / UDP(sport=1, dport=7)),  # CE bit; dport 7 gets a MARK
        raw(_ipa(0) / TCP(sport=33000, dport=22, flags="S", seq=123456789, window=64240,
                           options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                                    ("NOP", None), ("WScale", 7)])),
        raw(_ipa(0) / TCP(sport=1, dport=2, flags="FSRPAUEC", seq=1, ack=2, urgptr=77, reserved=7)),
        raw(_ipa(0) / TCP(sport=1, dport=2, flags="A", reserved=1)),
        raw(_ipa(0) / TCP(sport=1, dport=2, flags="PA", dataofs=10) / (b"\x01" * 4)),
        raw(_ipa(0, options=b"\x94\x04\x00\x00") / UDP(sport=1, dport=2)),
        raw(_ipa(0, options=b"\x01\x01\x01\x01\x01\x01\x01\x00") / TCP(sport=5, dport=6)),
        raw(_ipa(0) / ICMP(type=8, id=0x1234, seq=7) / b"ping"),
        raw(_ipa(0) / ICMP(type=0, id=1, seq=2)),
        raw(_ipa(0) / ICMP(type=13) / (b"\x00" * 4)),
        raw(_ipa(0) / ICMP(type=17) / (b"\x00" * 4)),
        raw(_ipa(0) / ICMP(type=3, code=4, nexthopmtu=1400) / q_tcp[:28]),
        raw(_ipa(0) / ICMP(type=3, code=3) / q_udp),
        raw(_ipa(0) / ICMP(type=11, code=0) / q_icmp),
        raw(_ipa(0) / ICMP(type=5, code=1, gw="10.77.0.254") / q_udp[:28]),
        raw(_ipa(0) / ICMP(type=12, ptr=20) / q_udp),
        raw(_ipa(0) / ICMP(type=3, code=1) / q_tcp[:10]),
        raw(_ipa(0) / ICMP(type=3, code=1) / q_opt[:28]),
        raw(_ipa(0) / ICMP(type=3, code=1) / q_tcp),
        raw(_ipa(0) / ICMP(type=40, code=9) / b"abcd"),
        raw(_ipa(0, proto=1) / b"\x08\x00\x00\x00"),
        raw(_ipa(0) / AH(spi=0xABCDEF01, seq=1, icv=b"\x00" * 12) / UDP()),
        raw(_ipa(0) / ESP(spi=0x1234, seq=1) / b"payload!"),
        raw(_ipa(0, proto=50) / b"\x00\x01"),
        raw(_ipa(0) / GRE() / (b"\x00" * 8)),
        raw(_ipa(0) / SCTP(sport=1, dport=2)),
        raw(_ipa(0, proto=136) / UDP(sport=10, dport=20)),
        bytes(short_tcp),
    ]
    out = []
    for i, c in enumerate(cases):
        d = bytearray(c)
        d[4], d[5] = 0x30, i  # a unique IP ID per case
        if len(d) != (d[2] << 8 | d[3]):
            d[2], d[3] = len(d) >> 8, len(d) & 0xFF
        d[10:12] = b"\0\0"
        ihl = (d[0] & 15) * 4
        c16 = checksum(sum16(d, 0, ihl))
        d[10], d[11] = c16 >> 8, c16 & 0xFF
        out.append(bytes(d))
    return out


def log_cases_forward() -> list[bytes]:
    udp = raw(IP(src=A, dst=C, id=0x4000, flags="MF") / UDP(sport=7, dport=8) / (b"z" * 32))
    cases = [
        raw(IP(src=A, dst=C, id=0x4001) / TCP(sport=1, dport=80, flags="S", options=[("MSS", 1460)])),
        udp,
        raw(IP(src=A, dst=C, id=0x4002, frag=5, flags="MF", proto=17) / (b"z" * 16)),
        raw(IP(src=A, dst=C, id=0x4003, frag=185, proto=6) / (b"z" * 8)),
        raw(IP(src=A, dst=C, id=0x4004, frag=1, proto=1) / (b"z" * 8)),
        raw(IP(src=A, dst=C, id=0x4005, frag=1, proto=51) / (b"z" * 8)),
        raw(IP(src=A, dst=C, id=0x4006, frag=1, proto=50) / (b"z" * 8)),
        raw(IP(src=A, dst=C, id=0x4007, frag=1, proto=99) / (b"z" * 8)),
    ]
    return cases


def _mask_id(line: str) -> str:
    return re.sub(r" ID=\d+ ", " ID=* ", line, count=1)


def test_log_lines(lab: Lab) -> None:
    tag = lab.tag
    rules = "".join(f'-A INPUT -j LOG --log-prefix "{tag}{k} " {" ".join(v)}\n' for k, v in FLAGSETS.items())
    rules += "-A INPUT -j DROP\n"
    rules += "".join(f'-A FORWARD -s {A} -j LOG --log-prefix "{tag}f{k} " {" ".join(v)}\n'
                     for k, v in FLAGSETS.items())
    mangle = "-A PREROUTING -p udp --dport 7 -j MARK --set-mark 0x2a\n"
    mangle += "".join(f'-A POSTROUTING -s {A} -j LOG --log-prefix "{tag}p{k} " {" ".join(FLAGSETS[k])}\n'
                      for k in ("a", "c"))
    lab.restore(_tables(filter_=rules, mangle=mangle))
    inputs, forwards = log_cases_input(), log_cases_forward()
    lab.exchange(inputs + forwards, wait=0.3, gap=0.002)
    head = lab.frame_head()
    b0, b1 = lab.dev["b0"], lab.dev["b1"]
    for key, words in FLAGSETS.items():
        for chain, cases in (("", inputs), ("f", forwards)):
            prefix = f"{tag}{chain}{key} "
            got = lab.log_lines(prefix)
            want = []
            for c in cases:
                if chain:
                    p = mkpkt(decrease_ttl(c), indev=b0, outdev=b1, eth=head, hook="FORWARD")
                else:
                    p = mkpkt(c, indev=b0, eth=head, hook="INPUT")
                    if p.proto == 17 and p.l4ok and p.dport == 7:
                        p.mark = 0x2A
                want.append(format_packet(p, prefix, _flags(words)))
            assert got == want
            _count("LOG line", len(want))
    for key in ("a", "c"):
        prefix = f"{tag}p{key} "
        want = [format_packet(mkpkt(decrease_ttl(c), indev=b0, outdev=b1, eth=head, hook="POSTROUTING"),
                              prefix, _flags(FLAGSETS[key])) for c in forwards]
        assert lab.log_lines(prefix) == want
        _count("LOG line (POSTROUTING)", len(want))


# ====================================================================== REJECT
REJECT_RULES = [
    ("-p udp --dport 1", "--reject-with icmp-net-unreachable"),
    ("-p udp --dport 2", "--reject-with icmp-host-unreachable"),
    ("-p udp --dport 3", "--reject-with icmp-proto-unreachable"),
    ("-p udp --dport 4", "--reject-with icmp-port-unreachable"),
    ("-p udp --dport 5", "--reject-with icmp-net-prohibited"),
    ("-p udp --dport 6", "--reject-with icmp-host-prohibited"),
    ("-p udp --dport 7", "--reject-with icmp-admin-prohibited"),
    ("-p udp", ""),
    ("-p tcp", "--reject-with tcp-reset"),
    ("-p icmp", ""),
    ("", "--reject-with icmp-proto-unreachable"),
]


def reject_cases() -> list[tuple[str, bytes]]:
    big = b"".join(bytes([i % 251]) for i in range(1200))
    seg = TCP(sport=4000, dport=80, flags="A", seq=1, ack=0xFFFFFFF0)
    cases: list[tuple[str, bytes]] = [
        (f"udp {n}", raw(_ipa(0x100 + n) / UDP(sport=5000, dport=n) / b"hi")) for n in range(1, 8)
    ]
    cases += [
        ("udp tos", raw(_ipa(0x110, tos=0xFF, flags="DF", ttl=9) / UDP(sport=1, dport=9) / b"x")),
        ("udp big", raw(_ipa(0x111) / UDP(sport=1, dport=9) / big)),
        ("udp zero csum", raw(_ipa(0x112) / UDP(sport=1, dport=9, chksum=0) / b"abc")),
        ("udp bad csum", raw(_ipa(0x113) / UDP(sport=1, dport=9, chksum=0x1111) / b"abc")),
        ("udp bcast", raw(_ipa(0x114, dst="10.77.0.255") / UDP(sport=1, dport=9))),
        ("udp 255", raw(_ipa(0x115, dst="255.255.255.255") / UDP(sport=1, dport=9))),
        ("tcp syn", raw(_ipa(0x120) / TCP(sport=4000, dport=80, flags="S", seq=77,
                                          options=[("MSS", 1460)]))),
        ("tcp ack data", raw(_ipa(0x121) / seg / b"payload")),
        ("tcp fin", raw(_ipa(0x122) / TCP(sport=4000, dport=80, flags="F", seq=0xFFFFFFFF) / b"ab")),
        ("tcp synfin", raw(_ipa(0x123) / TCP(sport=4000, dport=80, flags="SF", seq=5))),
        ("tcp rst", raw(_ipa(0x124) / TCP(sport=4000, dport=80, flags="R", seq=5))),
        ("tcp bad csum", raw(_ipa(0x125) / TCP(sport=4000, dport=80, flags="S", chksum=7))),
        ("tcp bcast", raw(_ipa(0x126, dst="10.77.0.255") / TCP(sport=4000, dport=80, flags="S"))),
        ("icmp echo", raw(_ipa(0x130) / ICMP(type=8, id=9, seq=1) / b"ping")),
        ("icmp error", raw(_ipa(0x131) / ICMP(type=3, code=3)
                           / raw(IPerror(src=FW, dst=A) / UDPerror(sport=1, dport=2)))),
        ("icmp unknown", raw(_ipa(0x132) / ICMP(type=30) / b"abcd")),
        ("icmp bad csum", raw(_ipa(0x133) / ICMP(type=8, chksum=5) / b"ping")),
        ("icmp redirect", raw(_ipa(0x134) / ICMP(type=5) / (b"\x00" * 28))),
        ("icmp tstamp", raw(_ipa(0x135) / ICMP(type=13) / (b"\x00" * 12))),
        ("proto 253 random", raw(_ipa(0x140, proto=253) / b"\x01\x02\x03")),
        ("proto 253 zero", raw(_ipa(0x141, proto=253) / (b"\x00" * 6))),
        ("proto 253 ffff", raw(_ipa(0x142, proto=253) / b"\xff\xff")),
        ("gre", raw(_ipa(0x143) / GRE() / b"junk")),
        ("sctp", raw(_ipa(0x144) / SCTP(sport=1, dport=2, chksum=1))),
        ("esp", raw(_ipa(0x145) / ESP(spi=1, seq=1) / b"data")),
        ("udplite", raw(_ipa(0x146, proto=136) / b"\x00\x01\x00\x02\x00\x08\x12\x34")),
        ("igmp", raw(_ipa(0x147, proto=2) / b"\x11\x64\xee\x9b\x00\x00\x00\x00")),
        ("ip options", raw(_ipa(0x148, options=b"\x01\x01\x01\x00") / UDP(sport=1, dport=9))),
        # forwarded (FORWARD chain rules)
        ("fwd udp", raw(_ipa(0x150, dst=C) / UDP(sport=1, dport=9) / b"f")),
        ("fwd tcp", raw(_ipa(0x151, dst=C) / TCP(sport=4000, dport=443, flags="S", seq=9))),
        ("fwd tcp ack", raw(_ipa(0x152, dst=C) / TCP(sport=4000, dport=443, flags="PA", seq=9, ack=3)
                            / b"xyz")),
        ("fwd frag later", raw(_ipa(0x153, dst=C, frag=3, proto=17) / (b"\x00" * 16))),
        ("fwd frag first", raw(_ipa(0x154, dst=C, flags="MF") / UDP(sport=1, dport=9) / (b"a" * 16))),
        ("fwd tcp frag first", raw(_ipa(0x155, dst=C, flags="MF") / TCP(sport=1, dport=9, flags="S")
                                   / (b"a" * 16))),
        ("fwd ttl2", raw(_ipa(0x156, dst=C, ttl=2) / UDP(sport=1, dport=9))),
    ]
    return cases


def _zero_id(d: bytes) -> bytes:
    b = bytearray(d)
    b[4:6] = b"\0\0"
    b[10:12] = b"\0\0"
    c = checksum(sum16(b, 0, (b[0] & 15) * 4))
    b[10], b[11] = c >> 8, c & 0xFF
    return bytes(b)


def test_reject_replies(lab: Lab) -> None:
    tag = lab.tag
    rules = "".join(f"-A INPUT {m} -j REJECT {w}\n" for m, w in REJECT_RULES)
    rules += "-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n"
    rules += "-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n"
    rules += f'-A OUTPUT -j LOG --log-prefix "{tag}o "\n'
    lab.restore(_tables(filter_=rules))
    host = _host(lab)
    b0, b1 = lab.dev["b0"], lab.dev["b1"]
    head = lab.frame_head()
    out_lines: list[str] = []
    for name, pkt in reject_cases():
        got = lab.exchange([pkt], wait=0.12)
        assert got["c0"] == [], name
        env = FakeEnv(host)
        forward = name.startswith("fwd")
        if forward:
            words_list = [("-p tcp", "--reject-with tcp-reset"), ("", "--reject-with icmp-host-prohibited")]
            p = mkpkt(decrease_ttl(pkt), indev=b0, outdev=b1, eth=head, hook="FORWARD")
        else:
            words_list = REJECT_RULES
            p = mkpkt(pkt, indev=b0, eth=head, hook="INPUT")
        if p.dst == 0xFFFFFFFF or p.dst & 0xFF == 0xFF:
            p.pkttype = 0  # unicast frame to a broadcast address
        for match, words in words_list:
            m = match.split()
            if m and m[1] == "udp" and p.proto != 17 or m and m[1] == "tcp" and p.proto != 6 \
                    or m and m[1] == "icmp" and p.proto != 1:
                continue
            if len(m) > 2 and (not p.l4ok or p.dport != int(m[3])):
                continue
            fn = compile_target([*m, "-j", "REJECT", *words.split()], env,
                                chain="FORWARD" if forward else "INPUT")
            assert fn(p) == NF_DROP
            break
        want = [_zero_id(bytes(r)) for r, _ in env.sent]
        assert [_zero_id(g) for g in got["a0"]] == want, name
        _count("REJECT reply" if want else "REJECT refusal")
        for r, _ in env.sent:
            q = mkpkt(bytes(r), outdev=b0, hook="OUTPUT", local=True)
            out_lines.append(_mask_id(format_packet(q, f"{tag}o ", 0)))
    kernel_lines = [_mask_id(line) for line in lab.log_lines(f"{tag}o ")]
    assert kernel_lines == out_lines
    _count("LOG line (OUTPUT, REJECT replies)", len(out_lines))


def test_reject_ratelimit(lab: Lab) -> None:
    """With the default icmp_ratelimit the kernel answers a burst of 6."""
    # a source the kernel has no rate-limit state for yet
    src = "10.77.0.77"
    lab._ns("fw", "ip", "neigh", "replace", src, "lladdr", lab.macs["a0"].hex(":"),
            "dev", lab.dev["b0"], "nud", "permanent")
    lab.sysctl("net.ipv4.icmp_ratelimit=1000")
    try:
        lab.restore(_tables(filter_="-A INPUT -p udp -j REJECT\n"))
        pkts = [raw(IP(src=src, dst=FW, id=0x200 + i) / UDP(sport=2000 + i, dport=9)) for i in range(10)]
        got = lab.exchange(pkts, wait=0.2)
    finally:
        lab.sysctl("net.ipv4.icmp_ratelimit=0")
    env = FakeEnv(_host(lab))
    fn = compile_target(["-p", "udp", "-j", "REJECT"], env)
    for i, pk in enumerate(pkts):
        fn(mkpkt(pk, indev=lab.dev["b0"], time=100 + i * 0.001))
    assert len(got["a0"]) == len(env.sent) == 6
    _count("REJECT rate limit burst")


# ====================================================================== mangle rewrites
MANGLE_RULES: list[tuple[int, str]] = [
    (101, "TOS --set-tos 0x10"), (102, "TOS --and-tos 0x0f"), (103, "TOS --or-tos 0x08"),
    (104, "TOS --xor-tos 0xff"), (105, "TOS --set-tos 0x10/0x3f"), (106, "TOS --set-tos Normal-Service"),
    (111, "DSCP --set-dscp 0x2e"), (112, "DSCP --set-dscp-class AF41"), (113, "DSCP --set-dscp 0"),
    (121, "TTL --ttl-set 5"), (122, "TTL --ttl-inc 10"), (123, "TTL --ttl-dec 5"), (124, "TTL --ttl-set 0"),
    (125, "TTL --ttl-set 63"),
]
TCPMSS_RULES: list[tuple[int, str]] = [
    (201, "TCPMSS --set-mss 1000"), (202, "TCPMSS --set-mss 500"), (203, "TCPMSS --clamp-mss-to-pmtu"),
]


def _set_id(d: bytearray, ident: int) -> bytes:
    d[4], d[5] = ident >> 8, ident & 0xFF
    d[10:12] = b"\0\0"
    c = checksum(sum16(d, 0, 20))
    d[10], d[11] = c >> 8, c & 0xFF
    return bytes(d)


def _id_for_sum(hdr: bytes | bytearray, goal: int) -> int:
    """The IP ID that makes the 20-byte header (its ID and checksum fields
    taken as 0) add up to `goal` modulo 0xffff."""
    h = bytearray(hdr[:20])
    h[4:6] = h[10:12] = b"\0\0"
    return (goal - sum16(h)) % 0xFFFF


def mangle_cases() -> list[bytes]:
    """Each TOS/DSCP/TTL rule on a few TOS/TTL values, and for each the
    checksum representation corners: a header whose checksum reaches the
    target as 0x0000, and one whose rewritten checksum is zero modulo
    0xffff (written 0x0000 or 0xffff depending on the kernel helper)."""
    out: list[bytes] = []
    for dport, rule in MANGLE_RULES:
        fn = compile_target(["-p", "udp", "-j", *rule.split()], FakeEnv(), table="mangle",
                            chain="FORWARD")
        for tos, ttl in ((0x00, 64), (0xFF, 200), (0x03, 250), (0xB8, 3), (0x10, 2)):
            base = bytearray(raw(IP(src=A, dst=C, id=0x500 + dport, tos=tos, ttl=ttl)
                                 / UDP(sport=999, dport=dport)))
            out.append(bytes(base))
            # checksum 0xfeff on the wire is 0x0000 after the TTL decrement
            out.append(_set_id(bytearray(base), _id_for_sum(base, 0xFFFF - 0xFEFF)))
            # the rewritten header sums to 0 modulo 0xffff
            p = mkpkt(decrease_ttl(bytes(base)))
            fn(p)
            out.append(_set_id(bytearray(base), _id_for_sum(p.data, 0xFFFF)))
    return out


def _opts(raw_opts: bytes) -> bytes:
    return raw_opts + b"\x00" * (-len(raw_opts) % 4)


def tcpmss_cases() -> list[bytes]:
    out = []
    opt_sets: list[bytes] = [
        b"\x02\x04\x05\xb4",                          # MSS 1460
        b"\x01\x02\x04\x05\xb4\x01\x01\x01",          # MSS at an odd offset
        b"\x02\x04\x01\x00",                          # MSS 256: never raised
        b"",                                          # none: added
        b"\x01\x03\x03\x07",                          # WScale only: added
        b"\x08\x00\x02\x04\x05\xb4\x00\x00",          # a zero-length option first
        b"\x04\x02\x08\x0a" + b"\x00" * 8 + b"\x01\x01\x02\x04\x05\xdc",
        b"\x01" * 40,                                 # a full header without MSS
        b"\x02\x05\x05\xb4\x00\x00\x00\x00",          # wrong length: not an MSS option
    ]
    for dport, _rule in TCPMSS_RULES:
        for i, opts in enumerate(opt_sets):
            o = _opts(opts)
            t = TCP(sport=40000 + i, dport=dport, flags="S", seq=1000 + i, dataofs=5 + len(o) // 4) / Raw(o)
            out.append(raw(IP(src=A, dst=C, id=0x600 + i) / t))
        out.append(raw(IP(src=A, dst=C, id=0x6F0) / TCP(sport=1, dport=dport, flags="S") / b"data"))
        short = bytearray(raw(IP(src=A, dst=C, id=0x6F1) / TCP(sport=2, dport=dport, flags="S")))
        short[32] = 0x80  # doff 8 for a 20-byte header
        out.append(bytes(short))
        out.append(raw(IP(src=A, dst=C, id=0x6F2) / TCP(sport=3, dport=dport, flags="SA",
                                                       options=[("MSS", 1460)])))
        # segments whose rewritten TCP checksum is zero modulo 0xffff
        for opts in (b"\x02\x04\x05\xb4", b""):
            def seg(seq: int, dport: int = dport, opts: bytes = opts) -> bytes:
                return raw(IP(src=A, dst=C, id=0x6F3) / TCP(sport=4, dport=dport, flags="S", seq=seq,
                                                           dataofs=5 + len(opts) // 4) / Raw(opts))
            p = mkpkt(decrease_ttl(seg(0)), indev="b0", outdev="b1")
            compile_target(["-p", "tcp", "--syn", "-j", *_rule_of(dport).split()], FakeEnv(_mss_host()),
                           table="mangle", chain="FORWARD")(p)
            d = bytearray(p.data)
            d[36:38] = b"\0\0"
            total = sum16(d, 20) + sum16(d, 12, 20) + 6 + len(d) - 20
            out.append(seg((0xFFFF - total) % 0xFFFF))
    return out


def _rule_of(dport: int) -> str:
    return dict(TCPMSS_RULES)[dport]


def _mss_host() -> FakeHost:
    h = FakeHost()
    h.mtus["b1"] = 1400
    return h


def test_mangle_rewrites(lab: Lab) -> None:
    mangle = "".join(f"-A FORWARD -p udp --dport {d} -j {r}\n" for d, r in MANGLE_RULES)
    mangle += "".join(f"-A FORWARD -p tcp --tcp-flags SYN,RST SYN --dport {d} -j {r}\n"
                      for d, r in TCPMSS_RULES)
    lab.restore(_tables(mangle=mangle))
    b0, b1 = lab.dev["b0"], lab.dev["b1"]
    lab._ns("fw", "ip", "link", "set", b1, "mtu", "1400")
    env = FakeEnv(_host(lab, 1400))
    fns: dict[int, Any] = {}
    for d, r in MANGLE_RULES:
        fns[d] = compile_target(["-p", "udp", "-j", *r.split()], env, table="mangle", chain="FORWARD")
    for d, r in TCPMSS_RULES:
        fns[d] = compile_target(["-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", *r.split()], env,
                                table="mangle", chain="FORWARD")
    try:
        for pkt in mangle_cases() + tcpmss_cases():
            got = lab.exchange([pkt], wait=0.08)
            p = mkpkt(decrease_ttl(pkt), indev=b0, outdev=b1, hook="FORWARD")
            verdict = XT_CONTINUE
            if p.dport in fns and not (p.proto == 6 and (p.tcp_flags & 0x06) != 0x02):
                verdict = fns[p.dport](p)
            want = [] if verdict == NF_DROP else [bytes(p.data)]
            assert got["c0"] == want, IP(pkt).summary()
            _count("mangle rewrite")
    finally:
        lab._ns("fw", "ip", "link", "set", b1, "mtu", "1500")


# ====================================================================== MARK / CONNMARK
MARK_CASES: list[tuple[int, list[str]]] = [
    (301, ["MARK --set-mark 0x5"]),
    (302, ["MARK --set-xmark 0x5/0xff", "MARK --or-mark 0x100", "MARK --xor-mark 0x3"]),
    (303, ["MARK --set-mark 0xffffffff", "MARK --and-mark 0xf0f0"]),
    (304, ["MARK --set-mark 0x12/0xf0"]),
    (311, ["CONNMARK --set-mark 0x1234", "CONNMARK --restore-mark"]),
    (312, ["MARK --set-mark 0xab", "CONNMARK --save-mark", "MARK --set-mark 0",
           "CONNMARK --restore-mark --mask 0x0f"]),
    (313, ["CONNMARK --set-xmark 0xff00/0xffff", "CONNMARK --restore-mark --ctmask 0xf000 --nfmask 0xff",
           "MARK --or-mark 0x1"]),
    (314, ["MARK --set-mark 0x1f", "CONNMARK --save-mark --left-shift-mark 8",
           "CONNMARK --restore-mark --right-shift-mark 4"]),
    (315, ["MARK --set-mark 0xf0", "CONNMARK --save-mark --nfmask 0xf0 --ctmask 0xff --right-shift-mark 4",
           "CONNMARK --restore-mark --ctmask 0xf --nfmask 0xffff --left-shift-mark 16"]),
    (316, ["CONNMARK --set-mark 0x3 --left-shift-mark 30", "CONNMARK --restore-mark"]),
]


def test_mark_and_connmark(lab: Lab) -> None:
    tag = lab.tag
    mangle = "".join(f"-A PREROUTING -p udp --dport {d} -j {r}\n" for d, rules in MARK_CASES for r in rules)
    mangle += f'-A PREROUTING -p udp -j LOG --log-prefix "{tag}m "\n'
    lab.restore(_tables(mangle=mangle, filter_="-A INPUT -j DROP\n"))
    b0 = lab.dev["b0"]
    pkts = [raw(_ipa(0x700 + i) / UDP(sport=3000 + i, dport=d)) for i, (d, _) in enumerate(MARK_CASES)]
    lab.exchange(pkts, wait=0.2, gap=0.002)
    want = []
    env = FakeEnv()
    for pk, (_d, rules) in zip(pkts, MARK_CASES):
        p = mkpkt(pk, indev=b0, eth=lab.frame_head(), hook="PREROUTING")
        t = Tuple(p.src, p.dst, 17, p.sport, p.dport)
        p.ct = Conn(t, t.inverted())
        for r in rules:
            fn = compile_target(["-p", "udp", "-j", *r.split()], env, table="mangle", chain="PREROUTING")
            assert fn(p) == XT_CONTINUE
        want.append(format_packet(p, f"{tag}m ", 0))
    assert lab.log_lines(f"{tag}m ") == want
    _count("MARK/CONNMARK via LOG", len(want))


# ====================================================================== REJECT in OUTPUT
def test_reject_output(lab: Lab) -> None:
    """Locally sent datagrams rejected in OUTPUT: the error comes from the
    host's own address and loops back through lo; LOG --log-uid shows the
    sending socket's owner."""
    import socket

    from kernel_lab import _in_netns

    tag = lab.tag
    lab.restore(_tables(filter_=(f'-A OUTPUT -p udp --dport 9 -j LOG --log-prefix "{tag}u " --log-uid\n'
                                 "-A OUTPUT -p udp --dport 9 -j REJECT\n"
                                 f'-A INPUT -i lo -j LOG --log-prefix "{tag}l " --log-macdecode\n'
                                 f'-A INPUT -i lo -j LOG --log-prefix "{tag}k "\n')))
    with _in_netns(lab.ns["fw"]):
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        cap.bind(("lo", 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cap.settimeout(0.3)
    replies = []
    try:
        for dst in (A, FW):
            try:
                udp.sendto(b"local", (dst, 9))
            except OSError:
                pass  # EPERM: OUTPUT dropped it
            while True:
                try:
                    frame, addr = cap.recvfrom(65600)
                except TimeoutError:
                    break
                if addr[2] != 4 and frame[12:14] == b"\x08\x00" and frame[14 + 9] == 1:
                    replies.append((dst, frame[14:]))
                    break
    finally:
        cap.close()
        udp.close()
    assert [d for d, _ in replies] == [A, FW]
    host = _host(lab)
    lines = []
    for dst, reply in replies:
        quoted = reply[28:]
        p = mkpkt(quoted, outdev="lo" if dst == FW else lab.dev["b0"], hook="OUTPUT", local=True)
        p.uid = p.gid = 0
        lines.append(format_packet(p, f"{tag}u ", 0x08))
        env = FakeEnv(host)
        compile_target(["-p", "udp", "--dport", "9", "-j", "REJECT"], env, chain="OUTPUT")(p)
        assert [_zero_id(bytes(r)) for r, _ in env.sent] == [_zero_id(reply)]
        _count("REJECT reply (OUTPUT)")
    assert lab.log_lines(f"{tag}u ") == lines
    _count("LOG line (OUTPUT, --log-uid)", len(lines))
    # the errors come back in through lo
    for prefix, flags in ((f"{tag}l ", 0x20), (f"{tag}k ", 0)):
        want = [format_packet(mkpkt(r, indev="lo", hook="INPUT"), prefix, flags) for _, r in replies]
        assert lab.log_lines(prefix) == want
        _count("LOG line (INPUT on lo)", len(want))


# ====================================================================== TRACE
def test_trace_lines(lab: Lab) -> None:
    """What the kernel logs for a packet TRACE marked: one line per rule or
    policy it then meets, in format_trace's text."""
    lab.restore(_tables(raw_="-A PREROUTING -p udp --dport 9 -j TRACE\n-A PREROUTING -p tcp -j TRACE\n",
                        filter_="-A INPUT -p udp --sport 1 -j RETURN\n-A INPUT -j DROP\n"))
    b0 = lab.dev["b0"]
    pkts = [raw(_ipa(0x800) / UDP(sport=2, dport=9) / b"t"),
            raw(_ipa(0x801) / TCP(sport=2, dport=9, flags="S", seq=42, options=[("MSS", 1460)]))]
    lab.exchange(pkts, wait=0.2, gap=0.01)
    for pk, first in zip(pkts, (3, 3)):
        ident = pk[4] << 8 | pk[5]
        got = [line for line in lab.log_lines("TRACE: ") if f" ID={ident} " in line and b0 in line]
        hops = [("raw", "PREROUTING", "policy", first, "PREROUTING"),
                ("mangle", "PREROUTING", "policy", 1, "PREROUTING"),
                ("mangle", "INPUT", "policy", 1, "INPUT"),
                # an unconditional rule with a standard verdict is reported
                # as the chain's tail: "policy" in a built-in chain
                ("filter", "INPUT", "policy", 2, "INPUT")]
        want = []
        for table, chain, kind, num, hook in hops:
            p = mkpkt(pk, indev=b0, eth=lab.frame_head(), hook=hook)
            want.append(format_trace(p, table, chain, kind, num))
        assert got == want
        _count("TRACE line", len(want))


# ====================================================================== ICMP source address
@pytest.mark.parametrize("inbound", [0, 1])
def test_reject_error_source(lab: Lab, inbound: int) -> None:
    """A forwarded packet whose source routes back through the other
    interface: the error's source is that route's address, or with
    icmp_errors_use_inbound_ifaddr the address it came in on."""
    src = "10.77.1.99"
    lab._ns("fw", "ip", "neigh", "replace", src, "lladdr", lab.macs["c0"].hex(":"),
            "dev", lab.dev["b1"], "nud", "permanent")
    lab.sysctl(f"net.ipv4.icmp_errors_use_inbound_ifaddr={inbound}")
    try:
        lab.restore(_tables(filter_="-A FORWARD -p udp -j REJECT\n"))
        pk = raw(IP(src=src, dst=C, id=0x900 + inbound) / UDP(sport=5, dport=6))
        got = lab.exchange([pk], wait=0.15)
    finally:
        lab.sysctl("net.ipv4.icmp_errors_use_inbound_ifaddr=0")
    host = _host(lab)
    if hasattr(host, "sysctl") and isinstance(host.sysctl, dict):
        host.sysctl["net.ipv4.icmp_errors_use_inbound_ifaddr"] = inbound
    else:
        pytest.skip("needs pyfw.engine.host")
    env = FakeEnv(host)
    p = mkpkt(decrease_ttl(pk), indev=lab.dev["b0"], outdev=lab.dev["b1"], eth=lab.frame_head(), hook="FORWARD")
    compile_target(["-p", "udp", "-j", "REJECT"], env, chain="FORWARD")(p)
    assert [_zero_id(g) for g in got["c0"] if g[9] == 1] == [_zero_id(bytes(r)) for r, _ in env.sent]
    assert IP(bytes(env.sent[0][0])).src == (FW if inbound else FW1)
    _count("REJECT reply (error source)")
