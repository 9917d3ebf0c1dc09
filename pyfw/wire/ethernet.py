"""Ethernet II framing: a view, eth_type_trans's packet-type decision
(net/ethernet/eth.c: group bit set -> broadcast or multicast, another
host's unicast address -> PACKET_OTHERHOST, which ip_rcv_core then drops)
and a builder.  Linux pads nothing on veth (the minimum frame is the
NIC's business), so `build` pads only when asked."""

from __future__ import annotations

import struct

from pyfw.wire.checksum import Buffer

DST = 0
SRC = 6
TYPE = 12
HLEN = 14
ETH_ZLEN = 60

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3

BROADCAST = b"\xff" * 6
ZERO = b"\x00" * 6

_H = struct.Struct("!H")


def mac_bytes(mac: str | bytes) -> bytes:
    """'aa:bb:cc:dd:ee:ff' (or 6 bytes) as 6 bytes."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise ValueError(f"bad MAC address {mac!r}")
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_str(mac: Buffer) -> str:
    return ":".join(f"{b:02x}" for b in bytes(mac[:6]))


class Ethernet:
    """A view over an Ethernet II header."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    @classmethod
    def checked(cls, buf: bytearray) -> Ethernet | None:
        return cls(buf) if len(buf) >= HLEN else None

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[DST:DST + 6])

    @dst.setter
    def dst(self, mac: bytes) -> None:
        self.buf[DST:DST + 6] = mac

    @property
    def src(self) -> bytes:
        return bytes(self.buf[SRC:SRC + 6])

    @src.setter
    def src(self, mac: bytes) -> None:
        self.buf[SRC:SRC + 6] = mac

    @property
    def ethertype(self) -> int:
        return int(_H.unpack_from(self.buf, TYPE)[0])

    @ethertype.setter
    def ethertype(self, value: int) -> None:
        _H.pack_into(self.buf, TYPE, value)

    @property
    def payload(self) -> bytearray:
        return self.buf[HLEN:]


def pkt_type(dst_mac: Buffer, dev_mac: Buffer) -> int:
    """skb->pkt_type as eth_type_trans sets it for a frame received on a
    device whose address is `dev_mac`."""
    if dst_mac[0] & 1:
        return PACKET_BROADCAST if bytes(dst_mac[:6]) == BROADCAST else PACKET_MULTICAST
    if bytes(dst_mac[:6]) != bytes(dev_mac[:6]):
        return PACKET_OTHERHOST
    return PACKET_HOST


def build(dst: bytes, src: bytes, ethertype: int, payload: Buffer, pad: bool = False) -> bytearray:
    """A frame (no FCS); with `pad`, zero-padded to the 60-byte minimum."""
    out = bytearray(HLEN + len(payload))
    out[0:6] = dst
    out[6:12] = src
    _H.pack_into(out, TYPE, ethertype)
    out[HLEN:] = payload
    if pad and len(out) < ETH_ZLEN:
        out += bytes(ETH_ZLEN - len(out))
    return out
