"""TCP connection tracking as net/netfilter/nf_conntrack_proto_tcp.c does
it: the state table tcp_conntracks[dir][event][state], window tracking
(td_end, td_maxend, td_maxwin, td_scale; SACK), pick-up of established
connections (nf_conntrack_tcp_loose), be_liberal, RST checks, the flag
validity table and checksum check of tcp_error, retransmission limits and
the per-state timeouts.

Sequence arithmetic is modulo 2**32 (before()/after() compare as s32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pyfw.engine.api import IPS_ASSURED, IPS_CONFIRMED, IPS_FIXED_TIMEOUT, IPS_SEEN_REPLY
from pyfw.engine.conntrack.table import CT_ACCEPT, CT_INVALID, CT_REPEAT, IPPROTO_TCP, checksum_ok
from pyfw.engine.conntrack.timeouts import (
    TCP_CONNTRACK_CLOSE,
    TCP_CONNTRACK_CLOSE_WAIT,
    TCP_CONNTRACK_ESTABLISHED,
    TCP_CONNTRACK_FIN_WAIT,
    TCP_CONNTRACK_IGNORE,
    TCP_CONNTRACK_LAST_ACK,
    TCP_CONNTRACK_MAX,
    TCP_CONNTRACK_NONE,
    TCP_CONNTRACK_RETRANS,
    TCP_CONNTRACK_SYN_RECV,
    TCP_CONNTRACK_SYN_SENT,
    TCP_CONNTRACK_SYN_SENT2,
    TCP_CONNTRACK_TIME_WAIT,
    TCP_CONNTRACK_UNACK,
)

if TYPE_CHECKING:
    from pyfw.engine.conntrack import Conntrack
    from pyfw.engine.conntrack.conn import Conn
    from pyfw.engine.conntrack.timeouts import CtConfig
    from pyfw.engine.packet import Packet

STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
               "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")

# enum tcp_bit_set: the event index
TCP_SYN_SET: Final = 0
TCP_SYNACK_SET: Final = 1
TCP_FIN_SET: Final = 2
TCP_ACK_SET: Final = 3
TCP_RST_SET: Final = 4
TCP_NONE_SET: Final = 5

# ip_ct_tcp_state.flags
IP_CT_TCP_FLAG_WINDOW_SCALE: Final = 0x01
IP_CT_TCP_FLAG_SACK_PERM: Final = 0x02
IP_CT_TCP_FLAG_CLOSE_INIT: Final = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL: Final = 0x08
IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED: Final = 0x10
IP_CT_TCP_FLAG_MAXACK_SET: Final = 0x20
IP_CT_EXP_CHALLENGE_ACK: Final = 0x40
IP_CT_TCP_SIMULTANEOUS_OPEN: Final = 0x80

# tcp_in_window results
NFCT_TCP_IGNORE: Final = 0
NFCT_TCP_INVALID: Final = 1
NFCT_TCP_ACCEPT: Final = 2

TH_FIN: Final = 1
TH_SYN: Final = 2
TH_RST: Final = 4
TH_PSH: Final = 8
TH_ACK: Final = 16
TH_URG: Final = 32
TH_ECE: Final = 64
TH_CWR: Final = 128

sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2 = range(10)
sIV = TCP_CONNTRACK_MAX
sIG = TCP_CONNTRACK_IGNORE

#: tcp_conntracks[dir][index][state] (columns: sNO sSS sSR sES sFW sCW sLA sTW sCL sS2)
TCP_CONNTRACKS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (   # ORIGINAL
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),  # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
    (   # REPLY
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),  # syn
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
)

# tcp_valid_flags: FIN SYN RST ACK URG combinations that are not an error
# (PSH, ECE and CWR are masked off first)
_VALID = {TH_SYN, TH_SYN | TH_URG, TH_SYN | TH_ACK, TH_RST, TH_RST | TH_ACK, TH_FIN | TH_ACK,
          TH_FIN | TH_ACK | TH_URG, TH_ACK, TH_ACK | TH_URG}
TCP_VALID_FLAGS: tuple[bool, ...] = tuple(i in _VALID for i in range(0x40))

MAXACKWINCONST: Final = 66000
# tcp_ack_fast's connections: confirmed, answered and assured (so the
# segment changes no status bit)
_LANE_STATUS = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED
_LANE_WANT = _LANE_STATUS
TCP_MAX_WSCALE: Final = 14
_M: Final = 0xFFFFFFFF


def before(a: int, b: int) -> bool:
    """(s32)(a - b) < 0"""
    return ((a - b) & _M) >= 0x80000000


def after(a: int, b: int) -> bool:
    return ((b - a) & _M) >= 0x80000000


@dataclass(slots=True, init=False)
class TcpPeer:
    """struct ip_ct_tcp_state: what one side has sent."""

    td_end: int      # max(seq + len) seen
    td_maxend: int   # max(ack + max(win, 1)) seen from the other side
    td_maxwin: int   # max(win) seen
    td_maxack: int   # max(ack) seen
    td_scale: int    # window scale factor
    flags: int

    # (written out, not generated, here and in TcpState: mypyc compiles
    # these; each new TCP connection makes one TcpState and two peers)
    def __init__(self, td_end: int = 0, td_maxend: int = 0, td_maxwin: int = 0, td_maxack: int = 0,
                 td_scale: int = 0, flags: int = 0) -> None:
        self.td_end = td_end
        self.td_maxend = td_maxend
        self.td_maxwin = td_maxwin
        self.td_maxack = td_maxack
        self.td_scale = td_scale
        self.flags = flags


@dataclass(slots=True, init=False)
class TcpState:
    """struct ip_ct_tcp: Conn.proto_state of a TCP connection."""

    state: int
    seen: list[TcpPeer]
    last_dir: int
    retrans: int
    last_index: int
    last_seq: int
    last_ack: int
    last_end: int
    last_win: int
    last_wscale: int
    last_flags: int

    def __init__(self, state: int = TCP_CONNTRACK_NONE, seen: list[TcpPeer] | None = None, last_dir: int = 0,
                 retrans: int = 0, last_index: int = 0, last_seq: int = 0, last_ack: int = 0, last_end: int = 0,
                 last_win: int = 0, last_wscale: int = 0, last_flags: int = 0) -> None:
        self.state = state
        self.seen = [TcpPeer(), TcpPeer()] if seen is None else seen
        self.last_dir = last_dir
        self.retrans = retrans
        self.last_index = last_index
        self.last_seq = last_seq
        self.last_ack = last_ack
        self.last_end = last_end
        self.last_win = last_win
        self.last_wscale = last_wscale
        self.last_flags = last_flags


def get_conntrack_index(flags: int) -> int:
    if flags & TH_RST:
        return TCP_RST_SET
    if flags & TH_SYN:
        return TCP_SYNACK_SET if flags & TH_ACK else TCP_SYN_SET
    if flags & TH_FIN:
        return TCP_FIN_SET
    if flags & TH_ACK:
        return TCP_ACK_SET
    return TCP_NONE_SET


#: get_conntrack_index of every flags byte (looked up per segment)
_INDEX: tuple[int, ...] = tuple(get_conntrack_index(f) for f in range(256))


def segment_seq_plus_len(seq: int, length: int, dataoff: int, doff: int, flags: int) -> int:
    return (seq + length - dataoff - doff + (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)) & _M


def tcp_options(data: bytearray | bytes, off: int, doff: int, state: TcpPeer) -> None:
    """Window scale and SACK-permitted options (tcp_options()); no options
    at all leaves the peer's scale and flags as they were."""
    length = doff - 20
    if not length:
        return
    ptr = off + 20
    state.td_scale = 0
    state.flags &= IP_CT_TCP_FLAG_BE_LIBERAL
    while length > 0:
        opcode = data[ptr]
        ptr += 1
        if opcode == 0:  # EOL
            return
        if opcode == 1:  # NOP
            length -= 1
            continue
        if length < 2:
            return
        opsize = data[ptr]
        ptr += 1
        if opsize < 2 or opsize > length:
            return
        if opcode == 4 and opsize == 2:  # SACK permitted
            state.flags |= IP_CT_TCP_FLAG_SACK_PERM
        elif opcode == 3 and opsize == 3:  # window scale
            state.td_scale = min(data[ptr], TCP_MAX_WSCALE)
            state.flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
        ptr += opsize - 2
        length -= opsize


def tcp_sack(data: bytearray | bytes, off: int, doff: int, sack: int) -> int:
    """The highest right edge of the first SACK option's blocks, if above
    `sack` (tcp_sack())."""
    length = doff - 20
    if not length:
        return sack
    ptr = off + 20
    if length == 12 and data[ptr:ptr + 4] == b"\x01\x01\x08\x0a":  # timestamp only
        return sack
    while length > 0:
        opcode = data[ptr]
        ptr += 1
        if opcode == 0:
            return sack
        if opcode == 1:
            length -= 1
            continue
        if length < 2:
            return sack
        opsize = data[ptr]
        ptr += 1
        if opsize < 2 or opsize > length:
            return sack
        if opcode == 5 and opsize >= 10 and (opsize - 2) % 8 == 0:
            for i in range(0, opsize - 2, 8):
                q = ptr + i + 4
                tmp = data[q] << 24 | data[q + 1] << 16 | data[q + 2] << 8 | data[q + 3]
                if after(tmp, sack):
                    sack = tmp
            return sack
        ptr += opsize - 2
        length -= opsize
    return sack


def _maxackwindow(sender: TcpPeer) -> int:
    return sender.td_maxwin if sender.td_maxwin > MAXACKWINCONST else MAXACKWINCONST


def _init_sender(sender: TcpPeer, receiver: TcpPeer, pkt: Packet, end: int, win: int, direction: int) -> None:
    """tcp_init_sender: a SYN/ACK answering a SYN, or a SYN in reply
    direction (simultaneous open)."""
    sender.td_end = sender.td_maxend = end
    sender.td_maxwin = win or 1
    tcp_options(pkt.data, pkt.ihl, pkt.tcp_doff, sender)
    # RFC 1323: both sides must send the window scale option to enable it
    if direction == 1 and not (sender.flags & IP_CT_TCP_FLAG_WINDOW_SCALE
                               and receiver.flags & IP_CT_TCP_FLAG_WINDOW_SCALE):
        sender.td_scale = 0
        receiver.td_scale = 0


def _log_invalid(ctk: Conntrack, sender: TcpPeer, ret: int) -> int:
    if sender.flags & IP_CT_TCP_FLAG_BE_LIBERAL or ctk.cfg.tcp_be_liberal:
        return NFCT_TCP_ACCEPT
    return ret


def tcp_in_window(ctk: Conntrack, st: TcpState, direction: int, index: int, pkt: Packet) -> int:
    sender = st.seen[direction]
    receiver = st.seen[1 - direction]
    flags = pkt.data[pkt.ihl + 13]
    seq = pkt.tcp_seq
    ack = sack = pkt.tcp_ack
    win_raw = pkt.tcp_win
    win = win_raw
    # (segment_seq_plus_len, and after()/before() below, written out: this
    # runs for every tracked TCP segment)
    end = (seq + pkt.tot_len - pkt.ihl - pkt.tcp_doff + (flags & TH_SYN and 1) + (flags & TH_FIN and 1)) & _M
    if receiver.flags & IP_CT_TCP_FLAG_SACK_PERM:
        sack = tcp_sack(pkt.data, pkt.ihl, pkt.tcp_doff, sack)
    # (no NAT sequence adjustment: that needs a helper)

    if sender.td_maxwin == 0:
        if flags & TH_SYN:
            _init_sender(sender, receiver, pkt, end, win, direction)
            if not flags & TH_ACK:
                return NFCT_TCP_ACCEPT  # simultaneous open
        else:
            # mid-connection: the history is lost, take what the packet says
            sender.td_end = end
            swin = (win << sender.td_scale) & _M
            sender.td_maxwin = swin or 1
            sender.td_maxend = (end + sender.td_maxwin) & _M
            if receiver.td_maxwin == 0:
                receiver.td_end = receiver.td_maxend = sack
            elif sack == (receiver.td_end + 1) & _M:
                receiver.td_end = (receiver.td_end + 1) & _M  # reply to a keepalive
    elif (flags & TH_SYN and ((sender.td_end - end) & _M) >= 0x80000000
          and st.state in (TCP_CONNTRACK_SYN_SENT, TCP_CONNTRACK_SYN_RECV)):
        # a re-initialised connection (RFC 793): start this direction again
        _init_sender(sender, receiver, pkt, end, win, direction)
        if direction == 1 and not flags & TH_ACK:
            return NFCT_TCP_ACCEPT

    if not flags & TH_ACK:
        ack = sack = receiver.td_end
    elif flags & (TH_ACK | TH_RST) == TH_ACK | TH_RST and ack == 0:
        ack = sack = receiver.td_end  # broken stacks: RST+ACK with ack 0

    if flags & TH_RST and seq == 0 and st.state == TCP_CONNTRACK_SYN_SENT:
        seq = end = sender.td_end  # RST answering a SYN

    if not ((seq - ((sender.td_maxend + 1) & _M)) & _M) >= 0x80000000:
        overshot = (end - sender.td_maxend + 1) & _M
        ack_ok = ((((receiver.td_end - _maxackwindow(sender) - 1) & _M) - sack) & _M) >= 0x80000000
        in_recv_win = bool(receiver.td_maxwin) and \
            ((((sender.td_end - receiver.td_maxwin - 1) & _M) - end) & _M) >= 0x80000000
        if (in_recv_win and ack_ok and overshot <= receiver.td_maxwin
                and ((sack - ((receiver.td_end + 1) & _M)) & _M) >= 0x80000000):
            # more bytes than the window allows: note them so the ACK for
            # them passes later
            sender.td_end = end
            sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
            return _log_invalid(ctk, sender, NFCT_TCP_IGNORE)
        return _log_invalid(ctk, sender, NFCT_TCP_INVALID)  # SEQ over upper bound

    if not ((sack - ((receiver.td_end + 1) & _M)) & _M) >= 0x80000000:
        return _log_invalid(ctk, sender, NFCT_TCP_INVALID)  # ACK over upper bound

    in_recv_win = not receiver.td_maxwin or ((((sender.td_end - receiver.td_maxwin - 1) & _M) - end) & _M) >= 0x80000000
    if not in_recv_win:
        return _log_invalid(ctk, sender, NFCT_TCP_IGNORE)  # SEQ under lower bound
    if not ((((receiver.td_end - _maxackwindow(sender) - 1) & _M) - sack) & _M) >= 0x80000000:
        return _log_invalid(ctk, sender, NFCT_TCP_IGNORE)  # ACK under lower bound

    if not flags & TH_SYN:
        win = (win << sender.td_scale) & _M

    swin = (win + (sack - ack)) & _M
    if sender.td_maxwin < swin:
        sender.td_maxwin = swin
    if ((sender.td_end - end) & _M) >= 0x80000000:
        sender.td_end = end
        sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if flags & TH_ACK:
        if not sender.flags & IP_CT_TCP_FLAG_MAXACK_SET:
            sender.td_maxack = ack
            sender.flags |= IP_CT_TCP_FLAG_MAXACK_SET
        elif ((sender.td_maxack - ack) & _M) >= 0x80000000:
            sender.td_maxack = ack

    if receiver.td_maxwin != 0 and ((sender.td_maxend - end) & _M) >= 0x80000000:
        receiver.td_maxwin = (receiver.td_maxwin + end - sender.td_maxend) & _M
    if ((((receiver.td_maxend - 1) & _M) - ((sack + win) & _M)) & _M) >= 0x80000000:
        receiver.td_maxend = (sack + win) & _M
        if win == 0:
            receiver.td_maxend = (receiver.td_maxend + 1) & _M
    if ack == receiver.td_end:
        receiver.flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED

    if index == TCP_ACK_SET:
        if (st.last_dir == direction and st.last_seq == seq and st.last_ack == ack
                and st.last_end == end and st.last_win == win_raw):
            st.retrans += 1
        else:
            st.last_dir = direction
            st.last_seq = seq
            st.last_ack = ack
            st.last_end = end
            st.last_win = win_raw
            st.retrans = 0
    return NFCT_TCP_ACCEPT


def tcp_ack_fast(cfg: CtConfig, conn: Conn, st: TcpState, direction: int, seq: int, ack: int, win_raw: int,
                 end: int, tot_len: int, now: float, sackless: bool) -> bool:
    """The overwhelmingly common segment, in a few comparisons: an in-window
    ACK (no SYN, FIN or RST) of an ESTABLISHED, ASSURED connection that has
    seen its reply.  Does exactly what tcp_packet (tcp_in_window, the
    timeout, the accounting) does with such a segment and returns True
    (tcp_packet's CT_ACCEPT, status and state unchanged); returns False,
    having changed nothing, for anything else (tcp_packet then decides).

    The caller has checked what tcp_packet checks before the state machine
    (the header length, the checksum, the flags) and gives `end`
    (seq + payload length) and `sackless`: the segment carries no SACK
    block (no options, or only the timestamp), so sack == ack."""
    status = conn.status
    if st.state != TCP_CONNTRACK_ESTABLISHED or status & _LANE_STATUS != _LANE_WANT:
        return False
    sender = st.seen[direction]
    receiver = st.seen[1 - direction]
    if not sackless and receiver.flags & IP_CT_TCP_FLAG_SACK_PERM:
        return False
    s_maxwin = sender.td_maxwin
    if not s_maxwin:
        return False  # (picked up mid-stream: tcp_in_window takes the packet's word)
    r_end = receiver.td_end
    r_maxwin = receiver.td_maxwin
    s_end = sender.td_end
    s_maxend = sender.td_maxend
    # tcp_in_window's four bounds, before() written out ((a - b) mod 2**32
    # from the top half: a before b)
    if (((seq - s_maxend - 1) & 0xFFFFFFFF) < 0x80000000               # seq over the upper bound
            or ((ack - r_end - 1) & 0xFFFFFFFF) < 0x80000000           # ack over the upper bound
            or (r_maxwin and ((s_end - r_maxwin - 1 - end) & 0xFFFFFFFF) < 0x80000000)  # seq under
            or ((r_end - (s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST) - 1 - ack) & 0xFFFFFFFF)
            < 0x80000000):                                              # ack under the lower bound
        return False
    win = (win_raw << sender.td_scale) & 0xFFFFFFFF
    if s_maxwin < win:
        sender.td_maxwin = win
    s_flags = sender.flags
    if ((s_end - end) & 0xFFFFFFFF) >= 0x80000000:
        sender.td_end = end
        s_flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if not s_flags & IP_CT_TCP_FLAG_MAXACK_SET:
        sender.td_maxack = ack
        s_flags |= IP_CT_TCP_FLAG_MAXACK_SET
    elif ((sender.td_maxack - ack) & 0xFFFFFFFF) >= 0x80000000:
        sender.td_maxack = ack
    sender.flags = s_flags
    if r_maxwin and ((s_maxend - end) & 0xFFFFFFFF) >= 0x80000000:
        receiver.td_maxwin = (r_maxwin + end - s_maxend) & 0xFFFFFFFF
    edge = (ack + win) & 0xFFFFFFFF
    if ((receiver.td_maxend - 1 - edge) & 0xFFFFFFFF) >= 0x80000000:
        receiver.td_maxend = edge if win else (edge + 1) & 0xFFFFFFFF
    r_flags = receiver.flags
    if ack == r_end:
        r_flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
        receiver.flags = r_flags
    if (st.last_dir == direction and st.last_seq == seq and st.last_ack == ack
            and st.last_end == end and st.last_win == win_raw):
        retrans = st.retrans = st.retrans + 1
    else:
        st.last_seq = seq
        st.last_ack = ack
        st.last_end = end
        st.last_win = win_raw
        retrans = st.retrans = 0
    # tcp_packet from "in window" on (the state stays ESTABLISHED); last_win is win_raw now
    st.last_index = TCP_ACK_SET
    st.last_dir = direction
    t = cfg.tcp_timeouts
    timeout = t[TCP_CONNTRACK_ESTABLISHED]
    if retrans >= cfg.tcp_max_retrans and timeout > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    elif (s_flags | r_flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED and timeout > t[TCP_CONNTRACK_UNACK]:
        timeout = t[TCP_CONNTRACK_UNACK]
    elif not win_raw and timeout > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    if not status & IPS_FIXED_TIMEOUT:
        conn.timeout_at = timeout + now
    acct = conn.acct
    if acct is not None:
        acct[2 * direction] += 1
        acct[2 * direction + 1] += tot_len
    return True


def tcp_error(ctk: Conntrack, pkt: Packet, prerouting: bool) -> bool:
    """Truncated header, bad checksum (PREROUTING, nf_conntrack_checksum) or
    an invalid flag combination."""
    doff = pkt.tcp_doff
    if doff < 20 or pkt.tot_len - pkt.ihl < doff:
        return True
    if prerouting and ctk.cfg.checksum and not checksum_ok(pkt.data, pkt.tot_len, pkt.src, pkt.dst, pkt.ihl,
                                                            IPPROTO_TCP):
        return True
    flags = pkt.data[pkt.ihl + 13] & ~(TH_ECE | TH_CWR | TH_PSH)
    return not TCP_VALID_FLAGS[flags]


def tcp_new(ctk: Conntrack, conn: Conn, pkt: Packet) -> bool:
    """A first packet: SYN, or (nf_conntrack_tcp_loose) a mid-stream ACK."""
    flags = pkt.data[pkt.ihl + 13]
    new_state = TCP_CONNTRACKS[0][_INDEX[flags]][TCP_CONNTRACK_NONE]
    if new_state >= TCP_CONNTRACK_MAX:
        return False
    st = TcpState()
    s0 = st.seen[0]
    s0.td_end = (pkt.tcp_seq + pkt.tot_len - pkt.ihl - pkt.tcp_doff + (flags & TH_SYN and 1)
                 + (flags & TH_FIN and 1)) & _M  # (segment_seq_plus_len)
    s0.td_maxwin = pkt.tcp_win or 1
    if new_state == TCP_CONNTRACK_SYN_SENT:
        s0.td_maxend = s0.td_end
        tcp_options(pkt.data, pkt.ihl, pkt.tcp_doff, s0)
    elif not ctk.cfg.tcp_loose:
        return False
    else:
        s0.td_maxend = (s0.td_end + s0.td_maxwin) & _M
        # assume SACK and be liberal: the window scale is unknown
        s0.flags = st.seen[1].flags = IP_CT_TCP_FLAG_SACK_PERM | IP_CT_TCP_FLAG_BE_LIBERAL
    st.last_index = TCP_NONE_SET
    conn.proto_state = st
    return True


def tcp_can_early_drop(st: TcpState) -> bool:
    return st.state in (TCP_CONNTRACK_FIN_WAIT, TCP_CONNTRACK_LAST_ACK, TCP_CONNTRACK_TIME_WAIT,
                        TCP_CONNTRACK_CLOSE, TCP_CONNTRACK_CLOSE_WAIT)


def _established(conn: Conn, st: TcpState) -> bool:
    """nf_conntrack_tcp_established"""
    return st.state == TCP_CONNTRACK_ESTABLISHED and bool(conn.status & IPS_ASSURED)


def _handle_invalid(ctk: Conntrack, conn: Conn, st: TcpState, direction: int, index: int, now: float) -> None:
    """nf_tcp_handle_invalid: an out-of-window FIN/RST answering the other
    side's FIN/RST shortens an ASSURED connection's timeout to UNACK's."""
    if not conn.status & IPS_ASSURED or conn.status & IPS_FIXED_TIMEOUT:
        return
    if index not in (TCP_RST_SET, TCP_FIN_SET):
        return
    if st.last_dir != direction and st.last_index in (TCP_FIN_SET, TCP_RST_SET):
        expires = conn.timeout_at - now if conn.status & IPS_CONFIRMED else conn.timeout_at
        if expires < 120:
            return
        timeout = ctk.cfg.tcp_timeouts[TCP_CONNTRACK_UNACK]
        if expires > timeout:
            conn.timeout_at = timeout + now
    else:
        st.last_index = index
        st.last_dir = direction


def tcp_packet(ctk: Conntrack, conn: Conn, pkt: Packet, ctinfo: int, direction: int, prerouting: bool) -> int:
    """nf_conntrack_tcp_packet"""
    if not pkt.l4ok:
        return CT_INVALID  # fewer than 20 bytes of header
    if tcp_error(ctk, pkt, prerouting):
        return CT_INVALID
    if not conn.status & IPS_CONFIRMED:
        if not tcp_new(ctk, conn, pkt):
            return CT_INVALID
        if pkt.data[pkt.ihl + 13] & (TH_SYN | TH_ACK | TH_RST | TH_FIN) == TH_SYN:
            return _first_syn(ctk, conn, pkt)
    st: TcpState = conn.proto_state
    cfg = ctk.cfg
    now = pkt.time
    flags = pkt.data[pkt.ihl + 13]
    old_state = st.state
    index = _INDEX[flags]
    new_state = TCP_CONNTRACKS[direction][index][old_state]
    check_window = True

    if new_state == TCP_CONNTRACK_SYN_SENT and old_state >= TCP_CONNTRACK_TIME_WAIT:
        # a SYN reopening a closed or aborted connection: kill it, look up again
        if ((st.seen[direction].flags | st.seen[1 - direction].flags) & IP_CT_TCP_FLAG_CLOSE_INIT
                or (st.last_dir == direction and st.last_index == TCP_RST_SET)):
            ctk.kill(conn)
            return CT_REPEAT
        new_state = TCP_CONNTRACK_IGNORE  # else ignore it (fall through)

    if new_state == TCP_CONNTRACK_IGNORE:
        if (index == TCP_SYNACK_SET and st.last_index == TCP_SYN_SET and st.last_dir != direction
                and pkt.tcp_ack == st.last_end):
            # the SYN/ACK answers a SYN we ignored: both ends are in sync,
            # we are not; take the annotated values
            old_state = TCP_CONNTRACK_SYN_SENT
            new_state = TCP_CONNTRACK_SYN_RECV
            last = st.seen[st.last_dir]
            last.td_end = st.last_end
            last.td_maxend = st.last_end
            last.td_maxwin = st.last_win or 1
            last.td_scale = st.last_wscale
            st.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK
            last.flags = st.last_flags
            me = st.seen[direction]
            me.td_end = me.td_maxend = me.td_maxwin = me.td_maxack = me.td_scale = 0
            me.flags &= IP_CT_TCP_FLAG_BE_LIBERAL
        else:
            st.last_index = index
            st.last_dir = direction
            st.last_seq = pkt.tcp_seq
            st.last_end = segment_seq_plus_len(pkt.tcp_seq, pkt.tot_len, pkt.ihl, pkt.tcp_doff, flags)
            st.last_win = pkt.tcp_win
            if index == TCP_SYN_SET and direction == 0:
                seen = TcpPeer()
                st.last_flags = st.last_wscale = 0
                tcp_options(pkt.data, pkt.ihl, pkt.tcp_doff, seen)
                if seen.flags & IP_CT_TCP_FLAG_WINDOW_SCALE:
                    st.last_flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
                    st.last_wscale = seen.td_scale
                if seen.flags & IP_CT_TCP_FLAG_SACK_PERM:
                    st.last_flags |= IP_CT_TCP_FLAG_SACK_PERM
                if old_state == TCP_CONNTRACK_LAST_ACK:
                    st.last_flags |= IP_CT_EXP_CHALLENGE_ACK
            if old_state == TCP_CONNTRACK_SYN_SENT and index == TCP_ACK_SET and direction == 1:
                st.last_ack = pkt.tcp_ack  # a possible challenge ACK to the SYN
            return CT_ACCEPT  # ignored: no state change
    elif new_state == TCP_CONNTRACK_MAX:
        return CT_INVALID
    elif new_state == TCP_CONNTRACK_TIME_WAIT:
        if (old_state == TCP_CONNTRACK_LAST_ACK and index == TCP_ACK_SET and st.last_dir != direction
                and st.last_index == TCP_SYN_SET and st.last_flags & IP_CT_EXP_CHALLENGE_ACK):
            st.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK  # RFC 5961 challenge ACK
            return CT_ACCEPT
    elif new_state == TCP_CONNTRACK_SYN_SENT2:
        st.last_flags |= IP_CT_TCP_SIMULTANEOUS_OPEN
    elif new_state == TCP_CONNTRACK_SYN_RECV:
        if direction == 1 and index == TCP_ACK_SET and st.last_flags & IP_CT_TCP_SIMULTANEOUS_OPEN:
            new_state = TCP_CONNTRACK_ESTABLISHED
    elif new_state == TCP_CONNTRACK_CLOSE and index == TCP_RST_SET:
        check_window, new_state, verdict = _rst_checks(ctk, conn, st, pkt, direction, old_state, new_state)
        if verdict is not None:
            return verdict

    if check_window:
        res = tcp_in_window(ctk, st, direction, index, pkt)
        if res == NFCT_TCP_IGNORE:
            return CT_ACCEPT
        if res == NFCT_TCP_INVALID:
            _handle_invalid(ctk, conn, st, direction, index, now)
            return CT_INVALID

    # in window from here on
    st.last_index = index
    st.last_dir = direction
    st.state = new_state
    if old_state != new_state and new_state == TCP_CONNTRACK_FIN_WAIT:
        st.seen[direction].flags |= IP_CT_TCP_FLAG_CLOSE_INIT

    t = cfg.tcp_timeouts
    if st.retrans >= cfg.tcp_max_retrans and t[new_state] > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    elif index == TCP_RST_SET:
        timeout = t[TCP_CONNTRACK_CLOSE]
    elif ((st.seen[0].flags | st.seen[1].flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
          and t[new_state] > t[TCP_CONNTRACK_UNACK]):
        timeout = t[TCP_CONNTRACK_UNACK]
    elif st.last_win == 0 and t[new_state] > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    else:
        timeout = t[new_state]

    if not conn.status & IPS_SEEN_REPLY:
        if flags & TH_RST:
            # the only answer is a RST: no connection, delete it at once
            ctk.account(conn, pkt, direction)
            ctk.kill(conn)
            return CT_ACCEPT
        if index == TCP_SYN_SET and old_state == TCP_CONNTRACK_SYN_SENT:
            return CT_ACCEPT  # a retransmitted SYN does not renew the timeout
        if new_state == TCP_CONNTRACK_ESTABLISHED and timeout > t[TCP_CONNTRACK_UNACK]:
            timeout = t[TCP_CONNTRACK_UNACK]  # picked up, not answered yet
    elif (not conn.status & IPS_ASSURED and old_state in (TCP_CONNTRACK_SYN_RECV, TCP_CONNTRACK_ESTABLISHED)
          and new_state == TCP_CONNTRACK_ESTABLISHED):
        conn.status |= IPS_ASSURED
    ctk.refresh(conn, timeout, pkt, direction)
    return CT_ACCEPT


def _first_syn(ctk: Conntrack, conn: Conn, pkt: Packet) -> int:
    """The rest of tcp_packet for the SYN that made the connection (what
    the general code does in that case, step for step): NONE -> SYN_SENT
    in the original direction; in tcp_in_window the sender was just set up
    by tcp_new and every bound holds (its end is seq + len + 1, the reply
    side has sent nothing), so only the reply side's td_maxend moves, to
    the window (at least 1); then the state's timeout."""
    st: TcpState = conn.proto_state
    receiver = st.seen[1]
    receiver.td_maxend = pkt.tcp_win or 1
    receiver.flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    st.last_index = TCP_SYN_SET
    st.last_dir = 0
    st.state = new_state = TCP_CONNTRACK_SYN_SENT
    cfg = ctk.cfg
    t = cfg.tcp_timeouts
    if st.retrans >= cfg.tcp_max_retrans and t[new_state] > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    elif ((st.seen[0].flags | receiver.flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
          and t[new_state] > t[TCP_CONNTRACK_UNACK]):
        timeout = t[TCP_CONNTRACK_UNACK]
    elif st.last_win == 0 and t[new_state] > t[TCP_CONNTRACK_RETRANS]:
        timeout = t[TCP_CONNTRACK_RETRANS]
    else:
        timeout = t[new_state]
    ctk.refresh(conn, timeout, pkt, 0)
    return CT_ACCEPT


def _rst_checks(ctk: Conntrack, conn: Conn, st: TcpState, pkt: Packet, direction: int, old_state: int,
                new_state: int) -> tuple[bool, int, int | None]:
    """The CLOSE-by-RST case: (check the window?, new state, verdict to
    return at once or None)."""
    if tcp_can_early_drop(st):
        return False, new_state, None  # closing: the tuple may be reused, no checks
    seq = pkt.tcp_seq
    other = st.seen[1 - direction]
    if other.flags & IP_CT_TCP_FLAG_MAXACK_SET and st.last_index != TCP_SYN_SET:
        if seq == 0 and not _established(conn, st):
            return True, new_state, None
        if before(seq, other.td_maxack) and not ctk.cfg.tcp_ignore_invalid_rst:
            return True, new_state, CT_INVALID  # invalid RST
        if not _established(conn, st) or seq == other.td_maxack:
            return True, new_state, None
        if st.last_index == TCP_ACK_SET and st.last_dir == direction and seq == st.last_end:
            return True, new_state, None  # RST after the last data segment
        new_state = old_state  # not exact: stay, a challenge ACK may follow
    if (((conn.status & IPS_SEEN_REPLY and st.last_index == TCP_SYN_SET)
         or (not conn.status & IPS_ASSURED and st.last_index == TCP_ACK_SET))
            and pkt.tcp_ack == st.last_end):
        return False, new_state, None  # RST to a SYN or ACK we let through
    if (old_state == TCP_CONNTRACK_SYN_SENT and st.last_index == TCP_ACK_SET and st.last_dir == 1
            and seq == st.last_ack):
        return False, new_state, None  # RST answering a challenge ACK
    return True, new_state, None
