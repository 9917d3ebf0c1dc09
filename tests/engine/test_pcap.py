"""pyfw.io.pcap against scapy's readers and writers, hand-built pcapng
variants scapy does not write, the shared real-world captures, and speed."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pyfw.io.pcap import PcapDirWriter, PcapError, PcapReader, PcapWriter, read_pcap

pytest.importorskip("scapy")
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.utils import EDecimal, PcapNgWriter, RawPcapNgReader, RawPcapReader, rdpcap  # noqa: E402
from scapy.utils import PcapWriter as ScapyPcapWriter  # noqa: E402


def _packets(n: int = 20, t0: float = 1700000000.0) -> list:
    pkts = []
    for i in range(n):
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst=f"10.0.1.{i % 250}")
        p = p / (TCP(sport=1000 + i, dport=80, flags="S") if i % 2 else UDP(sport=53, dport=2000 + i) / (b"x" * i))
        p.time = EDecimal(Decimal(t0) + Decimal(i) * Decimal("0.123457"))
        pkts.append(p)
    return pkts


def _scapy_view(path: Path) -> list[tuple[float, str | None, bytes]]:
    """What scapy reads: time, interface name (pcapng), raw frame bytes."""
    out = []
    for p in rdpcap(str(path)):
        out.append((float(p.time), getattr(p, "sniffed_on", None), bytes(p.original)))
    return out


def _same(ours: list, theirs: list, tol: float = 0.0) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a[2] == b[2], f"frame {i + 1} bytes"
        assert a[1] == b[1], f"frame {i + 1} interface"
        assert abs(a[0] - b[0]) <= tol, f"frame {i + 1} time {a[0]!r} != {b[0]!r}"


# ------------------------------------------------------------------ scapy-written
@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("endianness", ["<", ">"])
def test_pcap_written_by_scapy(tmp_path: Path, nano: bool, endianness: str) -> None:
    path = tmp_path / "a.pcap"
    w = ScapyPcapWriter(str(path), linktype=1, nano=nano, endianness=endianness, sync=True)
    for p in _packets():
        w.write(p)
    w.close()
    ours = list(read_pcap(path))
    _same(ours, _scapy_view(path))
    assert all(iface is None for _, iface, _ in ours)
    with PcapReader(path) as r:
        assert r.format == "pcap" and r.linktype == 1
        assert sum(1 for _ in r) == 20
        assert r.frames == 20


def test_pcap_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    ScapyPcapWriter(str(path), linktype=1, sync=True).write(_packets(5))
    gz = tmp_path / "a.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert list(read_pcap(gz)) == list(read_pcap(path))


@pytest.mark.parametrize("names", [True, False])
def test_pcapng_written_by_scapy(tmp_path: Path, names: bool) -> None:
    path = tmp_path / "a.pcapng"
    pkts = _packets()
    if names:
        for i, p in enumerate(pkts):
            p.sniffed_on = ("eth0", "eth1", "local")[i % 3]
    w = PcapNgWriter(str(path))
    for p in pkts:
        w.write(p)
    w.close()
    ours = list(read_pcap(path))
    _same(ours, _scapy_view(path))
    if names:
        assert [i for _, i, _ in ours][:4] == ["eth0", "eth1", "local", "eth0"]
    else:
        assert {i for _, i, _ in ours} == {None}
    with PcapReader(path) as r:
        assert r.format == "pcapng"


def test_pcap_file_object_and_stream_name(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    ScapyPcapWriter(str(path), linktype=1, sync=True).write(_packets(3))
    data = path.read_bytes()
    frames = list(read_pcap(io.BytesIO(data), name="mem"))
    assert len(frames) == 3
    proc = subprocess.run([sys.executable, "-c", "import sys; from pyfw.io.pcap import read_pcap; "
                           "print(sum(1 for _ in read_pcap('-')))"], input=data, capture_output=True, check=True)
    assert proc.stdout.strip() == b"3"
    with pytest.raises(PcapError, match=r"^mem: truncated record data"):
        list(read_pcap(io.BytesIO(data[:-3]), name="mem"))


# ------------------------------------------------------------------ hand-built pcapng
def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _shb(e: str) -> bytes:
    body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return _block(e, 0x0A0D0D0A, body)


def _idb(e: str, name: str | None = None, tsresol: int | None = None, tsoffset: int | None = None,
         linktype: int = 1, snaplen: int = 0) -> bytes:
    body = struct.pack(e + "HHI", linktype, 0, snaplen)
    opts = b""
    if name is not None:
        opts += _opt(e, 2, name.encode())
    if tsresol is not None:
        opts += _opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += _opt(e, 0, b"")
    return _block(e, 1, body + opts)


def _epb(e: str, ifid: int, ts: int, frame: bytes) -> bytes:
    body = struct.pack(e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
    body += b"\0" * (-len(body) % 4) + _opt(e, 1, b"a comment") + _opt(e, 0, b"")
    return _block(e, 6, body)


def _pb(e: str, ifid: int, ts: int, frame: bytes) -> bytes:
    body = struct.pack(e + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
    return _block(e, 2, body)


def _spb(e: str, frame: bytes) -> bytes:
    return _block(e, 3, struct.pack(e + "I", len(frame)) + frame)


FRAMES = [bytes(p) for p in _packets(6)]


@pytest.mark.parametrize("e", ["<", ">"])
def test_pcapng_options_and_block_kinds(tmp_path: Path, e: str) -> None:
    """if_name, if_tsresol (decimal and binary), if_tsoffset, EPB, PB, SPB,
    an unknown block, and a second section in the other byte order."""
    other = ">" if e == "<" else "<"
    data = (
        _shb(e)
        + _idb(e, "eth0")                          # default microseconds
        + _idb(e, "eth1", tsresol=9)               # nanoseconds
        + _idb(e, None, tsresol=0x80 | 20, tsoffset=100)  # 2^-20 s, +100 s
        + _epb(e, 0, 1_700_000_000_123_456, FRAMES[0])
        + _epb(e, 1, 1_700_000_000_123_456_789, FRAMES[1])
        + _block(e, 0x0BAD, b"ignored")
        + _pb(e, 2, 5 << 20 | 1 << 19, FRAMES[2])
        + _spb(e, FRAMES[3])
        + _shb(other)                              # new section: interfaces reset
        + _idb(other, "wan", tsresol=3)
        + _epb(other, 0, 1_700_000_001_500, FRAMES[4])
    )
    path = tmp_path / "v.pcapng"
    path.write_bytes(data)
    got = list(read_pcap(path))
    assert [f for _, _, f in got] == FRAMES[:5]
    assert [i for _, i, _ in got] == ["eth0", "eth1", None, "eth0", "wan"]
    assert got[0][0] == 1700000000.123456
    assert got[1][0] == float(Decimal("1700000000.123456789"))
    assert got[2][0] == 105.5                    # 5.5 s at 2^-20 plus the 100 s offset
    assert got[3][0] == got[2][0]                # an SPB has no time of its own
    assert got[4][0] == 1700000001.5
    # scapy agrees where it reads the same things: it has no if_tsoffset, no
    # time for SPBs, and cuts an SPB to the snaplen even when that is 0
    # ("no limit" in the pcapng spec), so the SPB is left out.
    raw: list[tuple[bytes, Any]] = [(d, m) for d, m in RawPcapNgReader(str(path))]
    assert [d for i, (d, _) in enumerate(raw) if i != 3] == FRAMES[:3] + FRAMES[4:5]
    theirs = [float(Decimal((m.tshigh << 32) + m.tslow) / m.tsresol) for _, m in raw if m.tshigh is not None]
    assert theirs[:3] == [got[0][0], got[1][0], got[2][0] - 100]
    # (scapy keeps the first section's interfaces in the second one, so its
    # time for the last frame uses the wrong resolution: not compared)


def test_pcapng_spb_snaplen(tmp_path: Path) -> None:
    e = "<"
    frame = FRAMES[5]
    data = _shb(e) + _idb(e, "x", snaplen=20) + _spb(e, frame)
    path = tmp_path / "s.pcapng"
    path.write_bytes(data)
    assert list(read_pcap(path)) == [(0.0, "x", frame[:20])]


# ------------------------------------------------------------------ errors
def _err(tmp_path: Path, data: bytes, name: str = "bad.pcap") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(PcapError) as info:
        list(read_pcap(path))
    msg = str(info.value)
    assert msg.startswith(str(path) + ": ")
    assert info.value.path == str(path)
    return info.value.problem


def test_errors(tmp_path: Path) -> None:
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 1, 2, 60, 60) + b"\0" * 60
    assert "empty file" in _err(tmp_path, b"")
    assert "truncated header" in _err(tmp_path, hdr[:10])
    assert "unknown magic 0xdeadbeef" in _err(tmp_path, bytes.fromhex("deadbeef") + hdr[4:])
    assert "unsupported link type 113" in _err(tmp_path, hdr[:-4] + struct.pack("<I", 113))
    assert "truncated record header" in _err(tmp_path, hdr + rec + rec[:7])
    assert "truncated record data" in _err(tmp_path, hdr + rec + rec[:30])
    assert "exceeds the maximum" in _err(tmp_path, hdr + struct.pack("<IIII", 1, 2, 1 << 30, 60) + b"\0" * 99)
    e = "<"
    ng = _shb(e) + _idb(e, "eth0")
    assert "refers to interface 3" in _err(tmp_path, ng + _epb(e, 3, 0, FRAMES[0]), "a.pcapng")
    assert "unsupported link type 101" in _err(tmp_path, _shb(e) + _idb(e, "tun0", linktype=101)
                                               + _epb(e, 0, 0, FRAMES[0]), "b.pcapng")
    assert "truncated block" in _err(tmp_path, ng + _epb(e, 0, 0, FRAMES[0])[:-9], "c.pcapng")
    assert "byte-order magic" in _err(tmp_path, b"\x0a\x0d\x0d\x0a" + b"\x1c\0\0\0" + b"\1\2\3\4" + b"\0" * 16,
                                      "d.pcapng")
    bad_tail = bytearray(ng + _epb(e, 0, 0, FRAMES[0]))
    bad_tail[-1] ^= 1
    assert "trailing length" in _err(tmp_path, bytes(bad_tail), "e.pcapng")
    with pytest.raises(PcapError, match="cannot open"):
        PcapReader(tmp_path / "missing.pcap")


def test_frames_before_an_error_are_yielded(tmp_path: Path) -> None:
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 1, 2, 60, 60) + b"\0" * 60
    path = tmp_path / "t.pcap"
    path.write_bytes(hdr + rec * 3 + rec[:20])
    seen = []
    with pytest.raises(PcapError, match="record 4 at offset 252"):
        for frame in read_pcap(path):
            seen.append(frame)
    assert len(seen) == 3


# ------------------------------------------------------------------ writing
def test_writer_round_trip_with_scapy(tmp_path: Path) -> None:
    frames = [(1700000000.0 + i * 0.0000015, bytes(p)) for i, p in enumerate(_packets(10))]
    path = tmp_path / "w.pcap"
    with PcapWriter(path) as w:
        for ts, f in frames:
            w.write(ts, f)
    raw = list(RawPcapReader(str(path)))
    assert [d for d, _ in raw] == [f for _, f in frames]
    assert [(m.sec, m.usec) for _, m in raw] == [divmod(int(Decimal(ts) * 1_000_000 + Decimal("0.5")), 1_000_000)
                                                  for ts, _ in frames]
    assert RawPcapReader(str(path)).linktype == 1
    back = list(read_pcap(path))
    assert [f for _, _, f in back] == [f for _, f in frames]
    assert all(abs(Decimal(a[0]) - Decimal(ts)) <= Decimal('0.5e-6') for a, (ts, _) in zip(back, frames))


def test_dir_writer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with PcapDirWriter(out) as d:
        d.write("eth1", 1.0, FRAMES[0])
        d.write("eth0", 2.0, FRAMES[1])
        d.write("eth1", 3.0, FRAMES[2])
        assert d.interfaces == ["eth1", "eth0"]
    assert sorted(p.name for p in out.iterdir()) == ["eth0.pcap", "eth1.pcap"]
    assert [(t, f) for t, _, f in read_pcap(out / "eth1.pcap")] == [(1.0, FRAMES[0]), (3.0, FRAMES[2])]


# ------------------------------------------------------------------ real-world captures
def test_realworld_pcaps_match_scapy(shared_dir: Path) -> None:
    folder = shared_dir / "realworld-pcaps"
    files = sorted(p for p in folder.glob("*") if p.suffix in (".pcap", ".pcapng"))
    if not files:
        pytest.skip(f"no captures in {folder}")
    for path in files:
        ours = list(read_pcap(path))
        if path.suffix == ".pcapng":
            raw = [d for d, _ in RawPcapNgReader(str(path))]
        else:
            raw = [d for d, _ in RawPcapReader(str(path))]
        times = [float(p.time) for p in rdpcap(str(path))]
        assert len(ours) == len(raw) == len(times), path.name
        assert [f for _, _, f in ours] == raw, path.name
        assert [t for t, _, _ in ours] == times, path.name


# ------------------------------------------------------------------ speed
def test_streaming_speed(tmp_path: Path) -> None:
    """1,000,000 frames through the reader alone: well over 1e6 frames/s."""
    frame = bytes(_packets(1)[0])
    rec = struct.Struct("<IIII")
    path = tmp_path / "big.pcap"
    n = 1_000_000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        step = 100_000
        for base in range(0, n, step):
            f.write(b"".join(rec.pack(1700000000 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)) + frame
                             for i in range(base, base + step)))
    best = 0.0
    for _ in range(2):
        t = time.perf_counter()
        count = 0
        last = 0.0
        for ts, _iface, _frame in read_pcap(path):
            count += 1
            last = ts
        rate = count / (time.perf_counter() - t)
        best = max(best, rate)
    assert count == n and last == 1700000999.999
    print(f"\npcap read rate: {best:,.0f} frames/s")
    assert best > 1_000_000, f"{best:,.0f} frames/s"
