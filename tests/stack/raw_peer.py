"""A scripted TCP peer for unit tests: builds segments with pyfw.wire and
decodes what the stack sends, so each test states exactly which segment
goes in and which must come out."""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.stack import Stack
from pyfw.stack.stack import parse_addr
from pyfw.wire import ipv4, tcp
from pyfw.wire.checksum import verify, verify_l4
from pyfw.wire.tcp import ACKF, FIN, RST, SYN, TcpOptions, parse_options

HOST = parse_addr("192.0.2.1")     # the stack
PEER = parse_addr("192.0.2.99")    # the scripted peer
M32 = 0xFFFFFFFF


@dataclass
class Seg:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int
    payload: bytes
    opts: TcpOptions
    ttl: int
    df: bool

    @property
    def names(self) -> str:
        return "".join(n for bit, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (0x08, "P"), (ACKF, "."))
                       if self.flags & bit)


def decode(pkt: bytes) -> Seg:
    """A datagram the stack sent, checked (IP and TCP checksums, lengths)."""
    ihl = (pkt[0] & 15) * 4
    assert ipv4.tot_len(pkt) == len(pkt)
    assert verify(pkt[:ihl]), "bad IP checksum"
    src, dst = ipv4.src(pkt), ipv4.dst(pkt)
    assert pkt[9] == 6
    seg = pkt[ihl:]
    assert verify_l4(src, dst, 6, seg), "bad TCP checksum"
    t = tcp.Tcp(bytearray(seg))
    return Seg(t.sport, t.dport, t.seq, t.ack, t.flags, t.window, bytes(seg[t.doff:]), parse_options(t.options),
               pkt[8], bool(pkt[6] & 0x40))


class Peer:
    """One end of a TCP conversation with `stack`, driven by hand."""

    def __init__(self, stack: Stack, port: int = 80, sport: int = 33333, isn: int = 1000) -> None:
        self.stack = stack
        self.port = port
        self.sport = sport
        self.seq = isn          # next sequence number we send
        self.ack = 0            # what we acknowledge
        self.now = 0.0

    def datagram(self, flags: int, payload: bytes = b"", seq: int | None = None, ack: int | None = None,
                 win: int = 65535, options: bytes = b"") -> bytes:
        seg = tcp.build(PEER, HOST, self.sport, self.port, (self.seq if seq is None else seq) & M32,
                        (self.ack if ack is None else ack) & M32, flags, win, options, payload)
        return bytes(ipv4.build(PEER, HOST, 6, seg, df=True))

    def send(self, flags: int, payload: bytes = b"", seq: int | None = None, ack: int | None = None,
             win: int = 65535, options: bytes = b"", advance: bool = True) -> list[Seg]:
        """Deliver one segment to the stack; returns what it sends back."""
        d = self.datagram(flags, payload, seq, ack, win, options)
        self.stack.input(d, self.now)
        if advance and seq is None:
            self.seq += len(payload) + bool(flags & SYN) + bool(flags & FIN)
        return self.out()

    def out(self) -> list[Seg]:
        return [decode(p) for p in self.stack.output(self.now)]

    def tick(self, t: float) -> list[Seg]:
        """Move the clock to `t` and collect what the timers send."""
        self.now = t
        return self.out()

    def handshake(self, mss: int = 1460, wscale: int | None = 7) -> Seg:
        """SYN in, SYN-ACK out, ACK in: ESTABLISHED (passive open by the stack)."""
        opts = bytes((2, 4, mss >> 8, mss & 255))
        if wscale is not None:
            opts += bytes((1, 3, 3, wscale))
        out = self.send(SYN, options=opts)
        assert len(out) == 1 and out[0].flags == SYN | ACKF, out
        synack = out[0]
        assert synack.ack == self.seq
        self.ack = synack.seq + 1
        assert self.send(ACKF) == []
        return synack
