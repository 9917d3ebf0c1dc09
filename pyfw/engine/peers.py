"""The per-address rate state the kernel keeps for the ICMP it sends
(struct inet_peer: rate_tokens, rate_last, n_redirects), and the three
limiters that share it:

- icmpv4_xrlim_allow (icmp_send and icmp_reply for the types in
  net.ipv4.icmp_ratemask, fragmentation needed never): a token bucket of
  icmp_ratelimit per message, XRLIM_BURST_FACTOR messages deep, keyed by
  the ICMP's destination;
- ip_error (ICMP unreachable for no route): one message per second, five
  deep, keyed by the offending packet's source;
- ip_rt_send_redirect: exponential backoff, nine redirects, then silence.

They share rate_tokens and rate_last, so an ICMP error to a host drains
what ip_error may send it next (with icmp_ratelimit 0 a TTL exceeded
leaves no token for a net unreachable right after).  Time is in jiffies
(HZ 250, as the kernels pyfw mirrors are built) from the engine clock.
The global icmp_msgs_per_sec bucket is not modelled: it spends a random
0-2 credits per message, and at its default (1000/s, 50 deep) only a flood
reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

HZ = 250
XRLIM_BURST_FACTOR = 6
ERROR_COST = HZ                 # ip_rt_error_cost
ERROR_BURST = 5 * HZ            # ip_rt_error_burst
REDIRECT_NUMBER = 9             # ip_rt_redirect_number
REDIRECT_LOAD = HZ // 50        # ip_rt_redirect_load
REDIRECT_SILENCE = REDIRECT_LOAD << (REDIRECT_NUMBER + 1)

ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
NR_ICMP_TYPES = 18


def jiffies(t: float) -> int:
    return int(t * HZ)


def ms_to_jiffies(ms: int) -> int:
    """msecs_to_jiffies for HZ 250 (rounds up)."""
    return -(-ms * HZ // 1000) if ms > 0 else 0


def ratelimited_type(icmp_type: int, code: int, ratemask: int) -> bool:
    """not icmpv4_mask_allow: whether the per-peer limit applies."""
    if icmp_type > NR_ICMP_TYPES:
        return False
    if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
        return False
    return bool((1 << icmp_type) & ratemask)


@dataclass
class Peer:
    rate_tokens: int
    rate_last: int
    n_redirects: int = 0


class Peers:
    """inet_peer entries by IPv4 address (they never expire here)."""

    def __init__(self) -> None:
        self._peers: dict[int, Peer] = {}

    def get(self, addr: int, now: int) -> Peer:
        p = self._peers.get(addr)
        if p is None:
            # inet_getpeer: rate_last 60 s back, so the first use is not limited
            p = self._peers[addr] = Peer(0, now - 60 * HZ)
        return p

    def xrlim_allow(self, addr: int, now: int, timeout: int) -> bool:
        """inet_peer_xrlim_allow: the cap applies only when time has
        passed since the last use (two calls in one jiffy share tokens)."""
        p = self.get(addr, now)
        token = p.rate_tokens
        delta = now - p.rate_last
        if delta:
            p.rate_last = now
            token += delta
            if token > XRLIM_BURST_FACTOR * timeout:
                token = XRLIM_BURST_FACTOR * timeout
        ok = token >= timeout
        if ok:
            token -= timeout
        p.rate_tokens = token
        return ok

    def error_allow(self, addr: int, now: int) -> bool:
        """ip_error's bucket for the source of an unroutable packet."""
        p = self.get(addr, now)
        p.rate_tokens += now - p.rate_last
        if p.rate_tokens > ERROR_BURST:
            p.rate_tokens = ERROR_BURST
        p.rate_last = now
        if p.rate_tokens >= ERROR_COST:
            p.rate_tokens -= ERROR_COST
            return True
        return False

    def redirect_allow(self, addr: int, now: int) -> bool:
        """ip_rt_send_redirect's backoff for the source being redirected."""
        p = self.get(addr, now)
        if now - (p.rate_last + REDIRECT_SILENCE) > 0:
            p.rate_tokens = 0
            p.n_redirects = 0
        if p.n_redirects >= REDIRECT_NUMBER:
            p.rate_last = now
            return False
        if p.n_redirects == 0 or now - (p.rate_last + (REDIRECT_LOAD << p.n_redirects)) > 0:
            p.rate_last = now
            p.n_redirects += 1
            return True
        return False
