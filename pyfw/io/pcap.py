"""pcap and pcapng files: the frames `pyfw simulate` replays and writes.

Reading streams the file in large chunks and slices frames out of them with
precompiled structs, so memory stays flat whatever the file size and the cost
per frame is a few bytecode operations.  Every frame comes out as
``(timestamp, interface, frame)``: seconds as a float (correctly rounded from
the file's integer units), the pcapng interface name (``None`` in classic
pcap, or where the interface has no ``if_name``), and the captured bytes.

Only Ethernet (link type 1) is accepted: that is what the simulator models.
Anything the reader cannot trust raises `PcapError`, whose message names the
file and the problem; frames before the problem have already been yielded.

Writing is classic pcap with microsecond timestamps and link type 1, one file
per egress interface (`PcapWriter`, `PcapDirWriter`).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "LINKTYPE_ETHERNET", "Frame", "PcapDirWriter", "PcapError", "PcapReader", "PcapWriter",
    "read_frames", "read_pcap",
]

Frame = tuple[float, str | None, bytes]

LINKTYPE_ETHERNET = 1
# libpcap's ceiling for one record (MAXIMUM_SNAPLEN); a larger caplen means
# the file is corrupt, not that the frame is big.
MAX_RECORD = 262144
# pcapng blocks also carry options; allow generous room before calling a
# block length corrupt.
MAX_BLOCK = 16 * 1024 * 1024
CHUNK = 1 << 20

# Classic pcap magics, as read in little-endian order: (byte order, units/s, record header size)
_PCAP_MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, 16),      # microseconds, little-endian file
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, 16),      # microseconds, big-endian file
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, 16),  # nanoseconds (0xa1b23c4d)
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1_000_000, 24),      # Kuznetzov's patched format (0xa1b2cd34)
    b"\xa1\xb2\xcd\x34": (">", 1_000_000, 24),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_GZIP = b"\x1f\x8b"

# pcapng block types
_BT_SHB = 0x0A0D0D0A
_BT_IDB = 1
_BT_PB = 2  # obsolete Packet Block
_BT_SPB = 3
_BT_EPB = 6
# IDB options
_OPT_END = 0
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


class PcapError(Exception):
    """A pcap/pcapng file that cannot be read: `path` and `problem` name
    the file and what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class _Iface:
    """One pcapng Interface Description Block."""

    __slots__ = ("linktype", "snaplen", "name", "units", "offset")

    def __init__(self, linktype: int, snaplen: int, name: str | None, units: int, offset: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.name = name
        self.units = units     # timestamp units per second
        self.offset = offset   # if_tsoffset, in seconds


class PcapReader:
    """Iterate over the frames of a pcap or pcapng file.

    ``with PcapReader(path) as r: for ts, iface, frame in r: ...``

    `source` is a path, ``"-"`` for standard input, or a binary file object
    (read from its current position; `name` names it in errors).  The format is recognised from the
    magic; gzip-compressed files are opened transparently.  After
    construction `format` is ``"pcap"`` or ``"pcapng"`` and, for classic
    pcap, `linktype` and `snaplen` are known.
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, name: str | None = None) -> None:
        self._owned = False
        if isinstance(source, str) and source == "-":
            source = sys.stdin.buffer
            name = name or "<stdin>"
        if isinstance(source, (str, os.PathLike)):
            self.name = name or os.fspath(source)
            try:
                raw: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise PcapError(self.name, f"cannot open: {exc.strerror or exc}") from exc
            self._owned = True
        else:
            raw = source
            self.name = name or str(getattr(source, "name", "<stream>"))
        self._raw = raw
        self._f: BinaryIO = raw
        self._gz: gzip.GzipFile | None = None
        self.format = ""
        self.linktype = LINKTYPE_ETHERNET
        self.snaplen = 0
        self.frames = 0  # frames yielded so far
        try:
            head = self._read(4)
            if head[:2] == _GZIP:
                self._gz = gzip.GzipFile(fileobj=_Prefixed(head, raw), mode="rb")
                self._f = self._gz  # type: ignore[assignment]
                head = self._read(4)
            self._head = head
            self._sniff()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ plumbing
    def _err(self, problem: str) -> PcapError:
        return PcapError(self.name, problem)

    def _read(self, n: int) -> bytes:
        try:
            return self._f.read(n)
        except (OSError, EOFError, ValueError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise self._err(f"read error: {exc}") from exc

    def _sniff(self) -> None:
        head = self._head
        if len(head) == 0:
            raise self._err("empty file (no pcap or pcapng header)")
        if len(head) < 4:
            raise self._err(f"truncated header: {len(head)} bytes, a pcap file starts with 24")
        if head == _PCAPNG_SHB:
            self.format = "pcapng"
            return
        magic = _PCAP_MAGICS.get(head)
        if magic is None:
            raise self._err(f"unknown magic 0x{head.hex()}: not a pcap or pcapng file")
        self.format = "pcap"
        endian, units, hdrlen = magic
        rest = self._read(20)
        if len(rest) < 20:
            raise self._err(f"truncated header: {4 + len(rest)} of 24 bytes of the pcap file header")
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "HHiIII", rest)
        # The top bits of `network` may carry FCS information (LT_FCS_*).
        linktype = network & 0x03FFFFFF
        self.linktype = linktype
        self.snaplen = snaplen
        if linktype != LINKTYPE_ETHERNET:
            raise self._err(f"unsupported link type {linktype} (only Ethernet, link type 1, is supported)")
        self._endian = endian
        self._units = units
        self._hdrlen = hdrlen

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
            self._gz = None
        if self._owned:
            self._owned = False
            self._raw.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        if self.format == "pcap":
            return self._iter_pcap()
        return self._iter_pcapng()

    # ------------------------------------------------------------ classic pcap
    def _iter_pcap(self) -> Iterator[Frame]:
        unpack = struct.Struct(self._endian + "IIII").unpack_from
        units = self._units
        hdrlen = self._hdrlen
        read = self._read
        limit = max(MAX_RECORD, self.snaplen)
        data = b""
        pos = 0
        offset = 24  # file offset of data[0], for messages
        count = 0
        try:
            while True:
                n = len(data)
                while pos + hdrlen <= n:
                    sec, frac, incl, _orig = unpack(data, pos)
                    start = pos + hdrlen
                    end = start + incl
                    if end > n or incl > limit:
                        if incl > limit:
                            raise self._err(f"record {count + 1} at offset {offset + pos}: captured length "
                                            f"{incl} exceeds the maximum of {limit} (corrupt file)")
                        break
                    count += 1
                    yield (sec * units + frac) / units, None, data[start:end]
                    pos = end
                chunk = read(CHUNK)
                if not chunk:
                    if pos < n:
                        what = "record header" if n - pos < hdrlen else "record data"
                        raise self._err(f"truncated {what}: record {count + 1} at offset {offset + pos} "
                                        f"ends the file after {n - pos} bytes")
                    return
                offset += pos
                data = data[pos:] + chunk if pos < n else chunk
                pos = 0
        finally:
            self.frames += count

    # ------------------------------------------------------------ pcapng
    def _iter_pcapng(self) -> Iterator[Frame]:
        """Block by block; the SHB's byte-order magic sets the order for
        its section, and each section has its own interfaces."""
        read = self._read
        data = self._head  # the SHB's type, already read
        pos = 0
        offset = 0
        n = len(data)
        endian = "<"
        ifaces: list[_Iface] = []
        last_ts = 0.0
        count = 0
        u32 = struct.Struct(endian + "I")
        epb = struct.Struct(endian + "IIIIIII")
        try:
            while True:
                # need the 12 bytes of type, length and (for SHB) byte-order magic
                if n - pos < 12:
                    chunk = read(CHUNK)
                    if not chunk:
                        if pos < n:
                            raise self._err(f"truncated block header at offset {offset + pos} "
                                            f"({n - pos} bytes before the end of the file)")
                        return
                    offset += pos
                    data = data[pos:] + chunk
                    pos = 0
                    n = len(data)
                    continue
                if data[pos:pos + 4] == _PCAPNG_SHB:
                    bom = data[pos + 8:pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        endian = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        endian = ">"
                    else:
                        raise self._err(f"section header at offset {offset + pos}: unknown byte-order "
                                        f"magic 0x{bom.hex()}")
                    u32 = struct.Struct(endian + "I")
                    epb = struct.Struct(endian + "IIIIIII")
                    ifaces = []
                    btype = _BT_SHB
                else:
                    btype = u32.unpack_from(data, pos)[0]
                blen = u32.unpack_from(data, pos + 4)[0]
                if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                    raise self._err(f"block at offset {offset + pos}: invalid block length {blen}")
                if n - pos < blen:
                    chunk = read(max(CHUNK, blen))
                    if not chunk:
                        raise self._err(f"truncated block at offset {offset + pos}: {blen} bytes announced, "
                                        f"{n - pos} left in the file")
                    offset += pos
                    data = data[pos:] + chunk
                    pos = 0
                    n = len(data)
                    continue
                end = pos + blen
                if u32.unpack_from(data, end - 4)[0] != blen:
                    raise self._err(f"block at offset {offset + pos}: trailing length does not match {blen}")
                if btype == _BT_EPB:
                    if blen < 32:
                        raise self._err(f"enhanced packet block at offset {offset + pos} too short ({blen})")
                    _t, _l, ifid, tshi, tslo, caplen, _orig = epb.unpack_from(data, pos)
                    if caplen > blen - 32:
                        raise self._err(f"enhanced packet block at offset {offset + pos}: captured length "
                                        f"{caplen} exceeds the block")
                    iface = self._iface(ifaces, ifid, offset + pos)
                    units = iface.units
                    last_ts = ((tshi << 32 | tslo) + iface.offset * units) / units
                    count += 1
                    yield last_ts, iface.name, data[pos + 28:pos + 28 + caplen]
                elif btype == _BT_SPB:
                    # No timestamp in an SPB: the previous packet's stands in.
                    if blen < 16:
                        raise self._err(f"simple packet block at offset {offset + pos} too short ({blen})")
                    iface = self._iface(ifaces, 0, offset + pos)
                    orig = u32.unpack_from(data, pos + 8)[0]
                    caplen = min(orig, blen - 16)
                    if iface.snaplen:
                        caplen = min(caplen, iface.snaplen)
                    count += 1
                    yield last_ts, iface.name, data[pos + 12:pos + 12 + caplen]
                elif btype == _BT_PB:
                    if blen < 32:
                        raise self._err(f"packet block at offset {offset + pos} too short ({blen})")
                    ifid = struct.unpack_from(endian + "H", data, pos + 8)[0]
                    tshi, tslo, caplen, _orig = struct.unpack_from(endian + "IIII", data, pos + 12)
                    if caplen > blen - 32:
                        raise self._err(f"packet block at offset {offset + pos}: captured length "
                                        f"{caplen} exceeds the block")
                    iface = self._iface(ifaces, ifid, offset + pos)
                    units = iface.units
                    last_ts = ((tshi << 32 | tslo) + iface.offset * units) / units
                    count += 1
                    yield last_ts, iface.name, data[pos + 28:pos + 28 + caplen]
                elif btype == _BT_IDB:
                    ifaces.append(self._parse_idb(data[pos + 8:end - 4], endian, offset + pos))
                elif btype == _BT_SHB:
                    if blen < 28:
                        raise self._err(f"section header at offset {offset + pos} too short ({blen})")
                    major = struct.unpack_from(endian + "H", data, pos + 12)[0]
                    if major != 1:
                        raise self._err(f"section header at offset {offset + pos}: unsupported pcapng "
                                        f"version {major}")
                # other block types (NRB, ISB, DSB, custom...) carry no frames
                pos = end
        finally:
            self.frames += count

    def _iface(self, ifaces: list[_Iface], ifid: int, where: int) -> _Iface:
        if ifid >= len(ifaces):
            raise self._err(f"packet block at offset {where} refers to interface {ifid}, "
                            f"but the section describes {len(ifaces)}")
        iface = ifaces[ifid]
        if iface.linktype != LINKTYPE_ETHERNET:
            raise self._err(f"unsupported link type {iface.linktype} on interface {ifid}"
                            f"{' (' + iface.name + ')' if iface.name else ''} "
                            "(only Ethernet, link type 1, is supported)")
        return iface

    def _parse_idb(self, body: bytes, endian: str, where: int) -> _Iface:
        if len(body) < 8:
            raise self._err(f"interface description block at offset {where} too short")
        linktype, _res, snaplen = struct.unpack_from(endian + "HHI", body, 0)
        name: str | None = None
        units = 1_000_000
        tsoffset = 0
        opt = 8
        while opt + 4 <= len(body):
            code, length = struct.unpack_from(endian + "HH", body, opt)
            if code == _OPT_END:
                break
            value = body[opt + 4:opt + 4 + length]
            if len(value) < length:
                raise self._err(f"interface description block at offset {where}: option {code} overruns the block")
            if code == _OPT_IF_NAME and name is None:
                name = value.rstrip(b"\x00").decode("utf-8", "backslashreplace")
            elif code == _OPT_IF_TSRESOL and length >= 1:
                v = value[0]
                units = 2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F)
            elif code == _OPT_IF_TSOFFSET and length == 8:
                tsoffset = struct.unpack(endian + "q", value)[0]
            opt += 4 + length + (-length % 4)
        return _Iface(linktype, snaplen, name, units, tsoffset)


class _Prefixed(io.RawIOBase):
    """A file object that first returns bytes already read (the sniffed
    magic) and then the rest of the underlying file."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        if self._prefix:
            k = min(len(view), len(self._prefix))
            view[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        data = self._rest.read(len(view))
        view[:len(data)] = data
        return len(data)


def read_pcap(source: str | os.PathLike[str] | BinaryIO, name: str | None = None) -> Iterator[Frame]:
    """Yield ``(timestamp, interface, frame)`` for every frame of a pcap or
    pcapng file, closing it at the end."""
    with PcapReader(source, name) as reader:
        yield from reader


read_frames = read_pcap  # the name pyfw.cli.simulate uses


# ---------------------------------------------------------------- writing
_PCAP_HEADER = struct.Struct("<IHHiIII")
_REC = struct.Struct("<IIII")
WRITE_SNAPLEN = 262144
_BATCH = 2048  # list items (two per record) gathered before one write


class PcapWriter:
    """A classic pcap file (microsecond timestamps, link type 1) written as
    frames leave one interface.  Timestamps are rounded to the microsecond."""

    def __init__(self, target: str | os.PathLike[str] | BinaryIO, snaplen: int = WRITE_SNAPLEN) -> None:
        if isinstance(target, (str, os.PathLike)):
            self.name = os.fspath(target)
            try:
                self._f: BinaryIO = open(target, "wb", buffering=CHUNK)  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise PcapError(self.name, f"cannot create: {exc.strerror or exc}") from exc
            self._owned = True
        else:
            self.name = str(getattr(target, "name", "<stream>"))
            self._f = target
            self._owned = False
        self.snaplen = snaplen
        self.count = 0
        self._buf: list[bytes | bytearray | memoryview] = []
        self._f.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, ts: float, frame: bytes | bytearray | memoryview) -> None:
        if ts < 0:
            ts = 0.0
        # Split first: ts - int(ts) is exact, so only one rounding happens.
        sec = int(ts)
        frac = round((ts - sec) * 1_000_000)
        if frac >= 1_000_000:
            sec += 1
            frac -= 1_000_000
        wire = len(frame)
        buf = self._buf
        if wire <= self.snaplen:
            buf.append(_REC.pack(sec & 0xFFFFFFFF, frac, wire, wire))
            buf.append(frame if frame.__class__ is bytes else bytes(frame))  # (kept until the batch is written)
        else:
            buf.append(_REC.pack(sec & 0xFFFFFFFF, frac, self.snaplen, wire))
            buf.append(bytes(frame[:self.snaplen]))
        self.count += 1
        if len(buf) >= _BATCH:
            self._drain()

    def _drain(self) -> None:
        """Records go to the file in batches: one write of many records."""
        if self._buf:
            self._f.write(b"".join(self._buf))
            self._buf.clear()

    def flush(self) -> None:
        self._drain()
        self._f.flush()

    def close(self) -> None:
        self._drain()
        if self._owned:
            self._owned = False
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PcapDirWriter:
    """`--out-dir DIR`: ``DIR/<iface>.pcap`` per egress interface, created
    when the interface sends its first frame (so only interfaces that sent
    anything get a file)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._writers: dict[str, PcapWriter] = {}

    def write(self, iface: str, ts: float, frame: bytes | bytearray | memoryview) -> None:
        w = self._writers.get(iface)
        if w is None:
            if not iface or "/" in iface or iface in (".", ".."):
                raise PcapError(str(self.directory), f"cannot write a pcap for interface name {iface!r}")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PcapError(str(self.directory), f"cannot create directory: {exc.strerror or exc}") from exc
            w = self._writers[iface] = PcapWriter(self.directory / f"{iface}.pcap")
        w.write(ts, frame)

    @property
    def interfaces(self) -> list[str]:
        """Interfaces that have a file, in the order they first sent."""
        return list(self._writers)

    def close(self) -> None:
        for w in self._writers.values():
            w.close()

    def __enter__(self) -> PcapDirWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
