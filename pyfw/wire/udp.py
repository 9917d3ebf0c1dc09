"""UDP header: a view with port setters that keep the checksum right the
way NAT does (nf_nat_proto's udp_manip_pkt: a datagram sent without a
checksum, 0, keeps none; a recomputed 0 goes out as 0xFFFF), and a
builder that checksums as udp_send_skb does."""

from __future__ import annotations

import struct

from pyfw.wire.checksum import Buffer, udp_checksum, udp_update16, verify_l4

SPORT = 0
DPORT = 2
LEN = 4
CHECK = 6
HLEN = 8
IPPROTO_UDP = 17

_HDR = struct.Struct("!HHHH")
_H = struct.Struct("!H")


class Udp:
    """A view over a UDP header at `off` in `buf`."""

    __slots__ = ("buf", "off")

    def __init__(self, buf: bytearray, off: int = 0) -> None:
        self.buf = buf
        self.off = off

    @classmethod
    def checked(cls, buf: bytearray, off: int = 0) -> Udp | None:
        return cls(buf, off) if len(buf) - off >= HLEN else None

    @property
    def sport(self) -> int:
        return int(_H.unpack_from(self.buf, self.off)[0])

    @sport.setter
    def sport(self, value: int) -> None:
        set_port(self.buf, self.off, SPORT, value)

    @property
    def dport(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + DPORT)[0])

    @dport.setter
    def dport(self, value: int) -> None:
        set_port(self.buf, self.off, DPORT, value)

    @property
    def length(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + LEN)[0])

    @property
    def check(self) -> int:
        return int(_H.unpack_from(self.buf, self.off + CHECK)[0])

    def checksum_ok(self, src: int, dst: int, end: int | None = None) -> bool:
        return verify_l4(src, dst, IPPROTO_UDP, self.buf[self.off:end])


def set_port(buf: bytearray, off: int, which: int, port: int) -> None:
    """Rewrite the port at `which` (SPORT/DPORT) of the header at `off`."""
    old = buf[off + which] << 8 | buf[off + which + 1]
    if old == port:
        return
    c = buf[off + CHECK] << 8 | buf[off + CHECK + 1]
    _H.pack_into(buf, off + which, port)
    _H.pack_into(buf, off + CHECK, udp_update16(c, old, port))


def build(src: int, dst: int, sport: int, dport: int, payload: Buffer, checksum: bool = True) -> bytearray:
    """A UDP segment (header + payload); checksum over the pseudo-header of
    `src`/`dst` unless `checksum` is False (then 0: none)."""
    n = HLEN + len(payload)
    out = bytearray(n)
    _HDR.pack_into(out, 0, sport, dport, n & 0xFFFF, 0)
    out[HLEN:] = payload
    if checksum:
        _H.pack_into(out, CHECK, udp_checksum(src, dst, out))
    return out
