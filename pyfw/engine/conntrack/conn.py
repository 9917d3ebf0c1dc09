"""Connection-tracking entries: the interface other parts of the engine use.

A connection has two tuples, the original direction's and the reply
direction's (after NAT the reply tuple is what replies look like on the
wire), status bits (IPS_*), a mark, a timeout on the engine clock and
per-protocol state.  NAT records its manipulations on the connection, not on
the packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


class Tuple(NamedTuple):
    """nf_conntrack_tuple for IPv4: addresses and protocol part.

    TCP/UDP: ports.  ICMP: `sport` is the echo id, `dport` is type << 8 |
    code of the original direction's message (as the kernel keeps type and
    code in the tuple's destination part)."""

    src: int
    dst: int
    proto: int
    sport: int
    dport: int

    def inverted(self) -> Tuple:
        return Tuple(self.dst, self.src, self.proto, self.dport, self.sport)


# Tuple(...) runs a Python-level __new__; the packet path makes its tuples
# with new_tuple(Tuple, (src, dst, proto, sport, dport)), the same object.
new_tuple = tuple.__new__


_NO_TUPLE = new_tuple(Tuple, (0, 0, 0, 0, 0))


@dataclass(eq=False, slots=True, init=False)
class Conn:
    orig: Tuple
    reply: Tuple
    status: int
    mark: int
    timeout_at: float             # engine-clock time at which it expires
    zone: int
    secmark: int
    helper: str | None
    # protocol state: for TCP a pyfw.engine.conntrack.tcp.TcpState; None else
    proto_state: Any
    # NAT: set by pyfw.engine.nat when a binding is made
    nat_src: tuple[int, int] | None   # (address, port) SNAT/MASQUERADE made
    nat_dst: tuple[int, int] | None   # (address, port) DNAT/REDIRECT made
    masq_dev: str | None              # MASQUERADE's out interface
    id: int
    created_at: float
    extra: dict[str, Any]
    # added by the tracker: which directions `zone` applies to (bit 0
    # original, bit 1 reply; 3 both, as nf_conntrack_zone.dir), the acct
    # counters [orig packets, orig bytes, reply packets, reply bytes] when
    # nf_conntrack_acct is on, and the confirm time when
    # nf_conntrack_timestamp is on
    zone_dir: int
    acct: list[int] | None
    tstamp_start: float | None

    # (written out, not generated: mypyc compiles this one; one Conn is
    # made per new flow.  Every argument has a default: copy and deepcopy
    # make a compiled one through Conn.__new__(Conn), which runs it)
    def __init__(self, orig: Tuple = _NO_TUPLE, reply: Tuple = _NO_TUPLE, status: int = 0, mark: int = 0,
                 timeout_at: float = 0.0, zone: int = 0, secmark: int = 0, helper: str | None = None,
                 proto_state: Any = None,
                 nat_src: tuple[int, int] | None = None, nat_dst: tuple[int, int] | None = None,
                 masq_dev: str | None = None, id: int = 0, created_at: float = 0.0,
                 extra: dict[str, Any] | None = None, zone_dir: int = 3, acct: list[int] | None = None,
                 tstamp_start: float | None = None) -> None:
        self.orig = orig
        self.reply = reply
        self.status = status
        self.mark = mark
        self.timeout_at = timeout_at
        self.zone = zone
        self.secmark = secmark
        self.helper = helper
        self.proto_state = proto_state
        self.nat_src = nat_src
        self.nat_dst = nat_dst
        self.masq_dev = masq_dev
        self.id = id
        self.created_at = created_at
        self.extra = {} if extra is None else extra
        self.zone_dir = zone_dir
        self.acct = acct
        self.tstamp_start = tstamp_start

    def remaining(self, now: float) -> int:
        """Seconds left, as conntrack -L and --ctexpire show them (a
        timeout set just now shows in full, float rounding aside)."""
        left = self.timeout_at - now
        return max(0, int(left + 1e-6))
