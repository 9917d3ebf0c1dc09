"""UDP, ICMP, generic protocols, untracked packets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ct_util import IP, A, B, feed, only  # noqa: E402
from scapy.layers.inet import ICMP, UDP, IPerror  # type: ignore[import-untyped]  # noqa: E402

from pyfw.engine.conntrack import Conntrack, format_entry  # noqa: E402

T = 2000.0


def udp(d: int = 0, sport: int = 5000, dport: int = 53) -> Any:
    src, dst, sp, dp = (A, B, sport, dport) if d == 0 else (B, A, dport, sport)
    return IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / b"payload"


def test_udp_unreplied() -> None:
    ct = Conntrack()
    assert feed(ct, udp(), T)[0] == "NEW"
    c = only(ct)
    assert format_entry(c, T + 0.5) == (
        "udp      17 29 src=10.0.0.1 dst=10.0.1.2 sport=5000 dport=53 [UNREPLIED] "
        "src=10.0.1.2 dst=10.0.0.1 sport=53 dport=5000 mark=0 use=1")
    assert feed(ct, udp(), T + 10)[0] == "NEW"
    assert c.remaining(T + 10) == 30


def test_udp_quick_reply_not_assured() -> None:
    ct = Conntrack()
    feed(ct, udp(), T)
    assert feed(ct, udp(1), T + 0.1)[0] == "EST_REPLY"
    c = only(ct)
    assert c.remaining(T + 0.1) == 30 and not c.status & 4
    assert feed(ct, udp(0), T + 1)[0] == "EST"
    assert c.remaining(T + 1) == 30 and not c.status & 4
    assert "[UNREPLIED]" not in format_entry(c, T + 1)


def test_udp_stream_assured() -> None:
    ct = Conntrack()
    feed(ct, udp(), T)
    feed(ct, udp(1), T + 0.5)
    feed(ct, udp(0), T + 2.5)
    c = only(ct)
    assert c.status & 4 and c.remaining(T + 2.5) == 120
    assert "[ASSURED]" in format_entry(c, T + 3)


def test_udp_sysctl_timeouts() -> None:
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_udp_timeout": 10,
                            "net.netfilter.nf_conntrack_udp_timeout_stream": 50})
    feed(ct, udp(), T)
    assert only(ct).remaining(T) == 10
    feed(ct, udp(1), T + 0.5)
    feed(ct, udp(0), T + 3)
    assert only(ct).remaining(T + 3) == 50


def test_udp_malformed_and_bad_checksum() -> None:
    ct = Conntrack()
    assert feed(ct, IP(src=A, dst=B) / UDP(sport=1, dport=2, len=200) / b"x", T)[0] == "INVALID"
    assert feed(ct, IP(src=A, dst=B) / UDP(sport=1, dport=2, chksum=0x4321) / b"x", T)[0] == "INVALID"
    assert feed(ct, IP(src=A, dst=B) / UDP(sport=1, dport=2, chksum=0) / b"x", T)[0] == "NEW"
    assert ct.stats()["invalid"] == 2


def ping(d: int = 0, ident: int = 0x1234, seq: int = 1, itype: int | None = None) -> Any:
    src, dst = (A, B) if d == 0 else (B, A)
    t = (8 if d == 0 else 0) if itype is None else itype
    return IP(src=src, dst=dst) / ICMP(type=t, id=ident, seq=seq) / b"abcdefgh"


def test_icmp_echo() -> None:
    ct = Conntrack()
    assert feed(ct, ping(0), T)[0] == "NEW"
    assert feed(ct, ping(1), T + 0.01)[0] == "EST_REPLY"
    c = only(ct)
    assert format_entry(c, T + 0.5) == (
        "icmp     1 29 src=10.0.0.1 dst=10.0.1.2 type=8 code=0 id=4660 "
        "src=10.0.1.2 dst=10.0.0.1 type=0 code=0 id=4660 mark=0 use=1")
    assert feed(ct, ping(0, seq=2), T + 1)[0] == "EST"


def test_icmp_reply_without_request_invalid() -> None:
    ct = Conntrack()
    assert feed(ct, ping(1), T)[0] == "INVALID"
    assert feed(ct, ping(0, itype=9), T)[0] == "INVALID"   # router advertisement: no reply type
    assert feed(ct, ping(0, itype=40), T)[0] == "INVALID"  # beyond NR_ICMP_TYPES
    assert ct.entries() == []
    st = ct.stats()
    assert st["invalid"] == 2 and st["error"] == 1


def test_icmp_error_related() -> None:
    ct = Conntrack()
    q = udp(0, sport=5001, dport=9999)
    feed(ct, q, T)
    err = IP(src=B, dst=A) / ICMP(type=3, code=3) / IPerror(bytes(q)[:28])
    name, p, _ = feed(ct, err, T + 0.01)
    assert name == "REL_REPLY" and p.ct is only(ct)
    assert "[UNREPLIED]" in format_entry(only(ct), T)  # an error is no reply
    # from a router on the way, towards the client: still related
    err2 = IP(src="10.0.0.254", dst=A) / ICMP(type=11, code=0) / IPerror(bytes(q)[:28])
    assert feed(ct, err2, T)[0] == "REL_REPLY"
    # the same error in the original direction (client tells the server)
    r = udp(1, sport=5001, dport=9999)
    err3 = IP(src=A, dst=B) / ICMP(type=3, code=3) / IPerror(bytes(r)[:28])
    assert feed(ct, err3, T)[0] == "REL"


def test_icmp_error_unknown_or_misdirected() -> None:
    ct = Conntrack()
    q = udp(0, sport=5002, dport=9999)
    err = IP(src=B, dst=A) / ICMP(type=3, code=3) / IPerror(bytes(q)[:28])
    assert feed(ct, err, T)[0] == "INVALID"
    feed(ct, q, T)
    wrong = IP(src=B, dst="10.0.0.99") / ICMP(type=3, code=3) / IPerror(bytes(q)[:28])
    assert feed(ct, wrong, T)[0] == "INVALID"
    short = IP(src=B, dst=A) / ICMP(type=3, code=3) / b"\x45\x00"
    assert feed(ct, short, T)[0] == "INVALID"
    assert ct.stats()["error"] == 3 and ct.stats()["invalid"] == 0


def test_icmp_error_about_echo() -> None:
    ct = Conntrack()
    q = ping(0, ident=77)
    feed(ct, q, T)
    err = IP(src="10.0.0.254", dst=A) / ICMP(type=11) / bytes(q)[:28]
    assert feed(ct, err, T)[0] == "REL_REPLY"


def test_icmp_bad_checksum() -> None:
    ct = Conntrack()
    bad = IP(src=A, dst=B) / ICMP(type=8, id=5, chksum=0x1111)
    assert feed(ct, bad, T)[0] == "INVALID"
    assert ct.stats()["error"] == 1


def test_generic_protocol() -> None:
    ct = Conntrack()
    p = IP(src=A, dst=B, proto=99) / b"whatever"
    assert feed(ct, p, T)[0] == "NEW"
    c = only(ct)
    assert format_entry(c, T) == (
        "unknown  99 600 src=10.0.0.1 dst=10.0.1.2 [UNREPLIED] src=10.0.1.2 dst=10.0.0.1 mark=0 use=1")
    assert feed(ct, IP(src=B, dst=A, proto=99) / b"back", T + 1)[0] == "EST_REPLY"


def test_gre() -> None:
    ct = Conntrack()
    gre0 = IP(src=A, dst=B, proto=47) / bytes.fromhex("00000800") / b"inner"
    assert feed(ct, gre0, T)[0] == "NEW"
    c = only(ct)
    assert c.remaining(T) == 30
    assert "srckey=0x0 dstkey=0x0" in format_entry(c, T)
    feed(ct, IP(src=B, dst=A, proto=47) / bytes.fromhex("00000800") / b"x", T + 1)
    assert c.remaining(T + 1) == 30 and not c.status & 4  # SEEN_REPLY comes after the tracker
    feed(ct, gre0, T + 2)
    assert c.remaining(T + 2) == 180 and c.status & 4


def test_untracked() -> None:
    ct = Conntrack()
    name, p, ok = feed(ct, udp(), T, notrack=True)
    assert name == "UNTRACKED" and p.ct is None and ok
    assert ct.entries() == []


def test_output_hook_tracks_local_packets() -> None:
    ct = Conntrack()
    assert feed(ct, udp(), T, hook="OUTPUT")[0] == "NEW"
    assert feed(ct, udp(1), T + 0.1)[0] == "EST_REPLY"
