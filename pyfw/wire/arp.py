"""ARP for IPv4 over Ethernet: a view, the header checks of arp_rcv and
arp_process (net/ipv4/arp.c), and the reply arp_send(ARPOP_REPLY) makes
through arp_create: sender = the device's MAC and the asked-for address,
target = the requester's sender MAC and address, and the Ethernet header
addressed to the requester's *ARP* sender MAC (not the frame's source)."""

from __future__ import annotations

import struct
from typing import Any

from pyfw.wire import ethernet
from pyfw.wire.checksum import Buffer

HRD = 0
PRO = 2
HLN = 4
PLN = 5
OP = 6
SHA = 8
SPA = 14
THA = 18
TPA = 24
LEN = 28

ARPHRD_ETHER = 1
ARPHRD_IEEE802 = 6
ARPOP_REQUEST = 1
ARPOP_REPLY = 2

PACKET_OTHERHOST = 3
PACKET_LOOPBACK = 5

# Outcomes of `validate`
IGNORED = "ignored"      # consumed without a look (other host, loopback)
DROP_SHORT = "short"     # shorter than the ARP header with two addresses
DROP_HEADER = "header"   # hln != 6 or pln != 4 (arp_rcv)
DROP_TYPE = "type"       # hardware type / protocol not Ethernet/IPv4 (arp_process)
DROP_OP = "op"           # neither request nor reply
DROP_TARGET = "target"   # target address multicast or loopback

_HDR = struct.Struct("!HHBBH6s4s6s4s")
_I = struct.Struct("!I")


class Arp:
    """A view over an Ethernet/IPv4 ARP packet."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: bytearray, off: int = 0) -> None:
        self.buf = buf
        self.off = off

    @classmethod
    def checked(cls, buf: bytearray, off: int = 0) -> Arp | None:
        return cls(buf, off) if len(buf) - off >= LEN else None

    @property
    def hrd(self) -> int:
        return self.buf[self.off] << 8 | self.buf[self.off + 1]

    @property
    def pro(self) -> int:
        return self.buf[self.off + 2] << 8 | self.buf[self.off + 3]

    @property
    def op(self) -> int:
        return self.buf[self.off + OP] << 8 | self.buf[self.off + OP + 1]

    @property
    def sha(self) -> bytes:
        return bytes(self.buf[self.off + SHA:self.off + SHA + 6])

    @property
    def spa(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + SPA)[0])

    @property
    def tha(self) -> bytes:
        return bytes(self.buf[self.off + THA:self.off + THA + 6])

    @property
    def tpa(self) -> int:
        return int(_I.unpack_from(self.buf, self.off + TPA)[0])


def validate(data: Buffer, pkttype: int = 0, route_localnet: bool = False) -> str | None:
    """Why Linux takes no further look at this ARP packet (the payload of
    the Ethernet frame), or None.  IGNORED is a silent consume; the other
    reasons are drops.  Never raises."""
    if pkttype in (PACKET_OTHERHOST, PACKET_LOOPBACK):
        return IGNORED
    if len(data) < LEN:
        return DROP_SHORT
    if data[HLN] != 6 or data[PLN] != 4:
        return DROP_HEADER
    hrd = data[0] << 8 | data[1]
    pro = data[2] << 8 | data[3]
    if hrd not in (ARPHRD_ETHER, ARPHRD_IEEE802) or pro != ethernet.ETH_P_IP:
        return DROP_TYPE
    op = data[OP] << 8 | data[OP + 1]
    if op not in (ARPOP_REQUEST, ARPOP_REPLY):
        return DROP_OP
    tip = data[TPA]
    if 224 <= tip <= 239 or (tip == 127 and not route_localnet):
        return DROP_TARGET
    return None


def build(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> bytearray:
    """An ARP packet (arp_create's protocol part) for an Ethernet device."""
    out = bytearray(LEN)
    _HDR.pack_into(out, 0, ARPHRD_ETHER, ethernet.ETH_P_IP, 6, 4, op, sha,
                   spa.to_bytes(4, "big"), tha, tpa.to_bytes(4, "big"))
    return out


def build_reply(request: Buffer, my_mac: bytes) -> bytearray:
    """The Ethernet frame answering the ARP request `request` (the ARP
    payload) from a device with address `my_mac`."""
    sha = bytes(request[SHA:SHA + 6])
    sip = int(_I.unpack_from(request, SPA)[0])
    tip = int(_I.unpack_from(request, TPA)[0])
    payload = build(ARPOP_REPLY, my_mac, tip, sha, sip)
    return ethernet.build(sha, my_mac, ethernet.ETH_P_ARP, payload)


def build_request(my_mac: bytes, my_ip: int, target_ip: int) -> bytearray:
    """A broadcast who-has frame as arp_solicit sends it (target MAC zero)."""
    payload = build(ARPOP_REQUEST, my_mac, my_ip, ethernet.ZERO, target_ip)
    return ethernet.build(ethernet.BROADCAST, my_mac, ethernet.ETH_P_ARP, payload)


def _martian_source(sip: int) -> bool:
    """Sources ip_route_input refuses (so arp_process sends no reply)."""
    first = sip >> 24
    return first == 127 or first >= 224 or sip == 0xFFFFFFFF


def answer(frame: Buffer, host: Any, iface: str) -> bytes | None:
    """The reply arp_process sends for the Ethernet frame `frame` received
    on `iface` of `host`, or None.  `host` needs `mac(iface)` and
    `is_local(addr)`.  Answered: requests (including the sip 0.0.0.0
    duplicate-address probe) for any local address, from any interface
    (arp_ignore 0, arp_filter 0, the defaults); not answered: requests from
    a martian or a local source address, for non-local addresses (no proxy
    ARP), frames for another host.  Never raises."""
    if len(frame) < ethernet.HLEN + LEN:
        return None
    if (frame[12] << 8 | frame[13]) != ethernet.ETH_P_ARP:
        return None
    try:
        my_mac = ethernet.mac_bytes(host.mac(iface))
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    payload = bytes(frame[ethernet.HLEN:])
    ptype = ethernet.pkt_type(frame[0:6], my_mac)
    if validate(payload, ptype) is not None:
        return None
    if (payload[OP] << 8 | payload[OP + 1]) != ARPOP_REQUEST:
        return None
    sip = int(_I.unpack_from(payload, SPA)[0])
    tip = int(_I.unpack_from(payload, TPA)[0])
    if not host.is_local(tip):
        return None
    if sip != 0 and (_martian_source(sip) or host.is_local(sip)):
        return None
    if _arp_ignore(host, iface, sip, tip):
        return None
    return bytes(build_reply(payload, my_mac))


def _arp_ignore(host: Any, iface: str, sip: int, tip: int) -> bool:
    """arp_ignore (net.ipv4.conf.*.arp_ignore, the larger of all and the
    device): 1 answers only for an address of the receiving interface, 2
    also wants the sender in that address's subnet, 3 ignores host-scope
    addresses, 8 never answers.  A host without a `conf` is mode 0."""
    try:
        mode = int(host.conf(iface, "arp_ignore"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    if mode in (1, 2):
        dev = host.interfaces.get(iface) if hasattr(host, "interfaces") else None
        if dev is None:
            return True
        for ifa in dev.ifaddrs:
            if ifa.local == tip and (mode == 1 or not sip or ifa.contains(sip)):
                return False
        if mode == 2:
            # confirm_addr_indev: tip on the device and another of its
            # subnets holding both
            on_dev = any(ifa.local == tip for ifa in dev.ifaddrs)
            if on_dev and any(ifa.contains(tip) and ifa.contains(sip) for ifa in dev.ifaddrs):
                return False
        return True
    if mode == 3:
        for dev in getattr(host, "interfaces", {}).values():
            for ifa in dev.ifaddrs:
                if ifa.local == tip:
                    return ifa.scope > 253  # RT_SCOPE_LINK
        return False
    return mode == 8
