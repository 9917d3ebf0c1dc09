"""A synthetic capture for the simulator benchmark: many UDP/TCP flows from
a LAN through a gateway, frames built once with struct (no scapy), written
as pcap.  Frames arrive on one interface (the LAN side)."""

from __future__ import annotations

import argparse
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyfw.io.pcap import PcapWriter  # noqa: E402
from pyfw.wire.checksum import checksum, l4_checksum  # noqa: E402

GW_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000005")


def frame(src: int, dst: int, proto: int, sport: int, dport: int, payload: bytes, flags: int = 0x10,
          seq: int = 1) -> bytes:
    if proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 0x50, flags, 65535, 0, 0) + payload
    c = l4_checksum(src, dst, proto, l4)
    l4 = l4[:6] + struct.pack("!H", c) + l4[8:] if proto == 17 else l4[:16] + struct.pack("!H", c) + l4[18:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
                      src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return GW_MAC + PEER_MAC + b"\x08\x00" + hdr + l4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    lan = 0xC0A80100  # 192.168.1.0
    flows = []
    for i in range(a.flows):
        src = lan + 2 + i % 250
        dst = 0x08080000 + rng.randrange(1, 65535)
        proto = rng.choice((6, 17, 17))
        flows.append((src, dst, proto, 20000 + i, rng.choice((53, 80, 443, 123))))
    cache = {f: frame(*f, b"x" * 32) for f in flows}
    w = PcapWriter(Path(a.out))
    t = 1000.0
    for n in range(a.frames):
        f = flows[n % a.flows] if n >= a.flows else flows[n]
        w.write(t, cache[f])
        t += 0.00001
    w.close()


if __name__ == "__main__":
    main()
