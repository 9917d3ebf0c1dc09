"""The Internet checksum as the Linux kernel computes and updates it.

Linux computes one's complement sums with end-around carry (csum_partial,
ip_fast_csum) and patches checksums in place when it rewrites a field
(csum_replace2/4, inet_proto_csum_replace4 for NAT, ip_decrease_ttl,
ipv4_change_dsfield).  All of these give the *canonical* form: a checksum
in 0..0xFFFE that is a function of the packet's content only (0xFFFF only
for an all-zero message, where ~0 is what csum_fold gives).  So the full
computation and the RFC 1624 update agree byte for byte, and both are
computed here as arithmetic modulo 0xFFFF (2**16 == 1 mod 0xFFFF, so a
whole buffer read as one big integer has the same residue as the sum of
its 16-bit words: one C-speed int.from_bytes, no Python byte loop).

UDP is the exception on the wire: a computed 0 is sent as 0xFFFF
(CSUM_MANGLED_0) because 0 means "no checksum", and a datagram without a
checksum keeps 0 through NAT (nf_nat_proto's udp_manip_pkt).
"""

from __future__ import annotations

from typing import Final

Buffer = bytes | bytearray | memoryview

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_UDPLITE: Final = 136
IPPROTO_ICMP: Final = 1

_M: Final = 0xFFFF


def _value(data: Buffer) -> int:
    """The buffer as one big-endian integer, zero-padded to even length."""
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    return v


def ones_sum(data: Buffer) -> int:
    """One's complement sum of the 16-bit words (odd length padded with a
    zero byte): 0 only for all-zero data, else 1..0xFFFF."""
    v = _value(data)
    r = v % _M
    return r if r or not v else _M


def checksum(data: Buffer) -> int:
    """The Internet checksum of `data` (its checksum field must be zero),
    as ip_fast_csum / csum_fold(csum_partial()) give it."""
    v = _value(data)
    if not v:
        return _M
    return (-v) % _M


def pseudo_sum(src: int, dst: int, proto: int, length: int) -> int:
    """The TCP/UDP pseudo-header (addresses as ints) as an integer whose
    residue mod 0xFFFF is its one's complement sum."""
    return (src >> 16) + (src & _M) + (dst >> 16) + (dst & _M) + proto + length


def l4_checksum(src: int, dst: int, proto: int, segment: Buffer) -> int:
    """TCP (or UDP before the 0 -> 0xFFFF rule) checksum over pseudo-header
    and segment; the segment's checksum field must be zero."""
    v = pseudo_sum(src, dst, proto, len(segment)) + _value(segment)
    return (-v) % _M


def udp_checksum(src: int, dst: int, segment: Buffer, proto: int = IPPROTO_UDP) -> int:
    """UDP checksum as udp4_hwcsum/udp_set_csum send it: never 0."""
    return l4_checksum(src, dst, proto, segment) or _M


def verify(data: Buffer) -> bool:
    """True when `data` (checksum included) sums to 0xFFFF: IP header, ICMP."""
    v = _value(data)
    return bool(v) and v % _M == 0


def verify_l4(src: int, dst: int, proto: int, segment: Buffer) -> bool:
    """True when a TCP/UDP segment's checksum (included) is right.  A UDP
    checksum of 0 means none and always verifies."""
    if proto == IPPROTO_UDP and len(segment) >= 8 and segment[6] == 0 and segment[7] == 0:
        return True
    v = pseudo_sum(src, dst, proto, len(segment)) + _value(segment)
    return v % _M == 0


# ---------------------------------------------------------------- RFC 1624
def update16(check: int, old: int, new: int) -> int:
    """The checksum after a 16-bit field changes from `old` to `new`
    (csum_replace2: HC' = ~(~HC + ~m + m'), canonical)."""
    return (check + old - new) % _M


def update32(check: int, old: int, new: int) -> int:
    """The checksum after a 32-bit field (an address) changes
    (csum_replace4, inet_proto_csum_replace4 with the pseudo-header)."""
    return (check + old - new) % _M


def update_bytes(check: int, old: Buffer, new: Buffer) -> int:
    """The checksum after an even-aligned run of bytes changes (same length)."""
    return (check + _value(old) - _value(new)) % _M


def udp_update16(check: int, old: int, new: int) -> int:
    """UDP: 0 (no checksum) stays 0; a result of 0 is sent as 0xFFFF."""
    if check == 0:
        return 0
    return (check + old - new) % _M or _M


def udp_update32(check: int, old: int, new: int) -> int:
    """UDP address change: 0 stays 0; a result of 0 becomes 0xFFFF."""
    if check == 0:
        return 0
    return (check + old - new) % _M or _M
