"""The TAP engine offline: virtio-net super-frames and partial checksums
through MASQUERADE, the per-segment MTU check, neighbour resolution on the
way out, and local delivery to a stack."""

from __future__ import annotations

import struct

from pyfw.engine.host import ip_int, parse_host
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore
from pyfw.tap import vnet
from pyfw.tap.engine import TapEmitted, TapEngine
from pyfw.wire.checksum import checksum, l4_checksum, verify_l4

HOST = """
[host]
name = "gw"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:01"
addresses = ["192.168.1.1/24"]
[[interface]]
name = "eth1"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
mtu = {mtu}
[[route]]
to = "default"
via = "203.0.113.254"
dev = "eth1"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"
[sysctl]
"net.ipv4.ip_forward" = 1
"""
RULES = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" \
        "-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n"
GW = bytes.fromhex("020000000001")
LAN = bytes.fromhex("02aa00000005")
SRC, DST = ip_int("192.168.1.5"), ip_int("198.51.100.7")


def engine(mtu: int = 1500, stack: object = None) -> TapEngine:
    rs = restore(Ruleset(), RULES, RestoreOptions(), program="pyfw-restore").ruleset
    return TapEngine(rs, parse_host(HOST.format(mtu=mtu)), stack)  # type: ignore[arg-type]


def tcp_frame(payload: int, partial: bool, dst: int = DST, dport: int = 80, flags: int = 0x10) -> bytearray:
    tot = 20 + 20 + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, 7, 0x4000, 64, 6, 0,
                               SRC.to_bytes(4, "big"), dst.to_bytes(4, "big")))
    ip[10:12] = checksum(ip).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, dport, 1000, 2000, 5 << 4, flags, 65535, 0, 0))
    seg = tcp + bytes(range(256)) * (payload // 256) + bytes(payload % 256)
    if partial:
        s = (SRC >> 16) + (SRC & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + len(seg)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        seg[16:18] = s.to_bytes(2, "big")
    else:
        seg[16:18] = l4_checksum(SRC, dst, 6, seg).to_bytes(2, "big")
    return bytearray(GW + LAN + b"\x08\x00") + ip + seg


def learn(eng: TapEngine) -> None:
    """The lan host asks for the gateway: the gateway learns its MAC (STALE)."""
    who = (b"\xff" * 6 + LAN + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, LAN, SRC.to_bytes(4, "big"),
                                                            bytes(6), ip_int("192.168.1.1").to_bytes(4, "big")))
    [answer] = eng.receive_frame(who, "eth0", 0.5, None).emitted
    assert answer.frame[:6] == LAN and answer.frame[20:22] == b"\x00\x02"


GSO = vnet.VnetHdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 54, 1448, 34, 16)


def test_a_super_frame_is_masqueraded_once_and_keeps_its_offload() -> None:
    eng = engine()
    frame = tcp_frame(20000, partial=True)
    res = eng.receive_frame(bytes(frame), "eth0", 1.0, GSO)
    assert res.verdict == "ACCEPT" and res.path == "forward", res
    [em] = res.emitted
    assert isinstance(em, TapEmitted) and em.iface == "eth1"
    hdr = vnet.parse(em.hdr)
    assert hdr is not None and (hdr.flags, hdr.gso_type, hdr.gso_size, hdr.csum_start, hdr.csum_offset) == \
        (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 1448, 34, 16)
    out = bytearray(em.frame)
    assert out[:6] == bytes.fromhex("0200000000fe") and len(out) == len(frame)
    assert out[26:30] == ip_int("203.0.113.1").to_bytes(4, "big") and out[22] == 63
    # what the kernel's segmentation will compute checks out for the new addresses
    assert vnet.complete_checksum(out, hdr.csum_start, hdr.csum_offset)
    assert verify_l4(ip_int("203.0.113.1"), DST, 6, bytes(out[34:]))
    assert out[54:] == frame[54:]


def test_super_frame_segments_too_big_for_the_egress_mtu_get_frag_needed() -> None:
    eng = engine(mtu=1400)
    learn(eng)
    res = eng.receive_frame(bytes(tcp_frame(20000, partial=True)), "eth0", 1.0, GSO)
    assert res.verdict == "DROP"
    [em] = res.emitted
    assert em.iface == "eth0" and em.frame[:6] == LAN and em.frame[23] == 1  # ICMP back to the sender
    assert em.frame[34] == 3 and em.frame[35] == 4 and struct.unpack_from("!H", em.frame, 40)[0] == 1400
    # segments that fit pass whole
    small = vnet.VnetHdr(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 54, 1300, 34, 16)
    assert engine(mtu=1400).receive_frame(bytes(tcp_frame(20000, partial=True)), "eth0", 1.0, small).verdict == "ACCEPT"


def test_a_partial_checksum_frame_is_completed_and_leaves_plain() -> None:
    eng = engine()
    res = eng.receive_frame(bytes(tcp_frame(500, partial=True)), "eth0", 1.0,
                            vnet.VnetHdr(vnet.F_NEEDS_CSUM, 0, 0, 0, 34, 16))
    [em] = res.emitted
    assert em.hdr == vnet.PLAIN  # type: ignore[attr-defined]
    assert verify_l4(ip_int("203.0.113.1"), DST, 6, bytes(em.frame[34:]))


def test_an_unknown_next_hop_is_resolved_first() -> None:
    eng = engine()
    # a reply from the wan reaches a lan host the gateway never saw: ARP first
    frame = tcp_frame(100, partial=False)
    res = eng.receive_frame(bytes(frame), "eth0", 1.0, None)
    masq = res.emitted[0].frame
    back = bytearray(masq[14:])
    back[12:16], back[16:20] = back[16:20], back[12:16]
    back[20:22], back[22:24] = back[22:24], back[20:22]
    back[8] = 64
    back[10:12] = b"\0\0"
    back[10:12] = checksum(back[:20]).to_bytes(2, "big")
    back[36:38] = b"\0\0"
    back[36:38] = l4_checksum(DST, ip_int("203.0.113.1"), 6, bytes(back[20:])).to_bytes(2, "big")
    res = eng.receive_frame(bytes.fromhex("020000000002" "0200000000fe" "0800") + bytes(back), "eth1", 1.1, None)
    [req] = res.emitted
    assert req.iface == "eth0" and req.frame[:6] == b"\xff" * 6 and req.frame[12:14] == b"\x08\x06"
    arp_reply = (GW + LAN + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 2, LAN,
                                                          SRC.to_bytes(4, "big"), GW, ip_int("192.168.1.1").to_bytes(4, "big")))
    res = eng.receive_frame(arp_reply, "eth0", 1.2, None)
    [em] = res.emitted
    assert em.frame[:6] == LAN and em.frame[30:34] == SRC.to_bytes(4, "big")


class EchoStack:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def wants(self, ipdata: bytes) -> bool:
        return ipdata[22:24] == b"\x1f\x90"  # port 8080

    def input(self, ipdata: bytes, now: float) -> None:
        self.got.append(ipdata)

    def output(self, now: float) -> list[bytes]:
        return []

    def next_deadline(self) -> float | None:
        return None


def test_local_delivery_goes_to_the_stack_and_closed_ports_get_a_reset() -> None:
    stack = EchoStack()
    eng = engine(stack=stack)
    learn(eng)
    me = ip_int("192.168.1.1")
    res = eng.receive_frame(bytes(tcp_frame(3000, partial=True, dst=me, dport=8080, flags=0x02)), "eth0", 1.0, GSO)
    assert res.path == "input" and not res.emitted and len(stack.got) == 1
    seg = stack.got[0][20:]
    assert verify_l4(SRC, me, 6, seg)  # the stack gets the checksum done
    res = eng.receive_frame(bytes(tcp_frame(10, partial=False, dst=me, dport=9, flags=0x02)), "eth0", 1.0, None)
    [rst] = res.emitted
    assert rst.frame[:6] == LAN and rst.frame[23] == 6 and rst.frame[47] & 0x04


def test_random_frames_and_headers_never_raise() -> None:
    import random

    from pyfw.tap.loop import Gateway

    class NullDev:
        name = "x"
        offload = True

        def fileno(self) -> int:
            return 0

        def write(self, hdr: bytes, frame: bytes) -> bool:
            return True

    eng = engine()
    learn(eng)
    gw = Gateway.__new__(Gateway)  # no selector: only the frame path
    gw.engine, gw.devices, gw.faults, gw.stats = eng, {"eth0": NullDev(), "eth1": NullDev()}, None, {}  # type: ignore[dict-item]
    from pyfw.tap.loop import IfStats

    gw.ifstats = {"eth0": IfStats(), "eth1": IfStats()}
    gw.macs = {"eth0": GW, "eth1": bytes.fromhex("020000000002")}
    rng = random.Random(11)
    good = bytes(tcp_frame(3000, partial=True))
    for i in range(3000):
        hdr = bytes([rng.choice((0, 1, 2, 3)), rng.choice((0, 1, 3, 4, 0x81)), *rng.randbytes(8)])
        base = bytearray(good[:rng.randrange(0, len(good))] if i % 3 else good)
        for _ in range(rng.randrange(0, 6)):
            if base:
                base[rng.randrange(len(base))] = rng.randrange(256)
        if len(base) >= 6 and i % 2:
            base[:6] = GW
        gw.frame(rng.choice(("eth0", "eth1")), hdr + bytes(base), 1.0 + i * 0.001)
    assert "adapter_error" not in gw.stats, gw.stats
    assert eng.stats.get("engine_error", 0) == 0, eng.stats
    eng.neigh_timers(100.0)


def test_reject_with_tcp_reset_answers_a_super_frame() -> None:
    # a rule inserted while a bulk flow runs: the kernel resets it (it does
    # not verify a CHECKSUM_PARTIAL skb's checksum before answering)
    rules = RULES + "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" \
        "-A FORWARD -p tcp --dport 80 -j REJECT --reject-with tcp-reset\nCOMMIT\n"
    rs = restore(Ruleset(), rules, RestoreOptions(), program="pyfw-restore").ruleset
    eng = TapEngine(rs, parse_host(HOST.format(mtu=1500)))
    learn(eng)
    res = eng.receive_frame(bytes(tcp_frame(20000, partial=True)), "eth0", 1.0, GSO)
    assert res.verdict == "REJECT"
    [rst] = res.emitted
    assert rst.iface == "eth0" and rst.frame[:6] == LAN and rst.frame[47] & 0x04
    assert rst.hdr == vnet.PLAIN  # type: ignore[attr-defined]
    assert verify_l4(DST, SRC, 6, bytes(rst.frame[34:]))
    assert struct.unpack_from("!I", rst.frame, 38)[0] == 2000  # its seq: the segment's ack
