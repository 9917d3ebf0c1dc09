"""The kernel's word on a queued packet's checksum (NFQA_CFG_F_GSO, NFQA_SKB_INFO).

With F_GSO the kernel no longer computes a checksum left to the device
(CHECKSUM_PARTIAL: the field holds the pseudo-header sum) nor cuts GSO
super-packets before queueing, and it says which checksums it has not
verified.  The engine then checks only those, as nf_conntrack_checksum
does (skb_csum_unnecessary), and a packet it rewrites goes back with the
checksum the kernel needs: whole (nfqnl_mangle makes the skb CHECKSUM_NONE),
or for a super-packet the pseudo-header sum of its new addresses.

No kernel: the Adapter on a fake queue (tests/daemon/test_live_fastpath)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from pyfw.daemon import nfqnl
from pyfw.daemon import nfqueue as nq
from pyfw.daemon.hostinfo import host_dict
from pyfw.daemon.main import _load_ruleset
from pyfw.engine.host import host_from_dict
from pyfw.tap import vnet
from pyfw.wire.checksum import checksum, verify_l4
from tests.daemon.test_live_fastpath import IFINDEX, LINKS, ROUTES, FakeQueue
from tests.daemon.test_nfqnl import attr, attrs, fake_queue, messages

ROOT = Path(__file__).resolve().parents[2]
LAN, WAN, GW_WAN = "192.168.1.5", "203.0.113.1", "203.0.113.2"
VERIFIED, PARTIAL, NOTVERIFIED = 0, nfqnl.NFQA_SKB_CSUMNOTREADY, nfqnl.NFQA_SKB_CSUM_NOTVERIFIED
GSO = nfqnl.NFQA_SKB_CSUMNOTREADY | nfqnl.NFQA_SKB_GSO


def message(pid: int, hook: int, payload: bytes, info: int | None, indev: int = 3,
            mark: int | None = None) -> bytes:
    """A packet message in the kernel's order, NFQA_SKB_INFO (when given) just before the payload."""
    body = struct.pack("!BBH", socket.AF_INET, 0, 7) + attr(nfqnl.NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x0800, hook))
    body += attr(nfqnl.NFQA_IFINDEX_INDEV, struct.pack("!I", indev))
    if mark is not None:
        body += attr(nfqnl.NFQA_MARK, struct.pack("!I", mark))
    body += attr(nfqnl.NFQA_HWADDR, struct.pack("!H2x", 6) + b"\x02\x00\x00\x00\x01\x05\x00\x00")
    if info is not None:
        body += attr(nfqnl.NFQA_SKB_INFO, struct.pack("!I", info))
    body += attr(nfqnl.NFQA_PAYLOAD, payload)
    return struct.pack("=IHHII", 16 + len(body), nfqnl.NFQNL_MSG_PACKET, 0, 0, 0) + body


def datagram(proto: int, src: str, dst: str, sport: int, dport: int, payload: bytes, csum: str,
             ident: int = 1, df: bool = True) -> bytes:
    """IPv4 with a UDP or TCP (SYN) header whose checksum is `csum`: "good", "bad",
    or "partial" (the pseudo-header sum, as a sender leaves it to the device)."""
    l4 = (struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) if proto == 17
          else struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 0x50, 0x02, 64240, 0, 0))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + len(payload), ident, 0x4000 if df else 0,
                               64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + l4 + payload)
    struct.pack_into("!H", ip, 10, checksum(bytes(ip[:20])))
    off = 6 if proto == 17 else 16
    vnet.set_pseudo_sum(ip, 0, 20, off)
    if csum != "partial":
        vnet.complete_checksum(ip, 20, off)
    if csum == "bad":
        ip[20 + off] ^= 0x5A
    return bytes(ip)


def l4_ok(ip: bytes) -> bool:
    src, dst = struct.unpack_from("!II", ip, 12)
    return verify_l4(src, dst, ip[9], ip[20:])


def pseudo_ok(ip: bytes) -> bool:
    """The L4 checksum field holds the pseudo-header sum for the packet's own addresses."""
    want = bytearray(ip)
    vnet.set_pseudo_sum(want, 0, 20, 16 if ip[9] == 6 else 6)
    return want == ip


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """home-gateway.rules (MASQUERADE lan -> wan) on an Adapter whose queue has F_GSO,
    the kernel taking the new source at PREROUTING (one pass); sends one
    packet, gives the verdict: (verdict, payload or None)."""
    monkeypatch.setattr(nq, "_queue_class", lambda: FakeQueue)
    monkeypatch.setattr("pyfw.daemon.queueconf.configure", lambda *a, **k: [])
    host = host_from_dict(host_dict(LINKS, ROUTES, {"net.ipv4.ip_forward": 1}), source="test")
    ruleset, _msg, _rc = _load_ruleset(str(ROOT / "rulesets" / "home-gateway.rules"))
    eng = nq.LiveEngine(ruleset, host)
    ad = nq.Adapter(7, eng)
    ad.nfq.gso = True
    ad._names = {v: k for k, v in IFINDEX.items()}
    ad.local_source = lambda dev: True
    kernel = ad.nfq.sock
    counter = [0]

    def send(ip: bytes, info: int | None, iface: str = "eth0") -> tuple[int, bytes | None]:
        counter[0] += 1
        kernel.sent.clear()
        kernel.incoming.append(message(counter[0], 0, ip, info, indev=IFINDEX[iface]))
        ad.run_ready()
        for d in kernel.sent:
            for t, body in messages(d):
                a = attrs(body)
                if t == nfqnl.NFQNL_MSG_VERDICT:
                    verdict, pid = struct.unpack("!II", a[nfqnl.NFQA_VERDICT_HDR][:8])
                    if pid == counter[0]:
                        return verdict, a.get(nfqnl.NFQA_PAYLOAD)
                elif t == nfqnl.NFQNL_MSG_VERDICT_BATCH:
                    verdict, pid = struct.unpack("!II", a[nfqnl.NFQA_VERDICT_HDR][:8])
                    if pid >= counter[0]:
                        return verdict, None
        raise AssertionError("no verdict")

    send.engine = eng  # type: ignore[attr-defined]
    send.queue = ad.nfq  # type: ignore[attr-defined]
    return send


def tracked(eng: nq.LiveEngine, sport: int) -> bool:
    return any(c.orig.sport == sport for c in eng.ct.table)


def test_skb_info_is_read_with_and_without_the_common_layout() -> None:
    seen: list[nfqnl.QueuedPacket] = []

    def cb(p: nfqnl.QueuedPacket) -> None:
        seen.append(p)
        p.accept()

    ip = datagram(17, LAN, WAN, 1000, 53, b"x" * 20, "partial")
    q, _sock = fake_queue([message(1, 0, ip, PARTIAL), message(2, 0, ip, None), message(3, 0, ip, GSO, mark=9),
                           message(4, 0, ip, NOTVERIFIED)], cb)
    q.gso = True
    q.run(block=False)
    assert [(p.id, p.skb_info, p.get_payload()) for p in seen] == \
        [(1, PARTIAL, ip), (2, 0, ip), (3, GSO, ip), (4, NOTVERIFIED, ip)]
    assert seen[2].mark == 9
    seen.clear()
    q, _sock = fake_queue([message(5, 0, ip, None)], cb)  # a queue without F_GSO: nothing is known
    q.run(block=False)
    assert seen[0].skb_info == nfqnl.SKB_INFO_UNKNOWN


def test_gso_flag_is_asked_for_with_its_mask() -> None:
    msg = nfqnl.config_message(5, flags=nfqnl.NFQA_CFG_F_GSO, mask=nfqnl.NFQA_CFG_F_GSO)
    a = attrs(msg[20:])
    assert a[nfqnl.NFQA_CFG_MASK] == a[nfqnl.NFQA_CFG_FLAGS] == struct.pack("!I", 4)


@pytest.mark.parametrize("proto", [17, 6])
def test_bad_checksum_is_invalid_only_where_the_kernel_did_not_verify_it(gateway, proto: int) -> None:  # type: ignore[no-untyped-def]
    eng = gateway.engine
    # not verified (or a queue without F_GSO, which says nothing): conntrack
    # calls it INVALID, so no connection and no NAT; FORWARD's lan rule still takes it
    for sport, info, gso in ((2001, NOTVERIFIED, True), (2002, None, False)):
        gateway.queue.gso = gso
        verdict, payload = gateway(datagram(proto, LAN, WAN, sport, 53, b"q", "bad"), info)
        assert verdict == nfqnl.NF_ACCEPT and payload is None and not tracked(eng, sport)
    gateway.queue.gso = True
    # verified by the kernel: tracked and masqueraded as a good one is (the
    # checksum is updated for NAT as it came, as the kernel's NAT does)
    verdict, payload = gateway(datagram(proto, LAN, WAN, 2003, 53, b"q", "bad"), VERIFIED)
    assert verdict == nfqnl.NF_ACCEPT and tracked(eng, 2003)
    assert payload is not None and payload[12:16] == socket.inet_aton(GW_WAN) and not l4_ok(payload)
    verdict, payload = gateway(datagram(proto, LAN, WAN, 2004, 53, b"q", "good"), VERIFIED)
    assert payload is not None and payload[12:16] == socket.inet_aton(GW_WAN) and l4_ok(payload)


@pytest.mark.parametrize("proto", [17, 6])
def test_partial_checksum_is_tracked_and_completed_when_rewritten(gateway, proto: int) -> None:  # type: ignore[no-untyped-def]
    eng = gateway.engine
    # a whole flow: the first packets the slow way, the rest on the fast path
    # (UDP; TCP's first is a SYN, its repeats retransmissions)
    for i in range(12):
        ip = datagram(proto, LAN, WAN, 3000, 53, b"payload %02d" % i, "partial", ident=i + 1)
        assert not l4_ok(ip)
        verdict, payload = gateway(ip, PARTIAL)
        assert verdict == nfqnl.NF_ACCEPT and tracked(eng, 3000)
        assert payload is not None and payload[12:16] == socket.inet_aton(GW_WAN)
        assert l4_ok(payload), i                # the whole checksum, for the new source
        assert checksum(payload[:20]) == 0
    if proto == 17:
        assert eng.fastpath is None or eng.fastpath.hits > 0


def test_partial_reply_is_completed_when_de_masqueraded(gateway) -> None:  # type: ignore[no-untyped-def]
    ip = datagram(17, LAN, WAN, 4000, 53, b"q", "partial")
    gateway(ip, PARTIAL)
    reply = datagram(17, WAN, GW_WAN, 53, 4000, b"a", "partial")
    verdict, payload = gateway(reply, PARTIAL, iface="eth1")
    assert verdict == nfqnl.NF_ACCEPT and payload is not None
    assert payload[16:20] == socket.inet_aton(LAN) and l4_ok(payload)


def test_gso_super_packet_passes_whole_with_the_pseudo_sum_of_its_new_addresses(gateway) -> None:  # type: ignore[no-untyped-def]
    eng = gateway.engine
    big = datagram(6, LAN, WAN, 5000, 80, bytes(range(256)) * 16, "partial")  # 4136 bytes, DF, MTU 1500
    verdict, payload = gateway(big, GSO)
    assert verdict == nfqnl.NF_ACCEPT and tracked(eng, 5000)
    assert payload is not None and len(payload) == len(big) and payload[12:16] == socket.inet_aton(GW_WAN)
    assert pseudo_ok(payload) and payload[40:] == big[40:]
    # the same without the GSO flag is too big for the MTU (DF): dropped, frag-needed sent
    verdict, payload = gateway(datagram(6, LAN, WAN, 5001, 80, bytes(4096), "partial"), PARTIAL)
    assert verdict == nfqnl.NF_DROP


def test_finish_checksum_is_the_devices_checksum_for_any_length() -> None:
    import random

    rng = random.Random(5)
    for n in range(0, 40):
        for proto in (17, 6):
            ip = bytearray(datagram(proto, LAN, WAN, rng.randrange(1, 65536), 53, rng.randbytes(n), "partial"))
            ip[12:16] = rng.randbytes(4)  # NAT's new source; the field still has the old pseudo sum
            struct.pack_into("!H", ip, 10, 0)
            struct.pack_into("!H", ip, 10, checksum(bytes(ip[:20])))
            want = bytearray(ip)
            off = 6 if proto == 17 else 16
            vnet.set_pseudo_sum(want, 0, 20, off)
            vnet.complete_checksum(want, 20, off)
            got = nq.finish_checksum(bytes(ip), PARTIAL)
            assert got == want and l4_ok(got), (n, proto)
            assert pseudo_ok(nq.finish_checksum(bytes(ip), GSO))
            assert nq.finish_checksum(bytes(ip), VERIFIED) == ip  # (nothing to do)
