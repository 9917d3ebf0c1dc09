"""The engine as the TAP gateway runs it: the same hooks, conntrack and NAT
as `pyfw simulate`, plus what a live host has and a capture replay must not
(the simulate differential tests compare with kernels that never resolve):

- a neighbour cache (pyfw.engine.neigh): frames to an unknown next hop wait
  for ARP instead of leaving with a zero MAC; ARP is answered and learnt;
- virtio-net offload: a TCP super-frame (GSO) goes through the hooks once,
  is checked against the egress MTU per segment, and leaves with its header
  and the pseudo-header sum for its final addresses;
- the host's own stack: what INPUT accepts for a socket of pyfw.stack goes
  there instead of the engine's model answers (RST / port unreachable stay
  for closed ports).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from pyfw.engine.api import PACKET_HOST
from pyfw.engine.engine import BROADCAST_MAC, ETH_P_IP, Emitted, Engine, Result
from pyfw.engine.neigh import NeighTable, Out
from pyfw.engine.packet import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Packet
from pyfw.tap import vnet
from pyfw.tap.vnet import VnetHdr

ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})


class Stack(Protocol):
    """What pyfw.stack.Stack offers the gateway."""

    def wants(self, ipdata: bytes) -> bool: ...
    def input(self, ipdata: bytes, now: float) -> None: ...
    def output(self, now: float) -> list[bytes]: ...
    def next_deadline(self) -> float | None: ...


class NoStack:
    """No local sockets: every local packet gets the engine's answers."""

    def wants(self, ipdata: bytes) -> bool:
        return False

    def input(self, ipdata: bytes, now: float) -> None:
        return None

    def output(self, now: float) -> list[bytes]:
        return []

    def next_deadline(self) -> float | None:
        return None


@dataclass
class TapEmitted(Emitted):
    """A frame with the virtio-net header to write before it."""

    hdr: bytes = vnet.PLAIN


class TapEngine(Engine):
    def __init__(self, ruleset: Any, host: Any, stack: Stack | None = None,
                 rng: random.Random | None = None) -> None:
        self.neigh = NeighTable(host, rng=rng)
        self.stack: Stack = stack if stack is not None else NoStack()
        self.stack_pending = False  # the stack took input: its output is due
        self.log_pending: list[tuple[int, str]] = []  # (syslog level, LOG/NFLOG text)
        super().__init__(ruleset, host)
        # the established-flow fast path (pyfw.engine.fastpath) replays a
        # cached Ethernet header and leaves out _transmit: it would skip
        # the neighbour cache and the super-frames' checksum fix-up
        self.fastpath = None

    def load(self, ruleset: Any) -> None:
        # LOG keeps its --log-level and NFLOG (no ulogd here) becomes a line
        # like LOG's, for the daemon's log sink (take_lines)
        self.env.nflog_to = self._nflog
        self.env.log_level = self._log_level
        super().load(ruleset)

    def _log_level(self, text: str, level: int) -> None:
        self.log_pending.append((level, text))

    def _nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        from pyfw.engine.logtext import format_packet

        self.log_pending.append((6, format_packet(pkt, prefix, 0)))

    def take_lines(self) -> list[tuple[int, str]]:
        """The LOG (at their level) and NFLOG (info) lines since the last call."""
        out = self.log_pending + [(4, text) for _t, text in self.logs]
        self.log_pending = []
        self.logs.clear()
        return out

    # ------------------------------------------------------------ entry
    def receive_frame(self, frame: bytes, iface: str, now: float, hdr: VnetHdr | None) -> Result:
        """A frame read from the TAP device of `iface` with its virtio-net
        header (None: a plain frame, checksums done)."""
        if hdr is None:
            return self.receive(frame, iface, now)
        if hdr.gso:
            netlen = vnet.network_len(frame, 14, hdr) if frame[12:14] == b"\x08\x00" else 0
            if not hdr.partial or not netlen:
                self._count("gso_unsupported")
                return Result(None, "malformed", reason="gso-unsupported")
            extra: dict[str, Any] = {"vnet": hdr, "gso_netlen": netlen, "csum_unnecessary": True}
        elif hdr.partial:
            buf = bytearray(frame)
            if not vnet.complete_checksum(buf, hdr.csum_start, hdr.csum_offset):
                self._count("malformed:vnet-csum")
                return Result(None, "malformed", reason="vnet-csum")
            return self.receive(bytes(buf), iface, now)
        elif hdr.valid:
            extra = {"csum_unnecessary": True}
        else:
            return self.receive(frame, iface, now)
        # CHECKSUM_PARTIAL / UNNECESSARY: nf_conntrack_checksum takes the
        # device's word for it (skb_csum_unnecessary)
        return self.receive_vouched(frame, iface, now, extra)

    # ------------------------------------------------------------ local delivery
    def _deliver(self, pkt: Packet) -> None:
        # TCP and UDP for its sockets, and ICMP errors about its connections
        # (echo and timestamp requests stay the engine's to answer)
        if pkt.pkttype == PACKET_HOST and pkt.l4ok and (pkt.proto in (IPPROTO_TCP, IPPROTO_UDP) or (
                pkt.proto == IPPROTO_ICMP and pkt.icmp_type in ICMP_ERRORS)) and self.host.is_local(pkt.dst):
            hdr = (pkt.extra or {}).get("vnet")
            if hdr is not None:
                # the checksum the sender left to the device: done here, as
                # the stack wants whole segments
                vnet.complete_checksum(pkt.data, hdr.csum_start - 14, hdr.csum_offset)
            data = bytes(pkt.data[:pkt.tot_len])
            try:
                wanted = self.stack.wants(data)
                if wanted:
                    self.stack.input(data, self.now)
            except Exception:
                self._count("stack_error")
                return
            if wanted:
                self._count("stack_in")
                self.stack_pending = True
                return
        super()._deliver(pkt)

    def stack_output(self, now: float) -> list[Emitted]:
        """The stack's datagrams through OUTPUT and POSTROUTING."""
        try:
            datagrams = self.stack.output(now)
        except Exception:
            self._count("stack_error")
            return []
        out: list[Emitted] = []
        for d in datagrams:
            out.extend(self.send(d, now).emitted)
        return out

    # ------------------------------------------------------------ link layer
    def _arp(self, frame: bytes, iface: str) -> Result:
        res = Result(None, "arp")
        res.emitted.extend(_emitted(o) for o in self.neigh.arp_input(frame, iface, self.now))
        return res

    def _transmit(self, pkt: Packet, rr: Any, res: Result) -> None:
        extra = pkt.extra or {}
        hdr: VnetHdr | None = extra.get("vnet")
        dev = rr.dev
        if hdr is not None:
            # a super-frame: segments that fit the MTU leave whole (the
            # kernel's ip_finish_output_gso); a bigger one would need
            # software segmentation, which a DF'd TCP never asks for
            if extra.get("gso_netlen", 0) > self.host.mtu(dev):
                self._count("gso_too_big")
                return
            ihl = pkt.ihl
            doff = (pkt.data[ihl + 12] >> 4) * 4
            out_hdr = VnetHdr(vnet.F_NEEDS_CSUM, hdr.gso_type, 14 + ihl + doff, hdr.gso_size, 14 + ihl, 16)
            datagram = pkt.data
            vnet.set_pseudo_sum(datagram, 0, ihl, 16)
            self._resolve(dev, rr.next_hop, pkt, bytes(datagram), out_hdr.pack(), res)
            return
        start = len(res.emitted)
        super()._transmit(pkt, rr, res)
        made = res.emitted[start:]
        del res.emitted[start:]
        for em in made:
            self._resolve(dev, rr.next_hop, pkt, em.frame[14:], vnet.PLAIN, res, em.frame)

    def _resolve(self, dev: str, nexthop: int, pkt: Packet, datagram: bytes, hdr: bytes, res: Result,
                 framed: bytes | None = None) -> None:
        host = self.host
        dst = pkt.dst
        if dst == 0xFFFFFFFF or 0xE0000000 <= dst <= 0xEFFFFFFF or host.is_broadcast(dst, dev) \
                or host.neighbor_mac(nexthop, dev):
            if framed is None:
                framed = self._l2_head(dev, nexthop, dst) + datagram
            res.emitted.append(TapEmitted(dev, framed, hdr))
            return
        # the packet waits with its connection: an ICMP error about it is RELATED (nf_ct_attach)
        for o in self.neigh.output(dev, nexthop, datagram, self.now, (hdr, pkt)):
            res.emitted.append(_emitted(o))

    def neigh_timers(self, now: float) -> list[Emitted]:
        """The neighbour timers due: probes, and ICMP host unreachable for
        what waited for a neighbour that never answered (arp_error_report)."""
        self._tick(now)
        out, failed = self.neigh.tick(now)
        emitted: list[Emitted] = [_emitted(o) for o in out]
        for _datagram, opaque in failed:
            pkt = opaque[1]
            pkt.time = now
            res = Result(None, "neigh")
            self._icmp_error(pkt, 3, 1)  # host unreachable
            self._flush_local(res, False)
            emitted.extend(res.emitted)
        return emitted

    def announce(self) -> list[Emitted]:
        """Gratuitous ARP for every address (at start)."""
        return [_emitted(o) for o in self.neigh.announce()]


def _emitted(o: Out) -> TapEmitted:
    return TapEmitted(o.dev, o.frame, o.opaque[0] if o.opaque is not None else vnet.PLAIN)


def for_host(frame: bytes, my_mac: bytes) -> bool:
    """Linux keeps what eth_type_trans does not mark PACKET_OTHERHOST:
    broadcast, multicast, and unicast to the device's own address."""
    return bool(frame[0] & 1) or frame[:6] == my_mac or frame[:6] == BROADCAST_MAC


__all__ = ["ETH_P_IP", "NoStack", "Stack", "TapEmitted", "TapEngine", "for_host"]
