"""Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret),
M a 4 microsecond clock (from the caller's `now`, the stack has no clock
of its own), F a keyed hash (BLAKE2s keyed with a per-stack secret) so
that an off-path attacker cannot guess another connection's ISN."""

from __future__ import annotations

import hashlib
import os
import struct

_TUPLE = struct.Struct("!IHIH")


class IsnGenerator:
    __slots__ = ("_key",)

    def __init__(self, secret: bytes | None = None) -> None:
        # BLAKE2s takes keys up to 32 bytes.
        self._key = (secret if secret is not None else os.urandom(32))[:32]

    def isn(self, laddr: int, lport: int, raddr: int, rport: int, now: float) -> int:
        digest = hashlib.blake2s(_TUPLE.pack(laddr, lport, raddr, rport), key=self._key, digest_size=4).digest()
        return (int.from_bytes(digest, "big") + int(now * 250_000)) & 0xFFFFFFFF
