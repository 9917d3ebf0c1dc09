"""Internet checksum arithmetic as the kernel's target functions do it.

The mangling targets update checksums incrementally (csum_replace2,
inet_proto_csum_replace4, ipv4_change_dsfield), and each of those has its
own way of writing a result that is zero modulo 0xffff (0x0000 or 0xffff).
A packet rewritten here must be byte-for-byte the kernel's, so each helper
follows one kernel helper's arithmetic; all work on big-endian 16-bit values
(ones' complement sums do not depend on the byte order).
"""

from __future__ import annotations

import sys
from array import array

_SWAP = sys.byteorder == "little"


def sum16(data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> int:
    """Plain (unfolded) sum of the big-endian 16-bit words of data[start:end];
    an odd last byte counts as its high half."""
    if end is None:
        end = len(data)
    chunk = bytes(data[start:end])
    if len(chunk) & 1:
        chunk += b"\x00"
    words = array("H", chunk)
    if _SWAP:
        words.byteswap()
    return sum(words)


def fold(total: int) -> int:
    """Fold a sum to 16 bits with end-around carry (0 only for a zero sum)."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(total: int) -> int:
    """The checksum field for data whose words add up to `total`
    (ip_fast_csum / csum_fold: never 0xffff for a non-zero sum)."""
    return ~fold(total) & 0xFFFF


def verifies(total: int) -> bool:
    """Whether data whose words (checksum field included) add up to `total`
    checks out: the sum is 0 modulo 0xffff."""
    return total % 0xFFFF == 0


def _add16(a: int, b: int) -> int:
    """csum16_add: 16-bit ones' complement addition."""
    res = a + b
    return (res & 0xFFFF) + (res >> 16)


def csum_replace2(check: int, old: int, new: int) -> int:
    """csum_replace2: the field after a 16-bit word went from old to new
    (used for the IP header's TTL and length changes)."""
    return ~_add16(_add16(~check & 0xFFFF, ~old & 0xFFFF), new) & 0xFFFF


def proto_csum_replace(check: int, old: tuple[int, ...], new: tuple[int, ...]) -> int:
    """inet_proto_csum_replace2/4 on a packet without checksum offload:
    csum_fold(csum_add(csum_sub(~check, old), new)) over 32-bit sums,
    which never folds to zero, so the result is never 0xffff.  `old` and
    `new` are the replaced 16-bit words."""
    total = (~check & 0xFFFF) + 0xFFFF0000  # ~csum_unfold(check): never zero
    for w in old:
        total += ~w & 0xFFFF
    for w in new:
        total += w
    return ~fold(total) & 0xFFFF


def change_dsfield(check: int, tos: int, dsfield: int) -> int:
    """ipv4_change_dsfield's checksum update for the TOS byte going from
    tos to dsfield (its own carry handling, in host-order arithmetic)."""
    c = check + tos
    if (c + 1) >> 16:
        c = (c + 1) & 0xFFFF
    c = (c - dsfield) & 0xFFFFFFFF
    c = (c + (c >> 16)) & 0xFFFFFFFF
    return c & 0xFFFF
