"""The TCP tracker driven by scripted segments through in_hook/confirm."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ct_util import IP, TCP, TcpFlow, feed, only, tcp_state  # noqa: E402

from pyfw.engine.conntrack import Conntrack, format_entry  # noqa: E402

T = 1000.0


def est(ct: Conntrack | None = None) -> tuple[Conntrack, TcpFlow]:
    ct = ct or Conntrack()
    f = TcpFlow()
    assert f.handshake(ct, T) == ["NEW", "EST_REPLY", "EST"]
    return ct, f


def test_handshake_states_and_timeouts() -> None:
    ct = Conntrack()
    f = TcpFlow()
    assert feed(ct, f.seg(0, "S"), T)[0] == "NEW"
    c = only(ct)
    assert tcp_state(c) == "SYN_SENT" and c.remaining(T) == 120
    assert "[UNREPLIED]" in format_entry(c, T)
    assert feed(ct, f.seg(1, "SA"), T + 1)[0] == "EST_REPLY"
    assert tcp_state(c) == "SYN_RECV" and c.remaining(T + 1) == 60
    assert feed(ct, f.seg(0, "A"), T + 2)[0] == "EST"
    assert tcp_state(c) == "ESTABLISHED" and c.remaining(T + 2) == 432000
    assert format_entry(c, T + 2.5) == (
        "tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.1.2 sport=40000 dport=80 "
        "src=10.0.1.2 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1")


def test_syn_retransmit_does_not_renew_timeout() -> None:
    ct = Conntrack()
    f = TcpFlow()
    feed(ct, f.seg(0, "S"), T)
    f.seq[0] -= 1
    assert feed(ct, f.seg(0, "S"), T + 50)[0] == "NEW"
    assert only(ct).remaining(T + 50) == 70


def test_teardown_states() -> None:
    ct, f = est()
    c = only(ct)
    seen = []
    for d, flags in ((0, "FA"), (1, "A"), (1, "FA"), (0, "A")):
        feed(ct, f.seg(d, flags), T + 5)
        seen.append((tcp_state(c), c.remaining(T + 5)))
    assert seen == [("FIN_WAIT", 120), ("CLOSE_WAIT", 60), ("LAST_ACK", 30), ("TIME_WAIT", 120)]


def test_rst_answering_syn_deletes() -> None:
    ct = Conntrack()
    f = TcpFlow()
    feed(ct, f.seg(0, "S"), T)
    name, p, _ = feed(ct, f.seg(1, "RA", seq=0), T + 0.1)
    assert name == "EST_REPLY" and p.ct is not None
    assert ct.entries() == []


def test_rst_midstream_close() -> None:
    ct, f = est()
    assert feed(ct, f.seg(0, "R"), T + 1)[0] == "EST"
    c = only(ct)
    assert tcp_state(c) == "CLOSE" and c.remaining(T + 1) == 10


def test_rst_out_of_window_invalid() -> None:
    ct, f = est()
    feed(ct, f.seg(0, "PA", b"x" * 100), T + 1)
    feed(ct, f.seg(1, "A"), T + 1)
    # a RST whose seq is below what the peer already acknowledged
    assert feed(ct, f.seg(0, "R", seq=f.seq[0] - 50), T + 2)[0] == "INVALID"
    assert tcp_state(only(ct)) == "ESTABLISHED"


def test_out_of_window_segments_invalid() -> None:
    ct, f = est()
    far = f.seq[0] + 10_000_000
    assert feed(ct, f.seg(0, "PA", b"data", seq=far, advance=False), T + 1)[0] == "INVALID"
    # acknowledging data never sent
    assert feed(ct, f.seg(1, "A", ack=f.seq[0] + 500_000, advance=False), T + 1)[0] == "INVALID"
    assert ct.stats()["invalid"] == 2
    assert feed(ct, f.seg(0, "PA", b"ok"), T + 2)[0] == "EST"


def test_be_liberal_accepts_out_of_window() -> None:
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_tcp_be_liberal": 1})
    ct, f = est(ct)
    far = f.seq[0] + 10_000_000
    assert feed(ct, f.seg(0, "PA", b"data", seq=far, advance=False), T + 1)[0] == "EST"


def test_old_retransmission_ignored_not_invalid() -> None:
    ct, f = est()
    s0 = f.seq[0]
    feed(ct, f.seg(0, "PA", b"a" * 1000), T + 1)
    feed(ct, f.seg(1, "A"), T + 1)
    for _ in range(40):
        feed(ct, f.seg(0, "PA", b"b" * 1000), T + 1)
        feed(ct, f.seg(1, "A"), T + 1)
    # data far below the window (already acknowledged): ignored, still EST
    name, p, _ = feed(ct, f.seg(0, "PA", b"a" * 10, seq=s0 - 200_000, advance=False), T + 2)
    assert name == "EST" and p.ct is not None


def test_loose_pickup() -> None:
    ct = Conntrack()
    f = TcpFlow(iss_a=777777, iss_b=888888)
    f.ack[0] = 888888
    assert feed(ct, f.seg(0, "PA", b"mid"), T)[0] == "NEW"
    c = only(ct)
    assert tcp_state(c) == "ESTABLISHED" and c.remaining(T) == 300
    assert "[UNREPLIED]" in format_entry(c, T)
    assert feed(ct, f.seg(1, "A"), T + 1)[0] == "EST_REPLY"
    assert not c.status & 4  # not ASSURED yet
    assert feed(ct, f.seg(0, "PA", b"more"), T + 2)[0] == "EST"
    assert c.status & 4 and c.remaining(T + 2) == 300  # data not acknowledged yet
    feed(ct, f.seg(1, "A"), T + 3)
    assert c.remaining(T + 3) == 432000


def test_loose_off() -> None:
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_tcp_loose": 0})
    f = TcpFlow()
    assert feed(ct, f.seg(0, "A"), T)[0] == "INVALID"
    assert ct.entries() == []
    assert feed(ct, f.seg(0, "S"), T)[0] == "NEW"


def test_no_pickup_from_fin_or_synack() -> None:
    ct = Conntrack()
    for flags in ("FA", "SA", "R", "RA"):
        assert feed(ct, TcpFlow(sport=41000).seg(0, flags), T)[0] == "INVALID", flags
    assert ct.entries() == []


def test_invalid_flag_combinations() -> None:
    ct = Conntrack()
    for i, flags in enumerate(("SF", "", "F", "FPU", "SR", "SRAF", "U", "P")):
        p = IP(src="10.0.0.1", dst="10.0.1.2") / TCP(sport=42000 + i, dport=80, flags=flags)
        assert feed(ct, p, T)[0] == "INVALID", flags
    assert ct.stats()["invalid"] == 8
    ok = IP(src="10.0.0.1", dst="10.0.1.2") / TCP(sport=42100, dport=80, flags="SEC")
    assert feed(ct, ok, T)[0] == "NEW"  # ECE and CWR do not matter


def test_bad_checksum() -> None:
    bad = IP(src="10.0.0.1", dst="10.0.1.2") / TCP(sport=43000, dport=80, flags="S", chksum=0x1234)
    ct = Conntrack()
    assert feed(ct, bad, T)[0] == "INVALID"
    assert feed(ct, bad, T, hook="OUTPUT")[0] == "NEW"  # not checked on the way out
    ct = Conntrack(sysctls={"net.netfilter.nf_conntrack_checksum": 0})
    assert feed(ct, bad, T)[0] == "NEW"


def test_truncated_header() -> None:
    ct = Conntrack()
    raw = bytes(IP(src="10.0.0.1", dst="10.0.1.2") / TCP(sport=43100, dport=80, flags="S"))
    p = IP(raw[:20] + raw[20:30])
    p.len = 30
    del p.chksum
    assert feed(ct, IP(bytes(p)), T)[0] == "INVALID"


def test_retransmissions_shorten_timeout() -> None:
    ct, f = est()
    c = only(ct)
    s = f.seq[0]
    for i in range(4):
        feed(ct, f.seg(0, "PA", b"z" * 10, seq=s, advance=False), T + 1 + i)
    assert c.proto_state.retrans == 3
    assert c.remaining(T + 4) == 300


def test_data_unacknowledged_timeout() -> None:
    ct, f = est()
    feed(ct, f.seg(0, "PA", b"q" * 10), T + 1)
    assert only(ct).remaining(T + 1) == 300
    feed(ct, f.seg(1, "A"), T + 2)
    assert only(ct).remaining(T + 2) == 432000


def test_window_scaling() -> None:
    ct = Conntrack()
    f = TcpFlow()
    opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
    feed(ct, f.seg(0, "S", win=64240, options=opts), T)
    feed(ct, f.seg(1, "SA", win=65160, options=opts), T)
    feed(ct, f.seg(0, "A", win=502), T)
    st = only(ct).proto_state
    assert st.seen[0].td_scale == 7 and st.seen[1].td_scale == 7
    # B may now send up to 502 << 7 bytes beyond A's ack
    assert feed(ct, f.seg(1, "PA", b"x" * 1000, seq=f.seq[1] + 60000, advance=False), T + 1)[0] == "EST_REPLY"


def test_window_scale_needs_both_sides() -> None:
    ct = Conntrack()
    f = TcpFlow()
    feed(ct, f.seg(0, "S", options=[("WScale", 7)]), T)
    feed(ct, f.seg(1, "SA"), T)
    st = only(ct).proto_state
    assert st.seen[0].td_scale == 0 and st.seen[1].td_scale == 0


def test_sack_blocks_raise_ack() -> None:
    ct = Conntrack()
    f = TcpFlow()
    feed(ct, f.seg(0, "S", options=[("SAckOK", b"")]), T)
    feed(ct, f.seg(1, "SA", options=[("SAckOK", b"")]), T)
    feed(ct, f.seg(0, "A"), T)
    base = f.seq[0]
    feed(ct, f.seg(0, "PA", b"a" * 100), T)
    feed(ct, f.seg(0, "PA", b"b" * 100), T)
    # B acks the first segment and SACKs the second
    sack = [("SAck", (base + 100, base + 200))]
    assert feed(ct, f.seg(1, "A", ack=base + 100, options=sack, advance=False), T)[0] == "EST_REPLY"
    # a SACK edge beyond anything A sent is over the upper bound
    sack = [("SAck", (base + 100, base + 900000))]
    assert feed(ct, f.seg(1, "A", ack=base + 100, options=sack, advance=False), T)[0] == "INVALID"


def test_syn_in_time_wait_reopens() -> None:
    ct, f = est()
    for d, flags in ((0, "FA"), (1, "FA"), (0, "A")):
        feed(ct, f.seg(d, flags), T + 1)
    assert tcp_state(only(ct)) == "TIME_WAIT"
    g = TcpFlow(iss_a=f.seq[0] + 100000)
    assert feed(ct, g.seg(0, "S"), T + 2)[0] == "NEW"
    c = only(ct)
    assert tcp_state(c) == "SYN_SENT" and not c.status & 4


def test_syn_on_established_ignored() -> None:
    ct, f = est()
    c = only(ct)
    g = TcpFlow(iss_a=99)
    name, p, _ = feed(ct, g.seg(0, "S"), T + 1)
    assert name == "EST" and p.ct is c and tcp_state(c) == "ESTABLISHED"


def test_simultaneous_open() -> None:
    ct = Conntrack()
    f = TcpFlow()
    assert feed(ct, f.seg(0, "S"), T)[0] == "NEW"
    assert feed(ct, f.seg(1, "S"), T)[0] == "EST_REPLY"
    c = only(ct)
    assert tcp_state(c) == "SYN_SENT2"
    feed(ct, f.seg(0, "SA"), T)
    assert tcp_state(c) == "SYN_RECV"
    feed(ct, f.seg(1, "A"), T)
    assert tcp_state(c) == "ESTABLISHED"


def test_expiry_then_new() -> None:
    ct = Conntrack()
    f = TcpFlow()
    feed(ct, f.seg(0, "S"), T)
    assert ct.entries(T + 119.5)
    assert ct.entries(T + 120.5) == []
    f.seq[0] -= 1
    assert feed(ct, f.seg(0, "S"), T + 121)[0] == "NEW"
    assert only(ct).remaining(T + 121) == 120


def test_first_syn_shortcut_is_the_general_code() -> None:
    """tcp_packet's shortcut for the SYN that makes a connection leaves the
    state, the timeout and the verdict the general code leaves: a SYN run
    through the general steps (the connection marked confirmed, so that
    tcp_packet skips tcp_new and the shortcut) agrees on random SYNs with
    windows, options, payloads and the other flags, on several settings."""
    import random
    import struct

    from pyfw.engine.api import IPS_CONFIRMED
    from pyfw.engine.conntrack.conn import Conn, Tuple
    from pyfw.engine.conntrack.tcp import tcp_new, tcp_packet
    from pyfw.engine.packet import Packet
    from pyfw.wire.checksum import checksum, l4_checksum

    rng = random.Random(7)
    settings = [{}, {"net.netfilter.nf_conntrack_tcp_max_retrans": 0},
                {"net.netfilter.nf_conntrack_tcp_timeout_max_retrans": 60},
                {"net.netfilter.nf_conntrack_tcp_max_retrans": 0,
                 "net.netfilter.nf_conntrack_tcp_timeout_max_retrans": 60},
                {"net.netfilter.nf_conntrack_tcp_be_liberal": 1}]
    for n in range(3000):
        ct = Conntrack(sysctls=rng.choice(settings))
        opts = rng.choice((b"", b"\x02\x04\x05\xb4", b"\x03\x03\x07\x01", b"\x04\x02\x01\x01",
                           b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x0e"))
        flags = 0x02 | rng.choice((0, 0x08, 0x20, 0x40, 0x80, 0xC0, 0x100))
        payload = bytes(rng.randrange(3)) * rng.randrange(2)
        src, dst, sport, dport = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16)
        seq, win = rng.getrandbits(32), rng.choice((0, 1, rng.getrandbits(16)))
        doff = (20 + len(opts)) // 4
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, rng.getrandbits(32), doff << 4 | flags >> 8,
                         flags & 0xFF, win, 0, 0) + opts + payload
        l4 = l4[:16] + struct.pack("!H", l4_checksum(src, dst, 6, l4)) + l4[18:]
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 6, 0,
                          src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
        data = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + l4
        t = Tuple(src, dst, 6, sport, dport)
        fast, general = Conn(t, t.inverted()), Conn(t, t.inverted())
        p1, p2 = Packet(bytearray(data), time=T), Packet(bytearray(data), time=T)
        assert tcp_new(ct, general, p2)
        general.status = IPS_CONFIRMED
        v1 = tcp_packet(ct, fast, p1, 0, 0, True)
        v2 = tcp_packet(ct, general, p2, 0, 0, True)
        assert (v1, fast.proto_state) == (v2, general.proto_state), n
        assert fast.timeout_at == general.timeout_at - T, n
