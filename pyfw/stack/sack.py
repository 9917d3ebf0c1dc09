"""Selective acknowledgment (RFC 2018) both ways, with the loss recovery of
RFC 6675 on the sending side.

- Receiving: `sack_option` turns the out-of-order queue into SACK blocks
  for our ACKs, the block holding the latest arrival first.
- Sending: a `Scoreboard` of the peer's SACKed ranges (unwrapped sequence
  numbers above SND.UNA) answers RFC 6675's IsLost (more than
  (DupThresh - 1) * SMSS bytes or DupThresh blocks SACKed above), the pipe
  estimate, NextSeg's next hole to resend, and which ranges a go-back
  after an RTO may skip.  A resent hole still missing an RTT later while
  newer data keeps being SACKed is lost again (the idea of RACK, RFC 8985,
  for retransmissions only): it goes out once more instead of waiting for
  the RTO.  SACK information is advisory (the receiver may
  renege): nothing is freed before the cumulative ACK covers it.
"""

from __future__ import annotations

import struct

from pyfw.wire.tcp import TCPOPT_NOP, TCPOPT_SACK

DUP_THRESH = 3
#: Four blocks fit in the 40 option bytes without timestamps (2 + 4 * 8 + 2 NOPs).
MAX_BLOCKS = 4
_II = struct.Struct("!II")
_M32 = 0xFFFFFFFF


def sack_option(ooo: list[tuple[int, bytes]], latest: int) -> bytes:
    """The SACK option for an out-of-order queue (sorted, non-overlapping
    pieces): contiguous pieces merged, the block containing `latest` first,
    then the highest ones (the most recently useful to the sender)."""
    ranges: list[list[int]] = []
    for s, d in ooo:
        e = s + len(d)
        if ranges and ranges[-1][1] == s:
            ranges[-1][1] = e
        else:
            ranges.append([s, e])
    first = None
    for r in ranges:
        if r[0] <= latest < r[1]:
            first = r
            break
    blocks = [first] if first is not None else []
    for r in reversed(ranges):
        if len(blocks) >= MAX_BLOCKS:
            break
        if r is not first:
            blocks.append(r)
    out = bytearray((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, 2 + 8 * len(blocks)))
    for s, e in blocks:
        out += _II.pack(s & _M32, e & _M32)
    return bytes(out)


class Scoreboard:
    """The SACKed ranges above SND.UNA, sorted and merged."""

    __slots__ = ("ranges", "sacked_bytes")

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.sacked_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def clear(self) -> None:
        self.ranges = []
        self.sacked_bytes = 0

    def prune(self, una: int) -> None:
        """Forget what the cumulative ACK now covers."""
        r = self.ranges
        while r and r[0][1] <= una:
            s, e = r.pop(0)
            self.sacked_bytes -= e - s
        if r and r[0][0] < una:
            s, e = r[0]
            r[0] = (una, e)
            self.sacked_bytes -= una - s

    def add(self, left: int, right: int) -> bool:
        """Merge one block; True when it SACKed something new."""
        before = self.sacked_bytes
        merged: list[tuple[int, int]] = []
        placed = False
        for s, e in self.ranges:
            if e < left:
                merged.append((s, e))
            elif s > right:
                if not placed:
                    merged.append((left, right))
                    placed = True
                merged.append((s, e))
            else:
                left = min(left, s)
                right = max(right, e)
        if not placed:
            merged.append((left, right))
        self.ranges = merged
        self.sacked_bytes = sum(e - s for s, e in merged)
        return self.sacked_bytes > before

    def is_lost(self, seq: int, mss: int) -> bool:
        """RFC 6675 IsLost: enough SACKed above `seq` to call it lost."""
        above = 0
        blocks = 0
        for s, e in reversed(self.ranges):
            if e <= seq:
                break
            above += e - max(s, seq)
            blocks += 1
            if blocks >= DUP_THRESH or above > (DUP_THRESH - 1) * mss:
                return True
        return False

    def holes(self, una: int) -> list[tuple[int, int]]:
        """The un-SACKed gaps below the highest SACKed byte."""
        out = []
        prev = una
        for s, e in self.ranges:
            if s > prev:
                out.append((prev, s))
            prev = e
        return out

    def next_lost(self, una: int, high_rxt: int, mss: int) -> tuple[int, int] | None:
        """RFC 6675 NextSeg (rule 1): the next lost, not yet resent range
        at or above `high_rxt`, at most one MSS long."""
        for hs, he in self.holes(una):
            start = hs if hs > high_rxt else high_rxt
            if start < he and self.is_lost(start, mss):
                return start, min(he, start + mss)
        return None

    def pipe(self, una: int, snd_max: int, high_rxt: int, mss: int) -> int:
        """RFC 6675 SetPipe: bytes believed in the network (not SACKed and
        not lost, plus lost ones already resent)."""
        pipe = snd_max - una - self.sacked_bytes
        for hs, he in self.holes(una):
            if self.is_lost(hs, mss):
                pipe -= he - hs
                if high_rxt > hs:
                    pipe += min(he, high_rxt) - hs
        return pipe

    def covers(self, start: int, end: int) -> bool:
        """Whether [start, end) is SACKed entirely."""
        for s, e in self.ranges:
            if s <= start and end <= e:
                return True
            if s > start:
                return False
        return False

    def skip(self, seq: int) -> tuple[int, int | None]:
        """For a go-back from `seq`: the first un-SACKed sequence number at
        or after it, and where the next SACKed range begins (None: none)."""
        for s, e in self.ranges:
            if e <= seq:
                continue
            if s <= seq:
                seq = e
                continue
            return seq, s
        return seq, None
