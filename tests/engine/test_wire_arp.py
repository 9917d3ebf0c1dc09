"""pyfw.wire.arp and ethernet against scapy's frames and arp_process's
rules."""

from __future__ import annotations

from scapy.compat import raw
from scapy.layers.l2 import ARP, Ether

from pyfw.wire import arp, ethernet

ME = bytes.fromhex("020000000001")
PEER = bytes.fromhex("020000000002")


class Host:
    def mac(self, iface: str) -> bytes:
        return ME

    def is_local(self, addr: int) -> bool:
        return addr in (0x0A000001, 0x7F000001)


def _req(psrc: str, pdst: str, dst: bytes = ethernet.BROADCAST, op: int = 1, hwsrc: bytes = PEER) -> bytes:
    return raw(Ether(src=PEER, dst=dst) / ARP(op=op, hwsrc=hwsrc, psrc=psrc, pdst=pdst))


def test_reply_matches_scapy() -> None:
    other = bytes.fromhex("02000000aaaa")
    req = _req("10.0.0.2", "10.0.0.1", hwsrc=other)
    rep = arp.answer(req, Host(), "eth0")
    ref = raw(Ether(src=ME, dst=other) / ARP(op=2, hwsrc=ME, psrc="10.0.0.1", hwdst=other, pdst="10.0.0.2"))
    assert rep == ref      # sent to the ARP sender MAC, not the frame's source


def test_dad_probe_answered() -> None:
    rep = arp.answer(_req("0.0.0.0", "10.0.0.1"), Host(), "eth0")
    assert rep is not None and arp.Arp(bytearray(rep), 14).tpa == 0


def test_not_answered() -> None:
    h = Host()
    assert arp.answer(_req("10.0.0.2", "10.0.0.9"), h, "eth0") is None          # not ours
    assert arp.answer(_req("10.0.0.2", "10.0.0.1", op=2), h, "eth0") is None    # a reply
    assert arp.answer(_req("10.0.0.2", "10.0.0.1", dst=PEER), h, "eth0") is None  # other host
    assert arp.answer(_req("127.0.0.5", "10.0.0.1"), h, "eth0") is None         # martian source
    assert arp.answer(_req("10.0.0.1", "10.0.0.1"), h, "eth0") is None          # our own source
    assert arp.answer(_req("10.0.0.2", "127.0.0.1"), h, "eth0") is None         # loopback target
    assert arp.answer(_req("10.0.0.2", "10.0.0.1")[:40], h, "eth0") is None     # short


def test_validate() -> None:
    good = _req("10.0.0.2", "10.0.0.1")[14:]
    assert arp.validate(good) is None
    assert arp.validate(good, pkttype=3) == arp.IGNORED
    assert arp.validate(good[:27]) == arp.DROP_SHORT
    b = bytearray(good)
    b[4] = 8
    assert arp.validate(b) == arp.DROP_HEADER
    b = bytearray(good)
    b[1] = 6
    assert arp.validate(b) is None          # IEEE 802 hardware type is accepted
    b[1] = 7
    assert arp.validate(b) == arp.DROP_TYPE
    b = bytearray(good)
    b[7] = 3
    assert arp.validate(b) == arp.DROP_OP
    assert arp.validate(_req("10.0.0.2", "224.0.0.1")[14:]) == arp.DROP_TARGET


def test_request_and_ethernet() -> None:
    r = arp.build_request(ME, 0x0A000001, 0x0A000002)
    ref = raw(Ether(src=ME, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ME, psrc="10.0.0.1",
                                                          hwdst="00:00:00:00:00:00", pdst="10.0.0.2"))
    assert bytes(r) == ref
    e = ethernet.Ethernet(bytearray(r))
    assert e.ethertype == ethernet.ETH_P_ARP and e.src == ME and e.dst == ethernet.BROADCAST
    assert len(ethernet.build(ME, PEER, 0x800, b"x", pad=True)) == 60
    assert ethernet.mac_bytes("02:00:00:00:00:01") == ME and ethernet.mac_str(ME) == "02:00:00:00:00:01"
