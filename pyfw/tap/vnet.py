"""The virtio-net header a TAP device with IFF_VNET_HDR puts before each
frame (struct virtio_net_hdr, little-endian on the machines pyfw runs on).

With TUNSETOFFLOAD the kernel hands a TAP what it would hand a VM's NIC:
frames whose TCP/UDP checksum is left to do (NEEDS_CSUM: the field holds
the pseudo-header sum, the checksum covers csum_start to the end) and TCP
super-frames of up to 64 KB (gso_type TCPV4, cut into gso_size segments
when they reach a real wire).  Forwarding one super-frame is one engine pass
instead of forty; the header travels with it, and the pseudo-header sum is
recomputed for the rewritten addresses (the kernel's
inet_proto_csum_replace4 on a CHECKSUM_PARTIAL skb).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HDR_LEN = 10
_HDR = struct.Struct("<BBHHHH")

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80

PLAIN = bytes(HDR_LEN)   # a frame with its checksums done, no segmentation


@dataclass(frozen=True)
class VnetHdr:
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int

    @property
    def gso(self) -> bool:
        return self.gso_type & ~GSO_ECN != GSO_NONE

    @property
    def partial(self) -> bool:
        return bool(self.flags & F_NEEDS_CSUM)

    @property
    def valid(self) -> bool:
        return bool(self.flags & F_DATA_VALID)

    def pack(self) -> bytes:
        return _HDR.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size, self.csum_start,
                         self.csum_offset)


def parse(buf: bytes) -> VnetHdr | None:
    """The header at the start of `buf`; None for an all-zero one."""
    if buf[:HDR_LEN] == PLAIN:
        return None
    return VnetHdr(*_HDR.unpack_from(buf, 0))


def complete_checksum(frame: bytearray, csum_start: int, csum_offset: int) -> bool:
    """Do what the device would: the checksum over frame[csum_start:] (the
    field holds the pseudo-header sum) stored at csum_start + csum_offset;
    0 is sent as 0xFFFF (skb_checksum_help).  False when out of range."""
    pos = csum_start + csum_offset
    if csum_start >= len(frame) or pos + 2 > len(frame):
        return False
    seg = frame[csum_start:]
    v = int.from_bytes(seg, "big")
    if len(seg) & 1:
        v <<= 8
    r = v % 0xFFFF
    c = 0xFFFF - r if r else 0xFFFF
    frame[pos] = c >> 8
    frame[pos + 1] = c & 0xFF
    return True


def set_pseudo_sum(frame: bytearray, l3: int, csum_start: int, csum_offset: int) -> bool:
    """Store the folded pseudo-header sum of the IPv4 datagram at `l3`
    (addresses, protocol, transport length) in the checksum field, as
    tcp_v4_send_check leaves it for the device.  False when out of range."""
    pos = csum_start + csum_offset
    if pos + 2 > len(frame) or l3 + 20 > len(frame):
        return False
    ihl = (frame[l3] & 0x0F) * 4
    tot = frame[l3 + 2] << 8 | frame[l3 + 3]
    s = (int.from_bytes(frame[l3 + 12:l3 + 14], "big") + int.from_bytes(frame[l3 + 14:l3 + 16], "big")
         + int.from_bytes(frame[l3 + 16:l3 + 18], "big") + int.from_bytes(frame[l3 + 18:l3 + 20], "big")
         + frame[l3 + 9] + tot - ihl)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    frame[pos] = s >> 8
    frame[pos + 1] = s & 0xFF
    return True


def network_len(frame: bytes | bytearray, l3: int, hdr: VnetHdr) -> int:
    """The length of one segment's IP datagram (what
    skb_gso_validate_network_len compares with the MTU): the IP and TCP
    headers plus gso_size; 0 when the frame is not TCP or too short."""
    if len(frame) < l3 + 40:
        return 0
    ihl = (frame[l3] & 0x0F) * 4
    if frame[l3 + 9] != 6 or len(frame) < l3 + ihl + 20:
        return 0
    doff = (frame[l3 + ihl + 12] >> 4) * 4
    return ihl + doff + hdr.gso_size
