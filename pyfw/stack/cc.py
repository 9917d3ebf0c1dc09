"""Congestion control: Reno (RFC 5681 with RFC 3465 byte counting) and
CUBIC (RFC 9438), selectable per stack.  Both keep cwnd and ssthresh in
bytes on the connection; loss recovery itself (fast retransmit, NewReno's
partial ACKs, the RTO's go-back) is the connection's, these only decide
how the window grows and how far it falls.

Growth is asked for only while the window is the limit (the caller checks
that the flight filled it, RFC 7661's spirit): an application-limited
sender does not inflate cwnd.
"""

from __future__ import annotations

from typing import Protocol

#: Initial window: 10 segments (RFC 6928, Linux's TCP_INIT_CWND).
INITIAL_WINDOW_SEGMENTS = 10
#: RFC 3465's L: at most 2 SMSS of growth per ACK in slow start.
ABC_LIMIT = 2


class Window(Protocol):
    """What congestion control reads and writes on a connection."""

    cwnd: int
    ssthresh: int
    mss: int

    def flight_size(self) -> int: ...

    def smoothed_rtt(self) -> float | None: ...


class CongestionControl:
    """Reno: the base every controller shares for slow start."""

    name = "reno"

    def __init__(self) -> None:
        self.bytes_acked = 0

    def initial_window(self, w: Window) -> None:
        w.cwnd = INITIAL_WINDOW_SEGMENTS * w.mss
        w.ssthresh = 1 << 30

    def on_ack(self, w: Window, acked: int, now: float) -> None:
        """New data acknowledged outside recovery, window-limited."""
        if w.cwnd < w.ssthresh:
            w.cwnd += min(acked, ABC_LIMIT * w.mss)
            return
        self.congestion_avoidance(w, acked, now)

    def congestion_avoidance(self, w: Window, acked: int, now: float) -> None:
        # RFC 5681 3.1 with byte counting: one SMSS per window acknowledged.
        self.bytes_acked += acked
        if self.bytes_acked >= w.cwnd:
            self.bytes_acked -= w.cwnd
            w.cwnd += w.mss

    def on_congestion(self, w: Window, now: float) -> None:
        """Entering fast recovery: set ssthresh (cwnd is the caller's)."""
        w.ssthresh = max(w.flight_size() // 2, 2 * w.mss)
        self.bytes_acked = 0

    def on_rto(self, w: Window, now: float) -> None:
        """The retransmission timer expired: ssthresh falls, cwnd is one segment."""
        self.on_congestion(w, now)
        w.cwnd = w.mss

    def wants_rtt_samples(self, w: Window) -> bool:
        """Whether on_rtt_sample should be fed (per-ACK RTTs of segments sent once)."""
        return False

    def on_rtt_sample(self, w: Window, rtt: float, ack: int, snd_max: int) -> None:
        """An RTT sample from an ACK in slow start."""


class Cubic(CongestionControl):
    """RFC 9438: W_cubic(t) = C (t - K)^3 + W_max in segments, with the
    Reno-friendly estimate W_est and fast convergence.  Slow start ends
    early on a rise in delay, HyStart's delay test with RFC 9406's
    thresholds (the minimum RTT of a round at least 8 samples long exceeds
    the previous round's by max(4 ms, min(16 ms, RTT / 8))); as Linux's
    CUBIC it goes straight to congestion avoidance (no conservative slow
    start), and only above 16 segments (hystart_low_window)."""

    name = "cubic"
    C = 0.4
    BETA = 0.7
    ALPHA = 3 * (1 - BETA) / (1 + BETA)

    def __init__(self) -> None:
        super().__init__()
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0
        self.frac = 0.0
        self.round_end: int | None = None
        self.round_min = float("inf")
        self.last_round_min = float("inf")
        self.round_samples = 0
        self.hystart_exits = 0

    def wants_rtt_samples(self, w: Window) -> bool:
        return w.cwnd < w.ssthresh

    def on_rtt_sample(self, w: Window, rtt: float, ack: int, snd_max: int) -> None:
        if self.round_end is None or ack >= self.round_end:
            self.last_round_min = self.round_min
            self.round_min = float("inf")
            self.round_samples = 0
            self.round_end = snd_max
        if rtt < self.round_min:
            self.round_min = rtt
        self.round_samples += 1
        if (self.round_samples >= HYSTART_MIN_SAMPLES and self.last_round_min != float("inf")
                and w.cwnd >= HYSTART_LOW_WINDOW * w.mss and w.cwnd < w.ssthresh):
            thresh = min(max(self.last_round_min / 8, HYSTART_MIN_THRESH), HYSTART_MAX_THRESH)
            if self.round_min >= self.last_round_min + thresh:
                w.ssthresh = w.cwnd
                self.hystart_exits += 1

    def congestion_avoidance(self, w: Window, acked: int, now: float) -> None:
        mss = w.mss
        cwnd = w.cwnd / mss
        if self.epoch_start is None:
            self.epoch_start = now
            if self.w_max <= cwnd:
                self.w_max = cwnd
                self.k = 0.0
            else:
                self.k = ((self.w_max - cwnd) / self.C) ** (1 / 3)
            self.w_est = cwnd
        t = now - self.epoch_start
        rtt = w.smoothed_rtt() or 0.1
        segs = acked / mss
        alpha = 1.0 if self.w_est >= self.w_max else self.ALPHA
        self.w_est += alpha * segs / cwnd
        w_cubic = self.C * (t - self.k) ** 3 + self.w_max
        if w_cubic < self.w_est:
            # Reno-friendly region (RFC 9438 4.3).
            grow = self.w_est - cwnd
        else:
            target = self.C * (t + rtt - self.k) ** 3 + self.w_max
            target = min(max(target, cwnd), 1.5 * cwnd)
            grow = (target - cwnd) / cwnd * segs
        if grow <= 0:
            return
        self.frac += grow * mss
        whole = int(self.frac)
        if whole:
            self.frac -= whole
            w.cwnd += whole

    def on_congestion(self, w: Window, now: float) -> None:
        cwnd = w.cwnd / w.mss
        # Fast convergence (RFC 9438 4.7): release bandwidth to newer flows.
        self.w_max = cwnd * (1 + self.BETA) / 2 if cwnd < self.w_max else cwnd
        self.epoch_start = None
        self.frac = 0.0
        w.ssthresh = max(int(w.cwnd * self.BETA), 2 * w.mss)


HYSTART_MIN_SAMPLES = 8
HYSTART_LOW_WINDOW = 16
HYSTART_MIN_THRESH = 0.004
HYSTART_MAX_THRESH = 0.016


def make(name: str) -> CongestionControl:
    """A fresh controller by name: "reno" or "cubic"."""
    if name == "reno":
        return CongestionControl()
    if name == "cubic":
        return Cubic()
    raise ValueError(f"unknown congestion control {name!r} (reno, cubic)")
