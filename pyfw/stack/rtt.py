"""Retransmission timeout estimation per RFC 6298.

SRTT/RTTVAR from one timed segment per flight (Karn: never a
retransmitted one, the caller sees to that), RTO = SRTT + max(G, 4*RTTVAR)
clamped to [MIN_RTO, MAX_RTO], doubled on each expiry (backoff) and kept
backed off until a fresh sample arrives.  The floor is Linux's 200 ms
(TCP_RTO_MIN) rather than the RFC's 1 s, the ceiling Linux's 120 s
(TCP_RTO_MAX); the initial RTO is the RFC's 1 s (Linux's TCP_TIMEOUT_INIT).
"""

from __future__ import annotations

MIN_RTO = 0.2
MAX_RTO = 120.0
INITIAL_RTO = 1.0
#: RFC 6298 5.7: after a lost SYN the data RTO restarts at 3 s.
FALLBACK_RTO = 3.0
#: Clock granularity G: the caller's clock is a float, 1 ms is what Linux's jiffies give at HZ=1000.
GRANULARITY = 0.001


class RttEstimator:
    """SRTT, RTTVAR and the current (possibly backed-off) RTO, in seconds."""

    __slots__ = ("srtt", "rttvar", "rto", "backoffs")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = INITIAL_RTO
        self.backoffs = 0

    def sample(self, r: float) -> None:
        """A round-trip measurement of a segment sent once (RFC 6298 2.2/2.3)."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.backoffs = 0
        self.rto = min(MAX_RTO, max(MIN_RTO, self.srtt + max(GRANULARITY, 4 * self.rttvar)))

    def backoff(self) -> None:
        """The timer expired: double the RTO (RFC 6298 5.5)."""
        self.backoffs += 1
        self.rto = min(MAX_RTO, self.rto * 2)

    def fallback(self) -> None:
        """The SYN was retransmitted and no sample exists: RTO 3 s (RFC 6298 5.7)."""
        if self.srtt is None:
            self.rto = FALLBACK_RTO
            self.backoffs = 0
