"""tcp_ack_fast, the tracker's lane for an in-window ACK of an established
connection, is tcp_packet for that case and nothing else: on random
connection states and segments, biased to the window edges (each bound
exactly, one off either side, sequence-number wrap), whenever the lane
takes a segment the full tracker does the same to the state, timeout and
accounting and accepts it; whenever it declines, it has changed nothing.
"""

from __future__ import annotations

import copy
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as hs

from pyfw.engine.api import IPS_ASSURED, IPS_CONFIRMED, IPS_FIXED_TIMEOUT, IPS_SEEN_REPLY
from pyfw.engine.conntrack import Conntrack
from pyfw.engine.conntrack import tcp as t
from pyfw.engine.conntrack.conn import Conn, Tuple
from pyfw.engine.conntrack.table import CT_ACCEPT
from pyfw.engine.packet import Packet

M = 0xFFFFFFFF
TS = b"\x01\x01\x08\x0a" + b"\x00\x00\x00\x01\x00\x00\x00\x02"          # NOP NOP timestamp
SACK = b"\x01\x01\x05\x0a"                                              # NOP NOP SACK, one block


def near(rng: random.Random, base: int) -> int:
    """A value at, next to, or far from `base` (mod 2**32)."""
    k = rng.randrange(8)
    if k < 4:
        return (base + rng.choice((-2, -1, 0, 1, 2))) & M
    if k < 6:
        return (base + rng.randrange(-70000, 70000)) & M
    if k == 6:
        return (base + rng.choice((0x7FFFFFFF, 0x80000000, 0x80000001))) & M
    return rng.randrange(1 << 32)


def peer(rng: random.Random, base: int) -> t.TcpPeer:
    p = t.TcpPeer()
    p.td_end = near(rng, base)
    p.td_maxwin = rng.choice((0, 1, 512, 29200, 65535, 65999, 66000, 66001, 1 << 20, rng.randrange(1 << 31)))
    p.td_maxend = near(rng, p.td_end + p.td_maxwin)
    p.td_maxack = near(rng, base)
    p.td_scale = rng.choice((0, 0, 7, 14))
    p.flags = rng.randrange(0x40) if rng.random() < 0.3 else rng.choice((0, t.IP_CT_TCP_FLAG_MAXACK_SET))
    return p


def case(rng: random.Random) -> tuple[Conntrack, Conn, Packet, int, int, int, int, int, bool]:
    ctk = Conntrack()
    cfg = ctk.cfg
    cfg.tcp_max_retrans = rng.choice((0, 1, 3))
    cfg.tcp_be_liberal = rng.random() < 0.1
    if rng.random() < 0.2:  # timeouts in another order than the defaults
        for slot in range(len(cfg.tcp_timeouts)):
            cfg.tcp_timeouts[slot] = float(rng.choice((10, 60, 300, 432000)))
    st = t.TcpState()
    st.state = t.TCP_CONNTRACK_ESTABLISHED if rng.random() < 0.9 else rng.randrange(10)
    a, b = rng.randrange(1 << 32), rng.randrange(1 << 32)
    st.seen = [peer(rng, a), peer(rng, b)]
    direction = rng.randrange(2)
    sender, receiver = st.seen[direction], st.seen[1 - direction]
    payload = bytes(rng.choice((0, 0, 0, 1, 64, 1448)))
    # each of tcp_in_window's bounds: seq <= maxend, ack <= the receiver's end,
    # end >= sender's end - receiver's window, ack >= the receiver's end - max ack window
    lower_seq = sender.td_end - receiver.td_maxwin - len(payload)
    lower_ack = receiver.td_end - max(sender.td_maxwin, t.MAXACKWINCONST)
    seq = near(rng, rng.choice((sender.td_end, sender.td_end, sender.td_maxend, lower_seq)))
    ack = near(rng, rng.choice((receiver.td_end, receiver.td_end, sender.td_maxack, lower_ack)))
    win = rng.choice((0, 1, 512, 29200, 65535))
    opts = rng.choice((b"", b"", TS, SACK + struct.pack("!II", near(rng, ack), near(rng, ack + 100))))
    end = (seq + len(payload)) & M
    st.last_index = rng.randrange(6)
    st.last_dir = rng.randrange(2)
    st.retrans = rng.randrange(5)
    if rng.random() < 0.4:  # the same segment again (a retransmission)
        st.last_dir, st.last_seq, st.last_ack, st.last_end, st.last_win = direction, seq, ack, end, win
    else:
        st.last_seq, st.last_ack, st.last_end, st.last_win = (rng.randrange(1 << 32) for _ in range(4))
    st.last_flags = rng.randrange(0x100)
    status = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED
    if rng.random() < 0.15:
        status ^= rng.choice((IPS_SEEN_REPLY, IPS_ASSURED, IPS_FIXED_TIMEOUT, IPS_CONFIRMED))
    conn = Conn(Tuple(1, 2, 6, 3, 4), Tuple(2, 1, 6, 4, 3), status=status, timeout_at=50.0,
                proto_state=st, acct=[1, 2, 3, 4] if rng.random() < 0.5 else None)
    flags = t.TH_ACK | rng.choice((0, t.TH_PSH, t.TH_URG, t.TH_ECE | t.TH_CWR))
    doff = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", 3, 4, seq, ack, (doff // 4) << 4, flags, win, 0, 0) + opts + payload
    tot = 20 + len(tcp)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, tot, 1, 0x4000, 64, 6, 0, 1, 2) + tcp
    pkt = Packet(bytearray(ip), time=100.0)
    sackless = doff == 20 or (doff == 32 and opts[:4] == TS[:4])
    return ctk, conn, pkt, direction, seq, ack, win, end, sackless


def compare(rng: random.Random) -> bool:
    ctk, conn, pkt, direction, seq, ack, win, end, sackless = case(rng)
    full = copy.deepcopy(conn)
    lane = copy.deepcopy(conn)
    ctinfo = 3 if direction else 0
    ret = t.tcp_packet(ctk, full, pkt, ctinfo, direction, False)
    took = t.tcp_ack_fast(ctk.cfg, lane, lane.proto_state, direction, seq, ack, win, end, pkt.tot_len, pkt.time,
                          sackless)
    sender = conn.proto_state.seen[direction]
    receiver = conn.proto_state.seen[1 - direction]
    if (ret == CT_ACCEPT and (full.timeout_at != conn.timeout_at or full.acct != conn.acct)
            and full.status == conn.status == IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED
            and full.proto_state.state == conn.proto_state.state == t.TCP_CONNTRACK_ESTABLISHED
            and sender.td_maxwin and (sackless or not receiver.flags & t.IP_CT_TCP_FLAG_SACK_PERM)
            and not ctk.cfg.tcp_be_liberal and not sender.flags & t.IP_CT_TCP_FLAG_BE_LIBERAL):
        assert took  # every in-window segment of the lane's kind (only be_liberal takes others)
    if took:
        assert ret == CT_ACCEPT
        assert full.status == conn.status
        assert full.proto_state.state == conn.proto_state.state
        assert lane.proto_state == full.proto_state
        assert (lane.status, lane.timeout_at, lane.acct) == (full.status, full.timeout_at, full.acct)
    else:
        assert lane.proto_state == conn.proto_state
        assert (lane.status, lane.timeout_at, lane.acct) == (conn.status, conn.timeout_at, conn.acct)
    return took


def test_lane_is_tcp_packet_on_random_states() -> None:
    rng = random.Random(20261201)
    took = sum(compare(rng) for _ in range(30000))
    assert took > 3000  # the lane is taken often enough for the comparison to mean something


@settings(max_examples=300, deadline=None)
@given(hs.integers(0, 2**64))
def test_lane_is_tcp_packet_hypothesis(seed: int) -> None:
    compare(random.Random(seed))


def test_lane_takes_the_plain_steady_case() -> None:
    """Data in order on a quiet window: the lane, not the full tracker."""
    ctk = Conntrack()
    st = t.TcpState(state=t.TCP_CONNTRACK_ESTABLISHED)
    st.seen = [t.TcpPeer(1000, 1000 + 65535, 65535, 5000, 0, t.IP_CT_TCP_FLAG_MAXACK_SET),
               t.TcpPeer(5000, 5000 + 65535, 65535, 1000, 0, t.IP_CT_TCP_FLAG_MAXACK_SET)]
    conn = Conn(Tuple(1, 2, 6, 3, 4), Tuple(2, 1, 6, 4, 3), status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
                proto_state=st)
    assert t.tcp_ack_fast(ctk.cfg, conn, st, 0, 1000, 5000, 65535, 1064, 104, 7.0, True)
    assert st.seen[0].td_end == 1064
    assert conn.timeout_at == 7.0 + ctk.cfg.tcp_timeouts[t.TCP_CONNTRACK_UNACK]  # data not yet acknowledged
    assert t.tcp_ack_fast(ctk.cfg, conn, st, 1, 5000, 1064, 65535, 5000, 40, 8.0, True)
    assert conn.timeout_at == 8.0 + ctk.cfg.tcp_timeouts[t.TCP_CONNTRACK_ESTABLISHED]
