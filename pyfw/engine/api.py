"""What compiled matches and targets see: verdict codes, conntrack state
bits, and the services the engine lends them (Env).

An extension module may define, beside its parse/print code:

    def compile(self, data, env: Env) -> Callable[[Packet], bool]      # a match
    def compile(self, data, env: Env) -> Callable[[Packet], int]       # a target

The engine calls `compile` once per rule when a ruleset is loaded and calls
the returned function per packet, so constants are bound in the closure and
the per-packet work is a few attribute reads.  A target's function returns a
verdict (NF_DROP, NF_ACCEPT, NF_QUEUE | (queue << 16), XT_CONTINUE, XT_RETURN)
and may change the packet (mark, TOS, TTL, MSS) or ask the engine for
something through `env` (LOG lines, frames the host sends, NAT bindings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# Netfilter verdicts (linux/netfilter.h) and xtables pseudo-verdicts.
NF_DROP: Final = 0
NF_ACCEPT: Final = 1
NF_STOLEN: Final = 2
NF_QUEUE: Final = 3
NF_REPEAT: Final = 4
NF_VERDICT_MASK: Final = 0xFF
NF_QUEUE_SHIFT: Final = 16
NF_VERDICT_FLAG_QUEUE_BYPASS: Final = 0x8000
XT_CONTINUE: Final = -1  # a non-terminating target: go on with the next rule
XT_RETURN: Final = -5    # back to the calling chain (NF_REPEAT - 1 - 8 in the kernel's encoding)

# enum ip_conntrack_info
IP_CT_ESTABLISHED: Final = 0
IP_CT_RELATED: Final = 1
IP_CT_NEW: Final = 2
IP_CT_IS_REPLY: Final = 3
IP_CT_ESTABLISHED_REPLY: Final = 3
IP_CT_RELATED_REPLY: Final = 4
IP_CT_UNTRACKED: Final = 7
# Packet.ctinfo when conntrack has no entry for the packet (INVALID).
IP_CT_NONE: Final = -1

# xt_conntrack / xt_state state bits (IP_CT_NUMBER is 5).
CT_STATE_INVALID: Final = 1 << 0
CT_STATE_SNAT: Final = 1 << 6
CT_STATE_DNAT: Final = 1 << 7
CT_STATE_UNTRACKED: Final = 1 << 8


def state_bit(ctinfo: int) -> int:
    """XT_CONNTRACK_STATE_BIT(ctinfo): ESTABLISHED 2, RELATED 4, NEW 8."""
    return 1 << (ctinfo % IP_CT_IS_REPLY + 1)


# enum ip_conntrack_status bits (Conn.status).
IPS_EXPECTED: Final = 1 << 0
IPS_SEEN_REPLY: Final = 1 << 1
IPS_ASSURED: Final = 1 << 2
IPS_CONFIRMED: Final = 1 << 3
IPS_SRC_NAT: Final = 1 << 4
IPS_DST_NAT: Final = 1 << 5
IPS_SEQ_ADJUST: Final = 1 << 6
IPS_SRC_NAT_DONE: Final = 1 << 7
IPS_DST_NAT_DONE: Final = 1 << 8
IPS_DYING: Final = 1 << 9
IPS_FIXED_TIMEOUT: Final = 1 << 10
IPS_TEMPLATE: Final = 1 << 11
IPS_UNTRACKED: Final = 1 << 12

# skb->pkt_type
PACKET_HOST: Final = 0
PACKET_BROADCAST: Final = 1
PACKET_MULTICAST: Final = 2
PACKET_OTHERHOST: Final = 3
PACKET_OUTGOING: Final = 4


class Env(Protocol):
    """Services of the engine for compiled extensions."""

    @property
    def host(self) -> Any:
        """pyfw.engine.host.Host: interfaces, addresses, routes, sysctls."""

    def log(self, text: str) -> None:
        """A kernel log line (LOG target text, without the dmesg timestamp)."""

    def send_local(self, data: bytearray, pkt: Packet) -> None:
        """A packet the host sends in answer to `pkt` (REJECT): it goes
        through OUTPUT and POSTROUTING like any locally made packet."""

    def shared(self, kind: str, name: str, factory: Callable[[], Any]) -> Any:
        """Named state that outlives a ruleset swap (recent lists, hashlimit
        tables): one object per (kind, name), made by `factory` once."""

    def nat(self) -> Any:
        """pyfw.engine.nat.Nat: set up a NAT binding for the packet's
        connection (SNAT/DNAT/MASQUERADE/REDIRECT targets)."""

    def nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        """NFLOG: the packet goes to netlink log group `group` with
        `prefix` (what ulogd would receive); no kernel log line."""

    def reject_sent(self) -> None:
        """REJECT fired on the current packet (its verdict is NF_DROP; the
        engine reports it as REJECT).  Called whether or not a reply could
        be sent."""

    # Optional (looked up with getattr; an Env may lack it):
    #   ct_set_closing(pkt): REJECT sent a TCP RST for pkt; the kernel's
    #   nf_ct_set_closing then moves the TCP connection to CLOSE with the
    #   close timeout.


MatchFn = Callable[["Packet"], bool]
TargetFn = Callable[["Packet"], int]


class Hotdrop(Exception):
    """Raised by a compiled match to drop the packet at once (the kernel's
    `par->hotdrop = true`): the match counts as not matching, the rule's
    counters are not bumped, the walk of the table stops and the table's
    verdict is NF_DROP.  ipt_do_table (pyfw.engine.tables.do_table) catches
    it around the rule's test.  Matches raise it only for what the kernel
    hot-drops: a TCP fragment at offset 1, a layer-4 header too short to
    read (tcp, udp, icmp, multiport, hashlimit ports), TCP options past the
    end of the packet, a hashlimit table that is full (htable-max).
    Raising is free on the fast path; the engine pays only for the rare
    drop."""


# What the compiled matches read beyond Packet's fields (conventions of the
# packet path; the engine, conntrack and the host stack keep them):
#   pkt.extra["kernel_sk"]: true on packets the host's own stack sends from
#       one of the kernel's sockets (echo replies, ICMP errors including
#       REJECT's, TCP resets for closed ports); owner then sees "a socket
#       without a file".  REJECT --reject-with tcp-reset sends without any
#       socket (leave it unset, uid None).
#   pkt.extra["groups"]: the supplementary groups (iterable of gids) of a
#       local socket's owner, for owner --suppl-groups.
#   pkt.extra["csum_unnecessary"]: the device vouched for the transport
#       checksum (a TAP's offloaded super-frame: CHECKSUM_PARTIAL), so the
#       checks of nf_ip_checksum pass it (REJECT's answer goes out).
#   pkt.ct_template: set by the CT target, and cleared again by conntrack
#       when it runs (nf_conntrack_in drops the template from the skb):
#       while set, conntrack/state/connmark see the template as the kernel
#       does (NEW, CONFIRMED, zero tuples, mark 0).
#   pkt.time: the engine clock; limit, hashlimit and recent count jiffies
#       (HZ 250) on it.


def hotdrop() -> bool:
    """`raise Hotdrop` as an expression, for one-line closures."""
    raise Hotdrop()
