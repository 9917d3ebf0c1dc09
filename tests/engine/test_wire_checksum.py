"""pyfw.wire.checksum against scapy and against literal transcriptions of
the kernel's checksum helpers (32-bit end-around-carry arithmetic)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from pyfw.wire import checksum as cs
from pyfw.wire import ipv4

M32 = 0xFFFFFFFF


# ------------------------------------------------------------------ kernel, literally
def k_add32(a: int, b: int) -> int:
    """csum_add: 32-bit add with end-around carry."""
    r = (a + b) & M32
    return (r + (r < b)) & M32


def k_fold(s: int) -> int:
    """csum_fold: ~(16-bit fold)."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def k_partial(data: bytes) -> int:
    s = 0
    if len(data) & 1:
        data += b"\0"
    for (w,) in struct.iter_unpack("!H", data):
        s = k_add32(s, w)
    return s


def k_csum(data: bytes) -> int:
    return k_fold(k_partial(data))


def k_replace4(check: int, old: int, new: int) -> int:
    """csum_replace4: csum_fold(csum_add(csum_sub(~csum_unfold(sum), from), to))."""
    tmp = k_add32(~check & M32, ~old & M32)
    return k_fold(k_add32(tmp, new))


def k_add16(a: int, b: int) -> int:
    r = (a + b) & 0xFFFF
    return (r + (r < b)) & 0xFFFF


def k_replace2(check: int, old: int, new: int) -> int:
    """csum_replace2 (16-bit csum16_add/csum16_sub)."""
    return ~k_add16(k_add16(~check & 0xFFFF, ~old & 0xFFFF), new) & 0xFFFF


def k_decrease_ttl_check(check_be: int) -> int:
    """ip_decrease_ttl on a little-endian host, in memory-order arithmetic."""
    le = ((check_be & 0xFF) << 8) | (check_be >> 8)
    c = le + 0x0001
    c = (c + (c >= 0xFFFF)) & 0xFFFF
    return ((c & 0xFF) << 8) | (c >> 8)


def k_change_dsfield(check: int, tos: int, dsfield: int) -> int:
    c = check + tos
    if (c + 1) >> 16:
        c = (c + 1) & 0xFFFF
    c = (c - dsfield) & M32
    c = (c + (c >> 16)) & M32
    return c & 0xFFFF


# ------------------------------------------------------------------ tests
@given(st.binary(max_size=3000))
def test_checksum_matches_scapy_and_kernel(data: bytes) -> None:
    assert cs.checksum(data) == scapy_checksum(data) == k_csum(data)


@given(st.binary(min_size=1, max_size=200))
def test_verify_after_fill(data: bytes) -> None:
    buf = bytearray(data) + b"\0\0" if len(data) % 2 == 0 else bytearray(data) + b"\0\0\0"
    c = cs.checksum(buf)
    buf[-2:] = c.to_bytes(2, "big")
    assert cs.verify(buf)


def test_all_zero_message() -> None:
    assert cs.checksum(bytes(8)) == 0xFFFF == k_csum(bytes(8))
    assert cs.ones_sum(b"") == 0


_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, M32)


@given(_u16, _u32, _u32)
def test_update32_is_csum_replace4(check: int, old: int, new: int) -> None:
    assert cs.update32(check, old, new) == k_replace4(check, old, new)


@given(_u16, _u16, _u16)
def test_update16_is_inet_proto_csum_replace2(check: int, old: int, new: int) -> None:
    # inet_proto_csum_replace2 is replace4 on zero-extended 16-bit values
    assert cs.update16(check, old, new) == k_replace4(check, old, new)


@given(_u16, _u16, _u16)
def test_update16_is_csum_replace2_for_canonical_checksums(check: int, old: int, new: int) -> None:
    # the 16-bit variant differs only for (0xffff, 0xffff, 0): unreachable
    # from a kernel-made checksum (never 0xffff for a non-empty header)
    if (check, old, new) != (0xFFFF, 0xFFFF, 0):
        assert cs.update16(check, old, new) == k_replace2(check, old, new)


@given(st.binary(min_size=20, max_size=20), st.integers(2, 255))
def test_decrease_ttl_is_kernel(hdr: bytes, ttl: int) -> None:
    h = bytearray(hdr)
    h[0] = 0x45
    h[8] = ttl
    ipv4.send_check(h)
    expect = k_decrease_ttl_check(h[10] << 8 | h[11])
    assert ipv4.decrease_ttl(h) == ttl - 1
    assert (h[10] << 8 | h[11]) == expect
    assert cs.verify(h)


@given(st.binary(min_size=20, max_size=20), st.integers(0, 255), st.integers(0, 255))
def test_change_dsfield_is_kernel(hdr: bytes, mask: int, value: int) -> None:
    h = bytearray(hdr)
    h[0] = 0x45
    ipv4.send_check(h)
    old_tos = h[1]
    new_tos = (old_tos & mask) | value
    expect = k_change_dsfield(h[10] << 8 | h[11], old_tos, new_tos)
    ipv4.change_dsfield(h, mask, value)
    assert h[1] == new_tos
    assert (h[10] << 8 | h[11]) == expect
    assert cs.verify(h)


@given(_u16, _u16, _u16)
def test_udp_updates(check: int, old: int, new: int) -> None:
    assert cs.udp_update16(0, old, new) == 0
    r = cs.udp_update16(check, old, new)
    if check:
        assert r != 0 and (r == 0xFFFF or r == cs.update16(check, old, new))


@settings(max_examples=200)
@given(st.binary(max_size=600), _u32, _u32, st.sampled_from([6, 17]))
def test_l4_checksum_verifies(payload: bytes, src: int, dst: int, proto: int) -> None:
    seg = bytearray(8 if proto == 17 else 20) + payload
    pos = 6 if proto == 17 else 16
    c = cs.udp_checksum(src, dst, seg) if proto == 17 else cs.l4_checksum(src, dst, proto, seg)
    seg[pos:pos + 2] = c.to_bytes(2, "big")
    assert cs.verify_l4(src, dst, proto, seg)
    assert c != 0 or proto != 17


@given(_u32, _u32, _u32, st.binary(min_size=20, max_size=100))
def test_address_change_keeps_l4_valid(src: int, dst: int, new: int, body: bytes) -> None:
    seg = bytearray(body)
    seg[16:18] = b"\0\0"
    seg[16:18] = cs.l4_checksum(src, dst, 6, seg).to_bytes(2, "big")
    c = cs.update32(seg[16] << 8 | seg[17], src, new)
    seg[16:18] = c.to_bytes(2, "big")
    assert cs.verify_l4(new, dst, 6, seg)
    fresh = bytearray(seg)
    fresh[16:18] = b"\0\0"
    assert cs.l4_checksum(new, dst, 6, fresh) == c
