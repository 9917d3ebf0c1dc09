"""Bob Jenkins' lookup3 word hash (the kernel's jhash2 / jhash_3words).

NAT's find_best_ips_proto picks an address in a range with jhash2 of the
addresses and no secret, so the choice can be made exactly as Linux makes
it; NFQUEUE's --queue-balance hashes the addresses with jhash_3words.  The
words are what a little-endian machine reads from the packet.
"""

from __future__ import annotations

from typing import Final

_M: Final = 0xFFFFFFFF
JHASH_INITVAL: Final = 0xDEADBEEF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def jhash2(words: list[int] | tuple[int, ...], initval: int) -> int:
    """jhash2(k, length, initval) for 32-bit words."""
    n = len(words)
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & _M
    i = 0
    while n > 3:
        a = (a + words[i]) & _M
        b = (b + words[i + 1]) & _M
        c = (c + words[i + 2]) & _M
        # __jhash_mix
        a = (a - c) & _M
        a ^= _rol(c, 4)
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= _rol(a, 6)
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= _rol(b, 8)
        b = (b + a) & _M
        a = (a - c) & _M
        a ^= _rol(c, 16)
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= _rol(a, 19)
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= _rol(b, 4)
        b = (b + a) & _M
        n -= 3
        i += 3
    if n == 0:
        return c
    if n == 3:
        c = (c + words[i + 2]) & _M
    if n >= 2:
        b = (b + words[i + 1]) & _M
    a = (a + words[i]) & _M
    # __jhash_final
    c ^= b
    c = (c - _rol(b, 14)) & _M
    a ^= c
    a = (a - _rol(c, 11)) & _M
    b ^= a
    b = (b - _rol(a, 25)) & _M
    c ^= b
    c = (c - _rol(b, 16)) & _M
    a ^= c
    a = (a - _rol(c, 4)) & _M
    b ^= a
    b = (b - _rol(a, 14)) & _M
    c ^= b
    c = (c - _rol(b, 24)) & _M
    return c


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    """jhash_3words: the same as jhash2 of the three words."""
    return jhash2((a, b, c), initval)


def reciprocal_scale(val: int, ep_ro: int) -> int:
    """Map a 32-bit value into [0, ep_ro) as the kernel does."""
    return ((val & _M) * (ep_ro & _M)) >> 32
