"""Rewriting a datagram to a NAT target tuple, as nf_nat_proto.c does.

The checksum arithmetic is the kernel's own, step for step: the fields are
read as a little-endian machine reads them (the kernel's `__be` words on
x86), complemented and added with end-around carry in 32 bits, then folded.
An incremental update can leave a checksum of 0x0000 where a full
recomputation gives 0xFFFF (and the reverse); doing the same steps in the
same order keeps the result byte-identical to what Linux sends.
"""

from __future__ import annotations

import struct
from typing import Final

from pyfw.engine.conntrack.conn import Tuple

MANIP_SRC: Final = 0
MANIP_DST: Final = 1

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_GRE: Final = 47
IPPROTO_SCTP: Final = 132
IPPROTO_UDPLITE: Final = 136

# ICMP types that carry an identifier (icmp_manip_pkt's list); errors and
# everything else keep their bytes 4-5.
ICMP_ID_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})

_M32: Final = 0xFFFFFFFF


def _add32(a: int, b: int) -> int:
    """csum_add: 32-bit add with the carry folded back in."""
    r = (a + b) & _M32
    if r < b:
        r += 1
    return r


def _fold(s: int) -> int:
    """csum_fold: 32 to 16 bits, complemented."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_replace(check: int, old: int, new: int) -> int:
    """csum_replace4 / inet_proto_csum_replace{2,4} for a packet whose
    checksum is complete (not CHECKSUM_PARTIAL).  All three values are
    machine-order reads of the wire bytes (little-endian); `check` is 16
    bits.  The kernel's steps (_add32 of ~check and ~old, then of new,
    then _fold) keep the sum's residue mod 0xFFFF, and a residue of 0
    comes out as 0x0000 (~check in 32 bits is never 0, so neither is the
    end-around sum: its fold is 0xFFFF), so the residue is the result."""
    return (check + old - new) % 0xFFFF


def _le16(d: bytearray, off: int) -> int:
    return d[off] | d[off + 1] << 8


def _le32(d: bytearray, off: int) -> int:
    return d[off] | d[off + 1] << 8 | d[off + 2] << 16 | d[off + 3] << 24


def _put_le16(d: bytearray, off: int, v: int) -> None:
    d[off] = v & 0xFF
    d[off + 1] = v >> 8


def _swap16(v: int) -> int:
    return (v & 0xFF) << 8 | v >> 8


def _swap32(v: int) -> int:
    return (v >> 24) | (v >> 8 & 0xFF00) | (v << 8 & 0xFF0000) | (v << 24 & 0xFF000000)


_LE32 = struct.Struct("<I")
_BE32 = struct.Struct("!I")


def inet_checksum(d: bytearray | bytes, start: int, end: int) -> int:
    """The Internet checksum of d[start:end] (RFC 1071), as a big-endian
    value ready to store."""
    n = end - start
    if n <= 0:
        return 0xFFFF
    words = struct.unpack_from(f"!{n // 2}H", d, start)
    s = sum(words)
    if n & 1:
        s += d[end - 1] << 8
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# ---------------------------------------------------------------- layer 4

def _pseudo_update(d: bytearray, ip_off: int, target: Tuple, manip: int, c: int) -> int:
    """nf_nat_ipv4_csum_update: the address part of the pseudo-header."""
    if manip == MANIP_SRC:
        old = _LE32.unpack_from(d, ip_off + 12)[0]
        new = _swap32(target.src)
    else:
        old = _LE32.unpack_from(d, ip_off + 16)[0]
        new = _swap32(target.dst)
    return csum_replace(c, old, new)


def _tcp(d: bytearray, ip_off: int, hdroff: int, end: int, target: Tuple, manip: int) -> bool:
    # An ICMP error may quote only 8 bytes: ports, but no checksum field.
    hdrsize = 20 if end >= hdroff + 20 else 8
    if hdroff + hdrsize > end:
        return False
    if manip == MANIP_SRC:
        poff, newport = hdroff, target.sport
    else:
        poff, newport = hdroff + 2, target.dport
    oldn = d[poff] | d[poff + 1] << 8
    d[poff] = newport >> 8
    d[poff + 1] = newport & 0xFF
    if hdrsize < 20:
        return True
    coff = hdroff + 16
    c = _pseudo_update(d, ip_off, target, manip, d[coff] | d[coff + 1] << 8)
    c = csum_replace(c, oldn, (newport & 0xFF) << 8 | newport >> 8)
    d[coff] = c & 0xFF
    d[coff + 1] = c >> 8
    return True


def _udp(d: bytearray, ip_off: int, hdroff: int, end: int, target: Tuple, manip: int,
         always: bool) -> bool:
    if hdroff + 8 > end:
        return False
    if manip == MANIP_SRC:
        poff, newport = hdroff, target.sport
    else:
        poff, newport = hdroff + 2, target.dport
    coff = hdroff + 6
    c = _le16(d, coff)
    if always or c:  # a UDP checksum of 0 means "none" and stays 0
        c = _pseudo_update(d, ip_off, target, manip, c)
        c = csum_replace(c, _le16(d, poff), _swap16(newport))
        if c == 0:
            c = 0xFFFF  # CSUM_MANGLED_0
        _put_le16(d, coff, c)
    d[poff] = newport >> 8
    d[poff + 1] = newport & 0xFF
    return True


def _icmp(d: bytearray, hdroff: int, end: int, target: Tuple) -> bool:
    if hdroff + 8 > end:
        return False
    if d[hdroff] not in ICMP_ID_TYPES:
        return True
    new = target.sport  # the echo id lives in the tuple's source part
    c = csum_replace(_le16(d, hdroff + 2), _le16(d, hdroff + 4), _swap16(new))
    _put_le16(d, hdroff + 2, c)
    d[hdroff + 4] = new >> 8
    d[hdroff + 5] = new & 0xFF
    return True


def _sctp(d: bytearray, hdroff: int, end: int, target: Tuple, manip: int) -> bool:
    hdrsize = 12 if end >= hdroff + 12 else 8
    if hdroff + hdrsize > end:
        return False
    if manip == MANIP_SRC:
        struct.pack_into("!H", d, hdroff, target.sport)
    else:
        struct.pack_into("!H", d, hdroff + 2, target.dport)
    if hdrsize < 12:
        return True
    d[hdroff + 8:hdroff + 12] = b"\0\0\0\0"
    struct.pack_into("<I", d, hdroff + 8, crc32c(d, hdroff, end))
    return True


def l4_manip(d: bytearray, ip_off: int, hdroff: int, end: int, target: Tuple, manip: int) -> bool:
    """l4proto_manip_pkt: ports (or the ICMP id) and their checksum."""
    proto = target.proto
    if proto == IPPROTO_TCP:
        return _tcp(d, ip_off, hdroff, end, target, manip)
    if proto == IPPROTO_UDP:
        return _udp(d, ip_off, hdroff, end, target, manip, False)
    if proto == IPPROTO_UDPLITE:
        return _udp(d, ip_off, hdroff, end, target, manip, True)
    if proto == IPPROTO_ICMP:
        return _icmp(d, hdroff, end, target)
    if proto == IPPROTO_SCTP:
        return _sctp(d, hdroff, end, target, manip)
    # GRE keys need the PPTP helper; other protocols pass unmodified
    return True


def ipv4_manip(d: bytearray, ip_off: int, end: int, target: Tuple, manip: int,
               l4: bool = True) -> bool:
    """nf_nat_ipv4_manip_pkt: layer 4 first (its pseudo-header update reads
    the old address), then the address and the header checksum.

    The checksums are worked out as residues mod 0xFFFF of the big-endian
    values (2**16 == 1, so an address counts as its value, and byte order
    only multiplies a residue by 256, which is invertible): the kernel's
    one's complement steps keep the residue through every carry and fold,
    and a residue other than 0 has one 16-bit representation.  A residue
    of 0 comes out of csum_replace as 0x0000, never 0xFFFF: ~check in 32
    bits is not 0, an end-around sum with a term that is not 0 is not 0,
    so the fold gives 0xFFFF and its complement 0.  The result is the
    kernel's byte for byte (tests/engine/test_nat.py checks it against
    the step-by-step computation)."""
    if ip_off + 20 > end:
        return False
    hdroff = ip_off + (d[ip_off] & 0x0F) * 4
    if manip == MANIP_SRC:
        aoff, new = ip_off + 12, target.src
    else:
        aoff, new = ip_off + 16, target.dst
    old: int = _BE32.unpack_from(d, aoff)[0]
    if l4:
        if target.proto == IPPROTO_TCP and hdroff + 20 <= end:
            # _tcp with a whole header, inline
            if manip == MANIP_SRC:
                poff, newport = hdroff, target.sport
            else:
                poff, newport = hdroff + 2, target.dport
            oldport = d[poff] << 8 | d[poff + 1]
            coff = hdroff + 16
            check = d[coff] << 8 | d[coff + 1]
            x = (check + old - new + oldport - newport) % 0xFFFF
            d[poff] = newport >> 8
            d[poff + 1] = newport & 0xFF
            d[coff] = x >> 8
            d[coff + 1] = x & 0xFF
        elif not l4_manip(d, ip_off, hdroff, end, target, manip):
            return False
    x = ((d[ip_off + 10] << 8 | d[ip_off + 11]) + old - new) % 0xFFFF
    d[ip_off + 10] = x >> 8
    d[ip_off + 11] = x & 0xFF
    _BE32.pack_into(d, aoff, new)
    return True


# ---------------------------------------------------------------- CRC32c (SCTP)

def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C = _crc_table()


def crc32c(d: bytearray | bytes, start: int, end: int) -> int:
    """CRC32c (Castagnoli) as SCTP uses it (stored little-endian)."""
    crc = 0xFFFFFFFF
    t = _CRC32C
    for i in range(start, end):
        crc = t[(crc ^ d[i]) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
