"""One TCP connection: the RFC 9293 state machine, sans-IO.

Sequence numbers are kept *unwrapped* (Python ints that keep growing from
the ISN) so every comparison is a plain one; the wire's 32-bit values are
unwrapped on arrival against the nearest reference (RCV.NXT, SND.UNA) and
taken mod 2**32 when sent.

Segments arrive through `segment()` (the stack has demultiplexed and
checksummed them); what to send is produced by `emit()`, called from the
stack's output(); timers are absolute deadlines the stack keeps in a heap
and hands back through `on_timer()`.  Nothing here reads a clock or
touches a socket.

Choices (where the RFCs leave room), mostly Linux's:
- TIME_WAIT lasts 60 s (2*MSL with MSL = 30 s: Linux's TCP_TIMEWAIT_LEN);
  FIN_WAIT_2 gives up after 60 s too (tcp_fin_timeout).
- RST and SYN in synchronized states follow RFC 5961: only an RST at
  exactly RCV.NXT resets, one elsewhere in the window and any SYN get a
  challenge ACK; ACKs outside [SND.UNA - MAX.SND.WND, SND.MAX] are dropped.
- Retransmission: RFC 6298 timer (rtt.py), RTO expiry goes back to SND.UNA
  in slow start (skipping what the peer SACKs afterwards).  With SACK
  (RFC 2018, offered and accepted unless the stack turns it off) loss
  recovery is RFC 6675's (sack.py); without it three duplicate ACKs start
  NewReno fast recovery (RFC 6582).  The timestamp option is declined.
- Delayed ACKs: every second segment is acknowledged at once, a lone one
  after 40 ms (Linux's minimum delayed-ACK time); out-of-order data, a
  filled hole and a FIN are acknowledged immediately.
- Zero windows are probed Linux's way (a segment at SND.UNA - 1 the peer
  must answer), on the persist timer with backoff.
- Retries: 6 for a SYN, 5 for a SYN-ACK, 15 for data, as Linux's sysctl
  defaults count them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pyfw.stack import cc as ccmod
from pyfw.stack.rtt import MAX_RTO, MIN_RTO, RttEstimator
from pyfw.stack.sack import Scoreboard, sack_option
from pyfw.stack.segment import build, syn_options
from pyfw.wire.tcp import ACKF, FIN, PSH, RST, SYN, TcpOptions

if TYPE_CHECKING:
    from pyfw.stack.stack import Stack

CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN_SENT"
SYN_RCVD = "SYN_RCVD"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN_WAIT_1"
FIN_WAIT_2 = "FIN_WAIT_2"
CLOSING = "CLOSING"
CLOSE_WAIT = "CLOSE_WAIT"
LAST_ACK = "LAST_ACK"
TIME_WAIT = "TIME_WAIT"

MSL = 30.0
TIME_WAIT_LEN = 2 * MSL
FIN_WAIT_2_TIMEOUT = 60.0
DELACK = 0.04
SYN_RETRIES = 6
SYNACK_RETRIES = 5
DATA_RETRIES = 15
PROBE_RETRIES = 15
#: RFC 5961 / Linux's tcp_invalid_ratelimit: one reply per 500 ms to
#: segments that are out of window or challenge-worthy and carry no data.
OOW_RATELIMIT = 0.5
#: Linux's net.ipv4.route.min_pmtu: a "fragmentation needed" below it is raised to it.
MIN_PMTU = 552
#: Destination-unreachable codes Linux treats as hard errors (icmp_err_convert's fatal).
FATAL_UNREACH = frozenset((2, 3, 6, 7, 8, 9, 10, 13, 14, 15))
#: Ask the application for more data when less than this is queued.
SEND_LOWAT = 1 << 21
DEFAULT_MSS = 536

_HALF = 0x80000000
_WRAP = 0x100000000
_M32 = 0xFFFFFFFF

#: States in which our side may still send data or a FIN.
_SENDING = frozenset((ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK))
#: States in which the peer may still send data.
_RECEIVING = frozenset((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2))


class App(Protocol):
    """What the stack calls on an application.  Optional as well:
    on_connect(conn) after an active open, on_writable(conn) when the send
    queue drops below SEND_LOWAT (to stream a large body)."""

    def on_data(self, conn: Connection, data: bytes) -> None: ...

    def on_close(self, conn: Connection) -> None: ...


def unwrap(value: int, ref: int) -> int:
    """The unwrapped sequence number nearest `ref` whose low 32 bits are `value`."""
    d = (value - ref) & _M32
    if d >= _HALF:
        d -= _WRAP
    return ref + d


class Connection:
    """A TCP control block with its buffers, timers and application."""

    def __init__(self, stack: Stack, laddr: int, lport: int, raddr: int, rport: int, iss: int,
                 mss_local: int, rcvbuf: int, cc: str, sack: bool = True) -> None:
        self.stack = stack
        self.laddr = laddr
        self.lport = lport
        self.raddr = raddr
        self.rport = rport
        self.key = (laddr, lport, raddr, rport)
        self.state = CLOSED
        self.app: Any = None
        self.listener: Any = None
        self.passive = False
        self.error: str | None = None     # why the connection died: "reset", "timeout", "refused"
        self.close_notified = False
        # send sequence space
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.sndbuf = bytearray()
        self.buf_seq = iss + 1            # sequence number of sndbuf[0]
        self.fin_queued = False
        # receive sequence space
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0                  # right edge of the window we advertised
        self.rcv_wscale = 0
        self.wscale_ok = False
        self.rcvbuf = rcvbuf
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_bytes = 0
        self.peer_fin: int | None = None  # sequence number of a FIN seen ahead of the data
        self.paused = False
        self.pending = bytearray()        # in-order data held while the app paused reading
        # MSS and congestion control
        self.mss_local = mss_local
        self.mss = DEFAULT_MSS
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self.cc = ccmod.make(cc)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss
        # SACK (RFC 2018 / 6675)
        self.sack_enabled = sack
        self.sack_ok = False
        self.scoreboard = Scoreboard()
        self.high_rxt = iss
        self.last_ooo = 0
        self.rxt_log: list[tuple[int, int, float]] = []   # holes resent in this recovery: start, end, when
        self.relost: list[tuple[int, int]] = []           # resent holes found lost again
        self.rec_sent: deque[tuple[int, float]] = deque()  # new data sent in recovery: end, when
        self.rec_rtt: float | None = None                  # RTT of the latest of it delivered
        # timers (absolute deadlines, None = off)
        self.rtt = RttEstimator()
        self.rtt_seq: int | None = None
        self.rtt_time = 0.0
        self.sent_log: deque[tuple[int, float]] = deque()   # (end, time) of new data, for per-ACK RTTs
        self.rto_at: float | None = None
        self.persist = False
        self.persist_backoff = 0
        self.probes_out = 0
        self.delack_at: float | None = None
        self.close_at: float | None = None
        self.retries = 0
        self.syn_retransmitted = False
        self.sched: float | None = None   # deadline the stack's heap holds for us
        self.last_oow = -1e9
        self.idle_timeout: float | None = None   # close after this long without a segment from the peer
        self.last_rx = 0.0
        self.soft_error: str | None = None
        self.last_tx: float | None = None
        # output requests
        self.ack_now = False
        self.unacked = 0                  # segments received since our last ACK
        self.dupacks_owed = 0             # out-of-order arrivals not yet answered
        self.retx_head = False
        self.send_syn = False
        self.send_probe = False
        self.ident = iss & 0xFFFF
        # statistics
        self.retransmits = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    # ------------------------------------------------------------ application side
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue data; it goes out as window and congestion allow."""
        if self.fin_queued or self.state in (CLOSED, LISTEN):
            raise ConnectionError(f"send on a connection in {self.state}" + (" after close" if self.fin_queued else ""))
        if data:
            self.sndbuf += data
            self.stack._mark(self)

    def close(self) -> None:
        """No more data from us: a FIN follows what is queued (RFC 9293 CLOSE call)."""
        st = self.state
        if self.fin_queued or st in (CLOSED, LISTEN):
            return
        if st == SYN_SENT and not self.sndbuf:
            self._destroy()       # RFC 9293 3.10.4: nothing queued, delete the TCB
            return
        # in SYN_SENT with data queued the FIN waits for the handshake
        self.fin_queued = True
        if st in (ESTABLISHED, SYN_RCVD):
            self.state = FIN_WAIT_1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        self.stack._mark(self)

    def abort(self) -> None:
        """Reset the connection now (RFC 9293 ABORT call): an RST if synchronized."""
        if self.state in (CLOSED, LISTEN):
            return
        if self.state not in (SYN_SENT, TIME_WAIT):
            self.stack._send_raw(build(self.laddr, self.raddr, self.lport, self.rport, self.snd_nxt, 0, RST, 0,
                                       self._next_ident()))
            self.stack.counters["OutRsts"] += 1
        self.close_notified = True
        self._destroy()

    def pause_reading(self) -> None:
        """Hold received data: the advertised window shrinks as it piles up."""
        self.paused = True

    def resume_reading(self) -> None:
        """Deliver what was held and reopen the window."""
        self.paused = False
        if self.pending and self.app is not None:
            data = bytes(self.pending)
            self.pending.clear()
            self._call(self.app.on_data, data)
        if self.state != CLOSED:
            # a window update once the window reopens by a segment or half the buffer
            if self.rcv_adv - self.rcv_nxt < min(self.rcvbuf // 2, self.mss_local):
                self.ack_now = True
            self.stack._mark(self)

    @property
    def send_queue(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return self.buf_seq + len(self.sndbuf) - max(self.snd_una, self.buf_seq)

    # ------------------------------------------------------------ Window protocol (cc.py)
    def flight_size(self) -> int:
        return self.snd_max - self.snd_una

    def smoothed_rtt(self) -> float | None:
        return self.rtt.srtt

    # ------------------------------------------------------------ opening
    def open_active(self, now: float) -> None:
        """connect(): send a SYN (RFC 9293 OPEN call, active)."""
        self.state = SYN_SENT
        self.snd_nxt = self.snd_max = self.iss + 1
        self.send_syn = True
        self.rcv_wscale = self._wscale_for(self.rcvbuf)
        self.stack._mark(self)

    def open_passive(self, seq: int, window: int, opts: TcpOptions, now: float) -> None:
        """A SYN reached a listener: SYN_RCVD and a SYN-ACK."""
        self.passive = True
        self.state = SYN_RCVD
        self.irs = seq
        self.rcv_nxt = seq + 1
        self._take_syn_options(opts, window)
        self.snd_nxt = self.snd_max = self.iss + 1
        self.snd_wl1 = seq
        self.snd_wl2 = self.iss
        self.send_syn = True
        self.stack._mark(self)

    def _take_syn_options(self, opts: TcpOptions, window: int) -> None:
        self.mss = max(64, min(opts.mss if opts.mss else DEFAULT_MSS, self.mss_local))
        if opts.wscale is not None:
            # scaling holds only when both SYNs carry the option (RFC 7323 1.3)
            self.wscale_ok = True
            self.snd_wscale = opts.wscale
            if self.passive:
                self.rcv_wscale = self._wscale_for(self.rcvbuf)
        else:
            self.snd_wscale = 0
            self.rcv_wscale = 0
            self.rcvbuf = min(self.rcvbuf, 65535)
        # A SYN's window is never scaled (RFC 7323 2.2).
        self.snd_wnd = window
        self.max_snd_wnd = window
        self.sack_ok = self.sack_enabled and opts.sack_perm
        self.cc.initial_window(self)

    @staticmethod
    def _wscale_for(rcvbuf: int) -> int:
        s = 0
        while (65535 << s) < rcvbuf and s < 14:
            s += 1
        return s

    # ------------------------------------------------------------ receive
    def segment(self, seq32: int, ack32: int, flags: int, win: int, payload: memoryview, opts: TcpOptions | None,
                now: float) -> None:
        """One arriving segment (RFC 9293 3.10.7 SEGMENT ARRIVES, after demux)."""
        st = self.state
        if st == SYN_SENT:
            self._segment_syn_sent(seq32, ack32, flags, win, opts, now)
            return
        if st == CLOSED:
            return
        if st == TIME_WAIT:
            self._segment_time_wait(seq32, flags, now)
            return
        rcv_nxt = self.rcv_nxt
        seq = unwrap(seq32, rcv_nxt)
        plen = len(payload)
        rcv_wnd = self.rcv_adv - rcv_nxt
        if rcv_wnd < 0:
            rcv_wnd = 0

        # RST (RFC 5961 3.2): exact match resets, in-window gets a challenge ACK.
        if flags & RST:
            if seq == rcv_nxt:
                self._on_reset()
            elif rcv_nxt <= seq < rcv_nxt + max(rcv_wnd, 1):
                self._challenge_ack(now)
            return

        if flags & SYN:
            if st == SYN_RCVD and seq == self.irs and not flags & ACKF:
                self.send_syn = True   # our SYN-ACK was lost: resend it
                return
            # RFC 5961 4.2: a SYN in a synchronized state gets a challenge ACK.
            self._challenge_ack(now)
            return

        # Sequence number check (RFC 9293 3.10.7.4, first).
        seglen = plen + (1 if flags & FIN else 0)
        if seglen == 0:
            ok = seq == rcv_nxt if rcv_wnd == 0 else rcv_nxt <= seq < rcv_nxt + rcv_wnd
        elif rcv_wnd == 0:
            ok = False
        else:
            end = seq + seglen - 1
            ok = rcv_nxt <= seq < rcv_nxt + rcv_wnd or rcv_nxt <= end < rcv_nxt + rcv_wnd
        if not ok:
            if rcv_wnd == 0 and seq == rcv_nxt and flags & ACKF:
                # Zero window: still take the ACK (RFC 9293 "special allowance"), drop the data.
                payload = payload[:0]
                flags &= ~FIN
                plen = 0
                self.ack_now = True
            else:
                if seglen or now - self.last_oow >= OOW_RATELIMIT:
                    self.last_oow = now
                    self.ack_now = True
                    self.stack.counters["OutOfWindow"] += 1
                return
        # Trim to the window.
        if seq < rcv_nxt:
            cut = rcv_nxt - seq
            payload = payload[cut:]
            plen = len(payload)
            seq = rcv_nxt
        limit = rcv_nxt + rcv_wnd
        if seq + plen > limit:
            payload = payload[:limit - seq]
            plen = len(payload)
            flags &= ~FIN

        if not flags & ACKF:
            return
        self.last_rx = now
        ack = unwrap(ack32, self.snd_una)

        if st == SYN_RCVD:
            if not (self.snd_una < ack <= self.snd_max):
                self._send_rst_seq(ack32)
                return
            self._established_from_syn_rcvd(ack, win, seq, now)
            st = self.state
        blocks = opts.sack if opts is not None and self.sack_ok and opts.sack else None
        if not self._process_ack(ack, win, seq, plen, flags, now, blocks):
            return
        st = self.state
        if st == CLOSED:
            return
        fin_acked = self.fin_queued and self.snd_una > self.buf_seq + len(self.sndbuf)
        if st == FIN_WAIT_1 and fin_acked:
            self.state = st = FIN_WAIT_2
            self.close_at = now + FIN_WAIT_2_TIMEOUT
        elif st == CLOSING and fin_acked:
            self._enter_time_wait(now)
            return
        elif st == LAST_ACK and fin_acked:
            self._destroy()
            return

        if plen and st in _RECEIVING:
            self._receive_data(seq, payload, now)
            if self.state == CLOSED:
                return
        if flags & FIN and st not in (CLOSE_WAIT, CLOSING, LAST_ACK):
            fin_seq = seq + plen
            if fin_seq == self.rcv_nxt:
                self._on_fin(now)
            elif fin_seq > self.rcv_nxt:
                self.peer_fin = fin_seq
                self.ack_now = True

    def _segment_time_wait(self, seq32: int, flags: int, now: float) -> None:
        """TIME_WAIT: ACK a retransmitted FIN and restart the 2*MSL timer; an
        RST ends it early (Linux's default, tcp_rfc1337 = 0).  A new SYN is
        the stack's to judge (it may reopen the pair)."""
        seq = unwrap(seq32, self.rcv_nxt)
        if flags & RST:
            if seq == self.rcv_nxt:
                self._destroy()
            return
        if flags & FIN and seq < self.rcv_nxt:
            self.ack_now = True
            self.close_at = now + TIME_WAIT_LEN
        elif now - self.last_oow >= OOW_RATELIMIT:
            self.last_oow = now
            self.ack_now = True

    def _segment_syn_sent(self, seq32: int, ack32: int, flags: int, win: int, opts: TcpOptions | None,
                          now: float) -> None:
        ack = unwrap(ack32, self.snd_una)
        if flags & ACKF and ack != self.iss + 1:
            if not flags & RST:
                self._send_rst_seq(ack32)
            return
        if flags & RST:
            if flags & ACKF:
                self.error = "refused"
                self.stack.counters["AttemptFails"] += 1
                self._die()
            return
        if not flags & SYN:
            return
        self.irs = seq32
        self.rcv_nxt = seq32 + 1
        self._take_syn_options(opts or TcpOptions(), win)
        if not flags & ACKF:
            # Simultaneous open: SYN_RCVD, our SYN goes out again with the ACK.
            self.passive = False
            self.state = SYN_RCVD
            self.send_syn = True
            return
        self.snd_una = ack
        self.snd_wl1 = seq32
        self.snd_wl2 = ack
        self._rcv_window_field()
        if self.rtt_seq is not None and not self.syn_retransmitted:
            self.rtt.sample(now - self.rtt_time)
        elif self.syn_retransmitted:
            self.rtt.fallback()
        self.rtt_seq = None
        self.rto_at = None
        self.retries = 0
        self.last_rx = now
        self.state = FIN_WAIT_1 if self.fin_queued else ESTABLISHED
        self.ack_now = True
        on_connect = getattr(self.app, "on_connect", None)
        if on_connect is not None:
            self._call(on_connect)

    def _established_from_syn_rcvd(self, ack: int, win: int, seq: int, now: float) -> None:
        self.snd_una = ack
        self.snd_wnd = win << self.snd_wscale
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if self.rtt_seq is not None and not self.syn_retransmitted:
            self.rtt.sample(now - self.rtt_time)
        elif self.syn_retransmitted:
            self.rtt.fallback()
        self.rtt_seq = None
        self.rto_at = None
        self.retries = 0
        self.state = ESTABLISHED
        if self.passive:
            self.stack._accept(self)

    def _process_ack(self, ack: int, win: int, seq: int, plen: int, flags: int, now: float,
                     blocks: list[tuple[int, int]] | None = None) -> bool:
        """RFC 9293 3.10.7.4 fifth (the ACK field) with RFC 5961 5.2's
        bounds; False when the segment is to be dropped."""
        snd_una = self.snd_una
        if ack > self.snd_max:
            self.ack_now = True
            return False
        if ack < snd_una - self.max_snd_wnd:
            self.ack_now = True
            return False
        self.probes_out = 0
        # window update (SND.WL1/WL2 guard against old segments)
        wnd = win << self.snd_wscale
        window_changed = False
        if seq > self.snd_wl1 or (seq == self.snd_wl1 and ack >= self.snd_wl2):
            if wnd != self.snd_wnd:
                window_changed = True
                if wnd > self.snd_wnd:
                    self.stack._mark(self)
                self.snd_wnd = wnd
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        self.retries = 0 if ack > snd_una else self.retries
        if ack > snd_una:
            self._new_ack(ack, now)
        new_sack = False
        if blocks:
            una = self.snd_una
            smax = self.snd_max
            for left32, right32 in blocks:
                left = unwrap(left32, una)
                right = unwrap(right32, una)
                if una <= left < right <= smax and self.scoreboard.add(left, right):
                    new_sack = True
        if new_sack and self.rxt_log:
            self._lost_retransmits(now)
        if self.sack_ok:
            # RFC 6675's duplicate ACK: it must bring new SACK information
            if ack == snd_una and new_sack and plen == 0 and not flags & (FIN | SYN) and self.snd_max > snd_una:
                self.dupacks += 1
            if self.in_recovery:
                self.stack._mark(self)
            elif self.snd_una >= self.recover and (
                    self.dupacks >= 3 or (self.scoreboard and self.scoreboard.is_lost(self.snd_una, self.mss))):
                self._enter_sack_recovery(now)
        elif (ack == snd_una and plen == 0 and not flags & (FIN | SYN) and not window_changed
              and self.snd_max > snd_una):
            self._dupack(now)
        return True

    def _lost_retransmits(self, now: float) -> None:
        """Resent holes still missing more than an RTT (and a quarter) after
        they went out, while newer data keeps arriving: lost again.  The RTT
        is that of the newest data delivered (sent during this recovery, so
        unambiguous), which includes the queue that built up; twice SRTT
        until there is one."""
        una = self.snd_una
        sb = self.scoreboard
        edge = max(una, sb.ranges[-1][1]) if sb.ranges else una
        log = self.rec_sent
        sent_at = None
        while log and log[0][0] <= edge:
            sent_at = log.popleft()[1]
        if sent_at is not None:
            self.rec_rtt = now - sent_at
        if self.rec_rtt is not None:
            horizon = now - self.rec_rtt * 1.25 - 0.001
        else:
            horizon = now - 2 * (self.rtt.srtt or MIN_RTO)   # SRTT may predate the queue
        keep = []
        for start, end, when in self.rxt_log:
            if end <= una or sb.covers(max(start, una), end):
                continue
            if when < horizon:
                self.relost.append((max(start, una), end))
                self.stack.counters["LostRetransmits"] += 1
            else:
                keep.append((start, end, when))
        self.rxt_log = keep

    def _enter_sack_recovery(self, now: float) -> None:
        """RFC 6675 5 (4): ssthresh as the controller says, cwnd = ssthresh,
        then as much as the pipe allows, holes first."""
        self.cc.on_congestion(self, now)
        self.recover = self.snd_max
        self.cwnd = self.ssthresh
        self.in_recovery = True
        self.high_rxt = self.snd_una
        self.rxt_log = []
        self.relost = []
        self.rec_sent.clear()
        self.rec_rtt = None
        self.sent_log.clear()
        self.rtt_seq = None
        self.stack.counters["FastRetrans"] += 1
        self.stack._mark(self)

    def _new_ack(self, ack: int, now: float) -> None:
        snd_una = self.snd_una
        acked = ack - snd_una
        flight = self.snd_max - snd_una
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        if self.rtt_seq is not None and ack >= self.rtt_seq:
            self.rtt.sample(now - self.rtt_time)
            self.rtt_seq = None
        log = self.sent_log
        if log:
            sent_at = None
            while log and log[0][0] <= ack:
                sent_at = log.popleft()[1]
            if sent_at is not None and not self.in_recovery:
                self.cc.on_rtt_sample(self, now - sent_at, ack, self.snd_max)
        self.bytes_sent += acked
        if self.scoreboard:
            self.scoreboard.prune(ack)
        if self.in_recovery:
            if self.high_rxt < ack:
                self.high_rxt = ack
            if ack >= self.recover:
                # full ACK (RFC 6582 3.2 step 3): deflate to ssthresh
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(self.snd_max - ack, self.mss) + self.mss)
            elif self.sack_ok:
                self.rto_at = now + self.rtt.rto    # the pipe decides what goes next
            else:
                # partial ACK: retransmit the next hole, deflate by what was acked
                self.retx_head = True
                self.cwnd = max(self.cwnd - acked + (self.mss if acked >= self.mss else 0), self.mss)
                self.rto_at = now + self.rtt.rto
        elif flight + self.mss >= self.cwnd or self.cwnd < self.ssthresh and flight * 2 >= self.cwnd:
            self.cc.on_ack(self, acked, now)
        self.dupacks = 0
        # the send buffer's acknowledged head
        consumed = ack - self.buf_seq
        buflen = len(self.sndbuf)
        if consumed > buflen:
            consumed = buflen      # the rest is SYN/FIN sequence space
        if consumed > 65536 and consumed * 2 >= buflen:
            del self.sndbuf[:consumed]
            self.buf_seq += consumed
        if ack >= self.snd_max:
            self.rto_at = None
            self.persist = False
        elif not self.in_recovery or self.rto_at is None:
            self.rto_at = now + self.rtt.rto
        self.stack._mark(self)
        if self.app is not None and not self.fin_queued and self.send_queue < SEND_LOWAT:
            on_writable = getattr(self.app, "on_writable", None)
            if on_writable is not None:
                self._call(on_writable)

    def _dupack(self, now: float) -> None:
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss          # RFC 6582 3.2 step 4: inflate
            self.stack._mark(self)
        elif self.dupacks == 3 and self.snd_una > self.recover - 1:
            # fast retransmit (RFC 6582 3.2 step 2; recover guards against
            # a second reduction for losses of the same window)
            self.cc.on_congestion(self, now)
            self.recover = self.snd_max
            self.cwnd = self.ssthresh + 3 * self.mss
            self.in_recovery = True
            self.retx_head = True
            self.sent_log.clear()
            self.rtt_seq = None            # Karn: the timed segment may be the lost one
            self.stack.counters["FastRetrans"] += 1
            self.stack._mark(self)

    def _receive_data(self, seq: int, payload: memoryview, now: float) -> None:
        if seq == self.rcv_nxt:
            data = bytes(payload)
            self.rcv_nxt += len(data)
            self.bytes_received += len(data)
            filled = False
            if self.ooo:
                filled = True
                self.dupacks_owed = 0     # superseded by the ACK of the filled hole
                data = self._drain_ooo(data)
            self._deliver(data)
            if self.state == CLOSED:
                return
            if self.peer_fin is not None and self.peer_fin == self.rcv_nxt:
                self._on_fin(now)
                return
            self.unacked += 1
            # every second segment, or more than a full one (a GSO
            # super-segment from the gateway: Linux's "more than one rcv_mss")
            if filled or self.unacked >= 2 or len(payload) > self.mss_local:
                self.ack_now = True
            elif self.delack_at is None:
                self.delack_at = now + DELACK
        else:
            # one duplicate ACK per out-of-order segment (RFC 5681 4.2), even
            # when several arrive before the next output(): the sender's
            # fast retransmit counts them
            self._queue_ooo(seq, bytes(payload))
            self.last_ooo = seq
            self.dupacks_owed += 1

    def _queue_ooo(self, seq: int, data: bytes) -> None:
        """Keep an out-of-order segment; the queue stays sorted and without overlaps."""
        ooo = self.ooo
        end = seq + len(data)
        i = 0
        n = len(ooo)
        while i < n and ooo[i][0] + len(ooo[i][1]) <= seq:
            i += 1
        # trim against the neighbours: earlier data wins
        while i < n and data:
            s, d = ooo[i]
            e = s + len(d)
            if e <= seq:
                i += 1
                continue
            if s >= end:
                break
            if s <= seq:
                if e >= end:
                    self.stack.counters["DupSegs"] += 1
                    return
                data = data[e - seq:]
                seq = e
                i += 1
                continue
            # s > seq: keep our part before it as its own piece
            head = data[:s - seq]
            ooo.insert(i, (seq, head))
            self.ooo_bytes += len(head)
            i += 1
            n += 1
            data = data[s - seq:]
            seq = s
        if data:
            ooo.insert(i, (seq, data))
            self.ooo_bytes += len(data)

    def _drain_ooo(self, data: bytes) -> bytes:
        """The in-order data plus whatever the queue now continues with."""
        ooo = self.ooo
        parts = [data]
        while ooo:
            s, d = ooo[0]
            nxt = self.rcv_nxt
            if s > nxt:
                break
            ooo.pop(0)
            self.ooo_bytes -= len(d)
            e = s + len(d)
            if e <= nxt:
                continue
            piece = d[nxt - s:]
            parts.append(piece)
            self.rcv_nxt = e
            self.bytes_received += len(piece)
        return b"".join(parts) if len(parts) > 1 else data

    def _deliver(self, data: bytes) -> None:
        if self.paused or self.app is None:
            self.pending += data
        else:
            self._call(self.app.on_data, data)

    def _on_fin(self, now: float) -> None:
        """The peer's FIN, in order (RFC 9293 3.10.7.4 eighth)."""
        self.rcv_nxt += 1
        self.peer_fin = None
        self.ack_now = True
        st = self.state
        if st == ESTABLISHED:
            self.state = CLOSE_WAIT
        elif st == FIN_WAIT_1:
            fin_acked = self.snd_una > self.buf_seq + len(self.sndbuf)
            if fin_acked:
                self._enter_time_wait(now)
            else:
                self.state = CLOSING
        elif st == FIN_WAIT_2:
            self._enter_time_wait(now)
        self._notify_close()

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self.rto_at = None
        self.delack_at = None
        self.close_at = now + TIME_WAIT_LEN
        self.stack._time_wait(self)

    def _on_reset(self) -> None:
        st = self.state
        if st == SYN_RCVD and self.passive:
            self._destroy()      # back to LISTEN: nothing was accepted
            return
        if st in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2):
            self.stack.counters["EstabResets"] += 1
        self.error = "reset"
        self._die()

    def _challenge_ack(self, now: float) -> None:
        if now - self.last_oow >= OOW_RATELIMIT:
            self.last_oow = now
            self.ack_now = True
            self.stack.counters["ChallengeAcks"] += 1

    def _send_rst_seq(self, seq32: int) -> None:
        self.stack._send_raw(build(self.laddr, self.raddr, self.lport, self.rport, seq32, 0, RST, 0,
                                   self._next_ident()))
        self.stack.counters["OutRsts"] += 1

    # ------------------------------------------------------------ ICMP
    def icmp_error(self, icmp_type: int, code: int, mtu: int, seq32: int, now: float) -> None:
        """An ICMP error quoting one of our segments (tcp_v4_err): a
        "fragmentation needed" lowers the MSS and resends (RFC 1191); any
        error fails a connection still in SYN_SENT, a hard one a half-open
        passive one; otherwise it is only noted (a soft error)."""
        seq = unwrap(seq32, self.snd_una)
        if not self.snd_una <= seq <= self.snd_max:
            self.stack.counters["OutOfWindowIcmps"] += 1
            return
        st = self.state
        if icmp_type == 3 and code == 4:
            if not mtu:
                return
            mss = max(mtu, MIN_PMTU) - 40
            if mss < self.mss:
                self.mss = mss
                self.stack.counters["PmtuUpdates"] += 1
                if self.snd_max > self.snd_una and st not in (SYN_SENT, SYN_RCVD):
                    # tcp_simple_retransmit: resend in the new size, cwnd untouched
                    self.snd_nxt = self.snd_una
                    self.rtt_seq = None
                    self.stack._mark(self)
            return
        name = {3: "unreachable", 11: "time exceeded", 12: "parameter problem"}.get(icmp_type, "icmp")
        fatal = (icmp_type == 3 and code in FATAL_UNREACH) or icmp_type == 12
        if st == SYN_SENT or (st == SYN_RCVD and not self.passive):
            self.error = name
            self.stack.counters["AttemptFails"] += 1
            self._die()
        elif st == SYN_RCVD and fatal:
            self._destroy()
        else:
            self.soft_error = name

    # ------------------------------------------------------------ timers
    def deadline(self) -> float | None:
        d = self.rto_at
        if self.idle_timeout is not None and self.state == ESTABLISHED:
            idle = self.last_rx + self.idle_timeout
            if d is None or idle < d:
                d = idle
        x = self.delack_at
        if x is not None and (d is None or x < d):
            d = x
        x = self.close_at
        if x is not None and (d is None or x < d):
            d = x
        return d

    def on_timer(self, now: float) -> None:
        if self.close_at is not None and self.close_at <= now:
            self._destroy()       # TIME_WAIT over, or FIN_WAIT_2 gave up
            return
        if (self.idle_timeout is not None and self.state == ESTABLISHED
                and self.last_rx + self.idle_timeout <= now):
            self.stack.counters["IdleCloses"] += 1
            self.close()
        if self.delack_at is not None and self.delack_at <= now:
            self.delack_at = None
            if self.unacked:
                self.ack_now = True
        if self.rto_at is not None and self.rto_at <= now:
            self.rto_at = None
            if self.persist:
                self._persist_timeout(now)
            else:
                self._retransmit_timeout(now)

    def _retransmit_timeout(self, now: float) -> None:
        st = self.state
        self.retries += 1
        limit = SYN_RETRIES if st == SYN_SENT else SYNACK_RETRIES if st == SYN_RCVD else DATA_RETRIES
        if self.retries > limit:
            self.error = "timeout"
            if st == SYN_SENT:
                self.stack.counters["AttemptFails"] += 1
            self._die()
            return
        self.rtt.backoff()
        self.rtt_seq = None
        self.retransmits += 1
        self.stack.counters["RetransSegs"] += 1
        if st in (SYN_SENT, SYN_RCVD):
            self.syn_retransmitted = True
            self.send_syn = True
            return
        # RFC 5681 3.1 / RFC 6582 3.2 step 1: slow start from SND.UNA
        self.cc.on_rto(self, now)
        self.recover = self.snd_max
        self.in_recovery = False
        self.dupacks = 0
        self.snd_nxt = self.snd_una
        self.high_rxt = self.snd_una
        self.sent_log.clear()
        # RFC 2018 8: the receiver may have reneged; forget what it SACKed
        self.scoreboard.clear()
        self.retx_head = True      # the head goes out even into a shut window
        self.stack.counters["Timeouts"] += 1

    def _persist_timeout(self, now: float) -> None:
        self.persist_backoff += 1
        self.probes_out += 1
        if self.probes_out > PROBE_RETRIES:
            self.error = "timeout"
            self._die()
            return
        self.send_probe = True

    # ------------------------------------------------------------ transmit
    def _next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def _rcv_window_field(self) -> int:
        """The window field to send now; moves RCV.ADV.  Never shrinks the
        window (RFC 9293 3.8.6.2.2), moves the edge only by at least
        min(buffer/2, MSS) (receiver SWS avoidance, RFC 9293 3.8.6.2.2)."""
        free = self.rcvbuf - len(self.pending) - self.ooo_bytes
        if free < 0:
            free = 0
        nxt = self.rcv_nxt
        right = nxt + free
        adv = self.rcv_adv
        if right < adv + min(self.rcvbuf >> 1, self.mss_local) and adv >= nxt:
            right = adv
        ws = self.rcv_wscale
        field = (right - nxt + (1 << ws) - 1) >> ws
        if field > 65535:
            field = 65535
        edge = nxt + (field << ws)
        if edge > adv:
            self.rcv_adv = edge
        return field

    def emit(self, now: float, out: list[bytes]) -> None:
        """Everything this connection has to send now."""
        st = self.state
        if st == CLOSED:
            return
        if st == SYN_SENT or st == SYN_RCVD:
            if self.send_syn:
                self._emit_syn(now, out)
            return
        sent = False
        win = -1
        if self.in_recovery and self.sack_ok and st in _SENDING:
            win = self._rcv_window_field()
            sent = self._sack_send(now, out, win)
            self.retx_head = False
        if self.retx_head and st in _SENDING:
            win = self._rcv_window_field()
            self._retransmit_head(now, out, win)
            sent = True
        self.retx_head = False
        if st in _SENDING and not (self.in_recovery and self.sack_ok):
            if win < 0:
                win = self._rcv_window_field()
            if self._send_data(now, out, win):
                sent = True
        if self.send_probe:
            self.send_probe = False
            if win < 0:
                win = self._rcv_window_field()
            out.append(build(self.laddr, self.raddr, self.lport, self.rport, self.snd_una - 1, self.rcv_nxt, ACKF,
                             win, self._next_ident()))
            self.stack.counters["OutSegs"] += 1
            self.rto_at = now + min(MAX_RTO, max(MIN_RTO, self.rtt.rto) * (1 << min(self.persist_backoff, 12)))
            sent = True
        owed = self.dupacks_owed
        if owed:
            self.dupacks_owed = 0
            if win < 0:
                win = self._rcv_window_field()
            opts = sack_option(self.ooo, self.last_ooo) if self.sack_ok and self.ooo else b""
            for _ in range(owed):
                out.append(build(self.laddr, self.raddr, self.lport, self.rport, self.snd_nxt, self.rcv_nxt, ACKF,
                                 win, self._next_ident(), b"", opts))
            self.stack.counters["OutSegs"] += owed
            sent = True
        if sent:
            self.ack_now = False
            self.unacked = 0
            self.delack_at = None
        elif self.ack_now:
            if win < 0:
                win = self._rcv_window_field()
            opts = sack_option(self.ooo, self.last_ooo) if self.sack_ok and self.ooo else b""
            out.append(build(self.laddr, self.raddr, self.lport, self.rport, self.snd_nxt, self.rcv_nxt, ACKF, win,
                             self._next_ident(), b"", opts))
            self.stack.counters["OutSegs"] += 1
            self.ack_now = False
            self.unacked = 0
            self.delack_at = None

    def _emit_syn(self, now: float, out: list[bytes]) -> None:
        self.send_syn = False
        if self.state == SYN_SENT:
            flags = SYN
            ack = 0
            opts = syn_options(self.mss_local, self.rcv_wscale, self.sack_enabled)
            win = min(self.rcvbuf, 65535)
        else:
            flags = SYN | ACKF
            ack = self.rcv_nxt
            opts = syn_options(self.mss_local, self.rcv_wscale if self.wscale_ok else None, self.sack_ok)
            win = min(self.rcvbuf, 65535)
            self.rcv_adv = self.rcv_nxt + win
        out.append(build(self.laddr, self.raddr, self.lport, self.rport, self.iss, ack, flags, win, 0, b"", opts))
        self.stack.counters["OutSegs"] += 1
        if not self.syn_retransmitted:
            self.rtt_seq = self.iss + 1
            self.rtt_time = now
        self.rto_at = now + self.rtt.rto

    def _segment(self, seq: int, n: int, fin: bool, win: int) -> bytes:
        off = seq - self.buf_seq
        flags = ACKF | FIN if fin else ACKF
        if not n:
            return build(self.laddr, self.raddr, self.lport, self.rport, seq, self.rcv_nxt, flags, win,
                         self._next_ident())
        if seq + n == self.buf_seq + len(self.sndbuf):
            flags |= PSH
        return build(self.laddr, self.raddr, self.lport, self.rport, seq, self.rcv_nxt, flags, win,
                     self._next_ident(), self.sndbuf[off:off + n])

    def _retransmit_head(self, now: float, out: list[bytes], win: int) -> None:
        seq = self.snd_una
        data_end = self.buf_seq + len(self.sndbuf)
        n = min(self.mss, data_end - seq, self.snd_max - seq)
        if n < 0:
            n = 0
        fin = self.fin_queued and seq + n == data_end and self.snd_max > data_end
        if not n and not fin:
            return
        out.append(self._segment(seq, n, fin, win))
        self.stack.counters["RetransSegs"] += 1
        self.retransmits += 1
        if self.snd_nxt == seq:
            self.snd_nxt = seq + n + fin
        if self.rto_at is None:
            self.rto_at = now + self.rtt.rto

    def _sack_send(self, now: float, out: list[bytes], win: int) -> bool:
        """RFC 6675 5 (4)-(5) during SACK recovery: while cwnd - pipe >= 1
        SMSS, resend the next lost hole, else send new data."""
        sb = self.scoreboard
        mss = self.mss
        data_end = self.buf_seq + len(self.sndbuf)
        counters = self.stack.counters
        sent = 0
        relost = self.relost
        while sent < 256:
            una = self.snd_una
            while relost and (relost[0][1] <= una or sb.covers(max(relost[0][0], una), relost[0][1])):
                relost.pop(0)
            pipe = sb.pipe(una, self.snd_max, self.high_rxt, mss) - sum(e - max(s, una) for s, e in relost)
            if self.cwnd - pipe < mss:
                break
            again = False
            if relost:
                start, end = relost.pop(0)
                start = max(start, una)
                end = min(end, start + mss)
                hole: tuple[int, int] | None = (start, end)
                again = True
            else:
                hole = sb.next_lost(una, self.high_rxt, mss)
                if hole is None and self.high_rxt <= una < self.snd_max:
                    hole = (una, min(una + mss, self.snd_max))   # entered on dupacks alone: the head
            if hole is not None:
                start, end = hole
                n = max(0, min(end, data_end) - start)
                fin = self.fin_queued and start + n == data_end and end > data_end
                out.append(self._segment(start, n, fin, win))
                if not again:
                    self.high_rxt = end
                self.rxt_log.append((start, end, now))
                self.retransmits += 1
                counters["RetransSegs"] += 1
                sent += 1
                continue
            nxt = self.snd_nxt
            if nxt < data_end:
                n = min(mss, data_end - nxt, una + self.snd_wnd - nxt)
                if n <= 0:
                    break
                fin = self.fin_queued and nxt + n == data_end
            elif self.fin_queued and nxt == data_end:
                n = 0
                fin = True
            else:
                break
            out.append(self._segment(nxt, n, fin, win))
            self.snd_nxt = nxt + n + fin
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
            self.rec_sent.append((self.snd_nxt, now))
            counters["OutSegs"] += 1
            sent += 1
        if sent:
            self.last_tx = now
            if self.rto_at is None:
                self.rto_at = now + self.rtt.rto
        return sent > 0

    def _send_data(self, now: float, out: list[bytes], win: int) -> bool:
        """New data (or go-back-N after an RTO) as window and cwnd allow;
        arms the retransmission or persist timer.  True when it sent."""
        data_end = self.buf_seq + len(self.sndbuf)
        nxt = self.snd_nxt
        fin_queued = self.fin_queued
        if nxt >= data_end and (not fin_queued or nxt > data_end):
            return False
        una = self.snd_una
        if una == self.snd_max and self.last_tx is not None and now - self.last_tx > self.rtt.rto:
            # restart after idle (RFC 5681 4.1, Linux's tcp_slow_start_after_idle)
            iw = ccmod.INITIAL_WINDOW_SEGMENTS * self.mss
            if self.cwnd > iw:
                self.cwnd = iw
        wnd = self.snd_wnd if self.snd_wnd < self.cwnd else self.cwnd
        wnd_end = una + wnd
        mss = self.mss
        snd_max = self.snd_max
        sent = 0
        retrans_before = self.retransmits
        counters = self.stack.counters
        scoreboard = self.scoreboard if self.sack_ok else None
        sampling = self.cc.wants_rtt_samples(self)
        if not sampling and self.sent_log:
            self.sent_log.clear()
        while True:
            if scoreboard and nxt < snd_max:
                # a go-back after an RTO skips what the peer SACKed since
                nxt, sacked_from = scoreboard.skip(nxt)
                limit = snd_max if sacked_from is None else sacked_from
            else:
                limit = data_end
            if nxt < data_end:
                n = data_end - nxt
                if n > mss:
                    n = mss
                if nxt + n > limit:
                    n = limit - nxt
                room = wnd_end - nxt
                if room < n:
                    # window-limited (sender SWS avoidance, RFC 9293 3.8.6.2.1):
                    # a short segment only when nothing is in flight or it
                    # fills half the largest window the peer offered
                    if room <= 0 or (nxt > una and room < self.max_snd_wnd >> 1):
                        break
                    n = room
                fin = fin_queued and nxt + n == data_end
            elif fin_queued and nxt == data_end:
                n = 0
                fin = True
            else:
                break
            out.append(self._segment(nxt, n, fin, win))
            if nxt < snd_max:
                # Linux's OutSegs leaves out segments with only retransmitted data
                counters["RetransSegs"] += 1
                self.retransmits += 1
            else:
                if self.rtt_seq is None:
                    self.rtt_seq = nxt + n
                    self.rtt_time = now
                if sampling:
                    self.sent_log.append((nxt + n, now))
            nxt += n + fin
            sent += 1
            if fin:
                break
        counters["OutSegs"] += sent - (self.retransmits - retrans_before)
        if sent:
            self.last_tx = now
        self.snd_nxt = nxt
        if nxt > snd_max:
            self.snd_max = nxt
        if sent:
            if self.persist:
                self.persist = False
                self.persist_backoff = 0
                self.rto_at = None
            if self.rto_at is None:
                self.rto_at = now + self.rtt.rto
        elif self.snd_max > una:
            if self.rto_at is None:
                self.rto_at = now + self.rtt.rto
        elif self.rto_at is None:
            # data waits, nothing is in flight, the window is shut: persist
            self.persist = True
            self.rto_at = now + min(MAX_RTO, max(MIN_RTO, self.rtt.rto) * (1 << min(self.persist_backoff, 12)))
        return sent > 0

    # ------------------------------------------------------------ teardown
    def _call(self, fn: Callable[..., object], *args: object) -> None:
        """An application callback; one that raises aborts the connection
        (counted) instead of escaping into the packet loop."""
        try:
            fn(self, *args)
        except Exception as exc:  # noqa: BLE001 - the application's bug must not stop the stack
            self.stack.counters["AppErrors"] += 1
            self.stack.last_app_error = repr(exc)
            if self.state != CLOSED:
                self.abort()

    def _notify_close(self) -> None:
        if not self.close_notified:
            self.close_notified = True
            if self.app is not None:
                self._call(self.app.on_close)

    def _die(self) -> None:
        """Gone by RST or timeout: tell the app, forget the connection."""
        self._destroy()
        self._notify_close()

    def _destroy(self) -> None:
        self.state = CLOSED
        self.rto_at = self.delack_at = self.close_at = None
        self.stack._forget(self)

    def info(self) -> dict[str, object]:
        """A row of the connection table (what `ss -ti` would show)."""
        from pyfw.stack.stack import format_addr
        return {
            "state": self.state,
            "local": f"{format_addr(self.laddr)}:{self.lport}",
            "remote": f"{format_addr(self.raddr)}:{self.rport}",
            "mss": self.mss,
            "cwnd": self.cwnd,
            "ssthresh": self.ssthresh if self.ssthresh < 1 << 30 else None,
            "srtt_ms": None if self.rtt.srtt is None else round(self.rtt.srtt * 1000, 3),
            "rto_ms": round(self.rtt.rto * 1000, 1),
            "snd_wnd": self.snd_wnd,
            "send_queue": self.send_queue,
            "bytes_acked": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "retransmits": self.retransmits,
            "cc": self.cc.name,
        }
