"""The fast path's TCP lane (an established connection's ACKs) gives what
the slow path gives on what real stacks send: SACK-permitted handshakes,
timestamps on every segment, SACK blocks, odd lengths, Ethernet padding,
a bad TCP checksum now and then, window zero, retransmissions; through
MASQUERADE one way and DNAT the other.  And the lane is taken."""

from __future__ import annotations

import random
import struct

import pytest

from pyfw.wire.checksum import checksum, l4_checksum
from tests.engine.test_fastpath import MAC, SERVER, WAN_ADDR, run

RULES = ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
         "-A PREROUTING -d 203.0.113.1/32 -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.1.50:80\n"
         "-A POSTROUTING -s 192.168.1.0/24 -o eth1 -j MASQUERADE\nCOMMIT\n"
         "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
         "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
         "-A FORWARD -p tcp -m tcp --dport 9 -j DROP\n"
         "-A FORWARD -i eth0 -o eth1 -j ACCEPT\n"
         "-A FORWARD -d 192.168.1.50/32 -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n")

SYN_OPTS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x07"  # MSS SACKOK TS WS
SYNACK_OPTS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x00\x02\x00\x00\x00\x01\x01\x03\x03\x07"


def seg(iface: str, src: int, dst: int, sport: int, dport: int, flags: int, seq: int, ack: int, win: int,
        opts: bytes = b"", payload: bytes = b"", pad: int = 0, bad_l4: bool = False) -> bytes:
    doff = 20 + len(opts)
    l4 = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (doff // 4) << 4, flags, win,
                     0, 0) + opts + payload
    c = l4_checksum(src, dst, 6, l4) ^ (0x0101 if bad_l4 else 0)
    l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 9, 0x4000, 64, 6, 0, src.to_bytes(4, "big"),
                      dst.to_bytes(4, "big"))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return MAC[iface] + b"\x02\x00\x00\x00\x00\x09\x08\x00" + hdr + l4 + bytes(pad)


def conversation(rng: random.Random, out: bool, n: int) -> list[tuple[bytes, str]]:
    """One connection's segments: a LAN client out through MASQUERADE, or
    an Internet client in to the DNATed server."""
    if out:
        a, a_if, b_seen, b_if, b_real, a_seen = 0xC0A80102 + n % 5, "eth0", 0x08080808, "eth1", 0x08080808, WAN_ADDR
        ap, bp_seen, bp = 30000 + n, 443, 443
    else:
        a, a_if, b_seen, b_if, b_real, a_seen = 0x0A000001 + n, "eth1", WAN_ADDR, "eth0", SERVER, 0x0A000001 + n
        ap, bp_seen, bp = 40000 + n, 8080, 80
    aseq, bseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
    ts = 100

    def orig(flags: int, opts: bytes = b"", **kw: object) -> tuple[bytes, str]:
        return seg(a_if, a, b_seen, ap, bp_seen, flags, opts=opts, **kw), a_if  # type: ignore[arg-type]

    def reply(flags: int, opts: bytes = b"", **kw: object) -> tuple[bytes, str]:
        return seg(b_if, b_real, a_seen, bp, ap, flags, opts=opts, **kw), b_if  # type: ignore[arg-type]

    frames = [orig(0x02, SYN_OPTS, seq=aseq, ack=0, win=64240)]
    aseq += 1
    frames.append(reply(0x12, SYNACK_OPTS, seq=bseq, ack=aseq, win=65160))
    bseq += 1
    frames.append(orig(0x10, seq=aseq, ack=bseq, win=502, opts=b"\x01\x01\x08\x0a" + bytes(8)))
    last: tuple[bytes, str] | None = None
    for _ in range(rng.randrange(20, 60)):
        ts += 1
        tsopt = b"\x01\x01\x08\x0a" + struct.pack("!II", ts, ts - 1)
        r = rng.random()
        kw: dict[str, object] = {"win": rng.choice((502, 502, 501, 0)) if rng.random() < 0.1 else 502}
        if r < 0.08:
            kw["bad_l4"] = True
        if rng.random() < 0.15:
            kw["pad"] = rng.choice((1, 6, 12))
        if rng.random() < 0.1:
            opts = b"\x01\x01\x05\x0a" + struct.pack("!II", bseq + 10, bseq + 20)  # a SACK block
        elif rng.random() < 0.1:
            opts = b""
        else:
            opts = tsopt
        if last is not None and rng.random() < 0.05:
            frames.append(last)  # the same segment again
            continue
        data = bytes(rng.choice((0, 1, 33, 100, 1000)))
        if rng.random() < 0.5:
            f = orig(0x18 if data else 0x10, opts, seq=aseq, ack=bseq, payload=data, **kw)
            if not kw.get("bad_l4"):
                aseq += len(data)
        else:
            f = reply(0x18 if data else 0x10, opts, seq=bseq, ack=aseq, payload=data, **kw)
            if not kw.get("bad_l4"):
                bseq += len(data)
        frames.append(f)
        last = f
    frames.append(orig(0x11, seq=aseq, ack=bseq, win=502))
    frames.append(reply(0x11, seq=bseq, ack=aseq + 1, win=502))
    frames.append(orig(0x10, seq=aseq + 1, ack=bseq + 1, win=502))
    return frames


@pytest.mark.parametrize("seed", range(4))
def test_lane_same_as_slow_path(seed: int) -> None:
    rng = random.Random(seed)
    convs = [conversation(rng, rng.random() < 0.6, n) for n in range(8)]
    events = []
    now = 10.0
    while any(convs):
        c = rng.choice([c for c in convs if c])
        fr, iface = c.pop(0)
        events.append((now, fr, iface))
        now += rng.choice((0.0001, 0.01, 0.3))
    slow = run(RULES, events, fastpath=False, listen=bool(seed % 2))
    fast = run(RULES, events, fastpath=True, listen=bool(seed % 2))
    taken = [fast[6].fastpath.lane_hits]
    for k, (a, b) in enumerate(zip(slow[0], fast[0], strict=True)):
        assert a == b, f"frame {k}: {a} != {b}"
    assert slow[1:6] == fast[1:6]  # counters, conntrack -L, -S, LOG lines, -E
    assert taken[0] > 50 and taken[0] >= 0.8 * fast[6].fastpath.hits  # most replays are the lane's
