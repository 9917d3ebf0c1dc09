"""The tracker against the kernel: real and scripted traffic through a
router namespace; the router's capture is replayed into Conntrack and, for
every forwarded packet, the ctstate/ctdir the kernel gave it (read back
from the DSCP its mangle rules set) must be the one we compute; then the
`conntrack -L` listings (timeouts within 2 s) and the ctstate counters must
agree."""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ct_lab import (  # noqa: E402
    CLIENT,
    DSCP_NAMES,
    NOTRACK_PORT,
    SERVER,
    CtLab,
    problem,
)
from ct_util import NAMES, TcpFlow  # noqa: E402
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror  # type: ignore[import-untyped]  # noqa: E402

from pyfw.engine.conntrack import Conntrack, format_entry  # noqa: E402
from pyfw.engine.packet import Packet  # noqa: E402

pytestmark = pytest.mark.skipif(problem() is not None, reason=str(problem()))

REPORT: dict[str, int] = Counter()
DEBUG = False

SERVER_CODE = r"""
import socket, threading, time, sys
def tcp_server():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('10.9.2.2', 8080)); s.listen(8)
    for _ in range(2):
        c, _a = s.accept(); c.recv(100); c.sendall(b'hello back'); c.close()
def udp_echo(port, n):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.9.2.2', port)); u.settimeout(15)
    for _ in range(n):
        d, a = u.recvfrom(2000); u.sendto(b're:' + d, a)
def sink(port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.9.2.2', port)); time.sleep(60)
ts = [threading.Thread(target=tcp_server, daemon=True), threading.Thread(target=udp_echo, args=(5353, 1), daemon=True),
      threading.Thread(target=udp_echo, args=(5354, 3), daemon=True)]
ts += [threading.Thread(target=sink, args=(p,), daemon=True) for p in (22080, 22081, 22000)]
for t in ts: t.start()
print('ready', flush=True)
time.sleep(60)
"""

CLIENT_SINK = r"""
import socket, time
us = []
for p in (20080, 20081, 20000):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.9.1.2', p)); us.append(u)
print('ready', flush=True)
time.sleep(60)
"""

CLIENT_CODE = r"""
import socket, time, subprocess
c = socket.create_connection(('10.9.2.2', 8080)); c.sendall(b'x' * 300); c.recv(100); c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.sendto(b'query', ('10.9.2.2', 5353)); u.recvfrom(100)
u.sendto(b'closed', ('10.9.2.2', 9999))
time.sleep(0.1)
try:
    socket.create_connection(('10.9.2.2', 8081), timeout=2)
except OSError:
    pass
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.settimeout(3)
for i in range(3):
    v.sendto(b'stream%d' % i, ('10.9.2.2', 5354)); v.recvfrom(100); time.sleep(1.3)
w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); w.sendto(b"untracked", ("10.9.2.2", NOTRACK_PORT))
c = socket.create_connection(('10.9.2.2', 8080)); c.sendall(b'y'); c.recv(100)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00'); c.close()
subprocess.run(['ping', '-c', '2', '-i', '0.2', '-q', '10.9.2.2'], capture_output=True)
print('done', flush=True)
""".replace("NOTRACK_PORT", str(NOTRACK_PORT))


def _wait_ready(p: Any) -> None:
    line = p.stdout.readline()
    assert b"ready" in line, (line, p.stderr.read())


def real_traffic(lab: CtLab) -> None:
    srv = lab.spawn("s", SERVER_CODE)
    cli_sink = lab.spawn("c", CLIENT_SINK)
    _wait_ready(srv)
    _wait_ready(cli_sink)
    out = lab.py("c", CLIENT_CODE)
    assert "done" in out


def flow(sport: int, dport: int, **kw: int) -> TcpFlow:
    return TcpFlow(sport=sport, dport=dport, a=CLIENT, b=SERVER, **kw)


def scripted(lab: CtLab) -> None:
    c, s = "c", "s"

    def send(role: str, pkt: Any) -> None:
        lab.send(role, bytes(pkt))

    def hs(f: TcpFlow, opts: list[Any] | None = None) -> None:
        send(c, f.seg(0, "S", options=opts))
        send(s, f.seg(1, "SA", options=opts))
        send(c, f.seg(0, "A"))

    # a full conversation
    f = flow(20001, 21001)
    hs(f)
    send(c, f.seg(0, "PA", b"GET / HTTP/1.0\r\n\r\n"))
    send(s, f.seg(1, "A"))
    send(s, f.seg(1, "PA", b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 500))
    send(c, f.seg(0, "A"))
    send(s, f.seg(1, "FA"))
    send(c, f.seg(0, "A"))
    send(c, f.seg(0, "FA"))
    send(s, f.seg(1, "A"))
    # out-of-window segments
    f = flow(20002, 21002)
    hs(f)
    send(c, f.seg(0, "PA", b"far", seq=f.seq[0] + 10_000_000, advance=False))
    send(s, f.seg(1, "A", ack=f.seq[0] + 3_000_000, advance=False))
    send(c, f.seg(0, "PA", b"near"))
    send(s, f.seg(1, "A"))
    # mid-stream pick-up
    f = flow(20003, 21003, iss_a=3_000_000, iss_b=4_000_000)
    f.ack[0] = 4_000_000
    send(c, f.seg(0, "PA", b"middle"))
    send(s, f.seg(1, "A"))
    send(s, f.seg(1, "PA", b"answer"))
    send(c, f.seg(0, "A"))
    # invalid flag combinations and a FIN without a connection
    for i, flags in enumerate(("SF", "", "FPU", "F", "SR", "U", "FA", "SA", "RA", "SEC")):
        send(c, flow(20100 + i, 21004).seg(0, flags))
    # bad checksums (then the same SYN with a good one)
    bad = flow(20010, 21010).seg(0, "S")
    bad[TCP].chksum = 0xBEEF
    send(c, bad)
    send(c, flow(20010, 21010).seg(0, "S"))
    send(c, IP(src=CLIENT, dst=SERVER) / UDP(sport=20000, dport=22000, chksum=0x1234) / b"bad")
    send(c, IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=4242, chksum=0x1234) / b"bad")
    # RST in the middle, then more packets of the dead connection
    f = flow(20020, 21020)
    hs(f)
    send(c, f.seg(0, "PA", b"abc"))
    send(s, f.seg(1, "A"))
    send(s, f.seg(1, "R", advance=False))
    send(c, f.seg(0, "PA", b"after"))
    # retransmissions
    f = flow(20030, 21030)
    hs(f)
    s0 = f.seq[0]
    for _ in range(4):
        send(c, f.seg(0, "PA", b"r" * 100, seq=s0, advance=False))
    f.seq[0] = s0 + 100
    f.ack[1] = f.seq[0]
    send(s, f.seg(1, "A"))
    # window scale and SACK
    f = flow(20040, 21040)
    opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
    send(c, f.seg(0, "S", win=64240, options=opts))
    send(s, f.seg(1, "SA", win=65160, options=opts))
    send(c, f.seg(0, "A", win=502))
    send(s, f.seg(1, "PA", b"w" * 1000, seq=f.seq[1] + 60000, advance=False))
    base = f.seq[0]
    send(c, f.seg(0, "PA", b"a" * 100))
    send(c, f.seg(0, "PA", b"b" * 100))
    send(s, f.seg(1, "A", ack=base + 100, options=[("SAck", (base + 100, base + 200))], advance=False))
    send(s, f.seg(1, "A", ack=base + 100, options=[("SAck", (base + 100, base + 900000))], advance=False))
    # a closed connection reopened by a new SYN from TIME_WAIT
    f = flow(20050, 21050)
    hs(f)
    send(c, f.seg(0, "FA"))
    send(s, f.seg(1, "FA"))
    send(c, f.seg(0, "A"))
    g = flow(20050, 21050, iss_a=f.seq[0] + 100_000, iss_b=777_777)
    send(c, g.seg(0, "S"))
    send(s, g.seg(1, "SA"))
    send(c, g.seg(0, "A"))
    # simultaneous open
    f = flow(20060, 21060)
    send(c, f.seg(0, "S"))
    send(s, f.seg(1, "S"))
    send(c, f.seg(0, "SA", seq=f.seq[0] - 1, advance=False))
    send(s, f.seg(1, "SA", seq=f.seq[1] - 1, advance=False))
    send(c, f.seg(0, "A"))
    send(s, f.seg(1, "A"))
    # a RST whose sequence number is below what was acknowledged
    f = flow(20070, 21070)
    hs(f)
    send(c, f.seg(0, "PA", b"d" * 200))
    send(s, f.seg(1, "A"))
    send(c, f.seg(0, "R", seq=f.seq[0] - 150, advance=False))
    send(c, f.seg(0, "R"))
    # ICMP errors: quoting a known flow, quoting nothing; an echo reply alone
    q = IP(src=CLIENT, dst=SERVER) / UDP(sport=20080, dport=22080) / b"ping?"
    send(c, q)
    send(s, IP(src=SERVER, dst=CLIENT) / ICMP(type=3, code=3) / IPerror(bytes(q)[:28]))
    q2 = IP(src=CLIENT, dst=SERVER) / UDP(sport=20081, dport=22081) / b"never sent"
    send(s, IP(src=SERVER, dst=CLIENT) / ICMP(type=3, code=1) / IPerror(bytes(q2)[:28]))
    send(s, IP(src=SERVER, dst=CLIENT) / ICMP(type=0, id=999, seq=1) / b"lonely")
    send(c, IP(src=CLIENT, dst=SERVER) / ICMP(type=13, id=31) / (b"\x00" * 12))
    send(c, IP(src=CLIENT, dst=SERVER) / ICMP(type=40) / b"x")
    # SYN and SYN/ACK retransmitted; a challenge ACK and the RST to it
    f = flow(20090, 21090)
    send(c, f.seg(0, "S"))
    send(c, f.seg(0, "S", seq=f.seq[0] - 1, advance=False))
    send(s, f.seg(1, "SA"))
    send(s, f.seg(1, "SA", seq=f.seq[1] - 1, advance=False))
    send(c, f.seg(0, "A"))
    f = flow(20091, 21091)
    send(c, f.seg(0, "S"))
    send(s, f.seg(1, "A", seq=555_555, ack=12345, advance=False))
    send(c, f.seg(0, "R", seq=12345, advance=False))
    # RST answering a SYN (connection refused)
    f = flow(20100, 21100)
    send(c, f.seg(0, "S"))
    send(s, f.seg(1, "RA", seq=0))
    # state table corners: FIN or ACK from the client in SYN_SENT, data
    # after FIN, a zero window, an error in the original direction
    f = flow(20120, 21120)
    send(c, f.seg(0, "S"))
    send(c, f.seg(0, "A", ack=99, advance=False))
    send(c, f.seg(0, "FA", ack=99, advance=False))
    send(s, f.seg(1, "SA"))
    send(c, f.seg(0, "A"))
    send(s, f.seg(1, "A", win=0))
    f2 = flow(20121, 21121)
    hs(f2)
    send(c, f2.seg(0, "FA"))
    send(c, f2.seg(0, "PA", b"late data"))
    send(s, f2.seg(1, "A"))
    send(s, f2.seg(1, "PA", b"still talking"))
    send(c, f2.seg(0, "A"))
    ans = IP(src=SERVER, dst=CLIENT) / UDP(sport=22080, dport=20080) / b"answer"
    send(s, ans)
    send(c, IP(src=CLIENT, dst=SERVER) / ICMP(type=3, code=3) / IPerror(bytes(ans)[:28]))
    send(c, IP(src=CLIENT, dst=SERVER) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(f2.seg(0, "A"))[:28])
    send(s, IP(src=SERVER, dst="10.9.1.77") / ICMP(type=3, code=3) / IPerror(bytes(q)[:28]))
    # other protocols
    send(c, IP(src=CLIENT, dst=SERVER, proto=47) / bytes.fromhex("00000800") / b"gre payload")
    send(s, IP(src=SERVER, dst=CLIENT, proto=47) / bytes.fromhex("00000800") / b"gre back")
    send(c, IP(src=CLIENT, dst=SERVER, proto=99) / b"any protocol")


def _key(ip: bytes) -> bytes:
    b = bytearray(ip)
    b[1] = 0
    b[8] = 0
    b[10:12] = b"\x00\x00"
    return bytes(b)


def replay(frames: list[tuple[float, int, bytes]], sysctls: dict[str, str]) -> tuple[Conntrack, list[Any]]:
    """Ingress frames into the tracker; each paired with its egress copy's DSCP."""
    ct = Conntrack(sysctls={k: int(v) for k, v in sysctls.items()})
    pending: dict[bytes, deque[int]] = {}
    rows: list[Any] = []
    for i, (t, ptype, ip) in enumerate(frames):
        if ptype == 4:  # outgoing: the kernel's verdict on an earlier ingress frame
            q = pending.get(_key(ip))
            if q:
                rows[q.popleft()][2] = DSCP_NAMES.get(ip[1] >> 2, f"dscp{ip[1] >> 2}")
            continue
        p = Packet(bytearray(ip), indev="eth0", time=t)
        p.hook = "PREROUTING"
        if p.proto == 17 and p.l4ok and p.dport == NOTRACK_PORT:
            p.notrack = True
        ct.in_hook(p)
        ours = NAMES[p.ctinfo]
        ct.confirm(p)
        pending.setdefault(_key(ip), deque()).append(len(rows))
        rows.append([i, ours, None, repr(p)])
    return ct, rows


def _strip_timeout(line: str) -> tuple[str, int | None]:
    parts = line.split()
    if len(parts) > 2 and parts[2].isdigit():
        return " ".join(parts[:2] + parts[3:]), int(parts[2])
    return line, None


def compare(lab_sysctls: dict[str, str], traffic: list[str]) -> None:
    with CtLab(lab_sysctls) as lab:
        if "real" in traffic:
            real_traffic(lab)
        if "scripted" in traffic:
            scripted(lab)
        now, listing, counters, frames = lab.finish()
        kernel_stats = lab.ct_stats
        assert "0 packets dropped by kernel" in lab.dump_stats, lab.dump_stats
    ct, rows = replay(frames, lab_sysctls)
    bad = [r for r in rows if r[1] != r[2]]
    REPORT["packets"] += len(rows)
    for r in rows:
        REPORT["state " + r[1]] += 1
    assert rows and not bad, "ctstate differs (frame, ours, kernel, packet):\n" + "\n".join(map(str, bad))

    # conntrack -L: same entries, same text but for the timeout
    kernel = dict(_strip_timeout(line) for line in listing.splitlines())
    ours = dict(_strip_timeout(format_entry(conn, now)) for conn in ct.entries(now))
    # an entry about to expire may be gone on one side only
    for text in [t for d in (kernel, ours) for t, left in d.items() if left is not None and left < 3]:
        kernel.pop(text, None)
        ours.pop(text, None)
    assert sorted(ours) == sorted(kernel), (
        "only ours:\n" + "\n".join(sorted(set(ours) - set(kernel)))
        + "\nonly the kernel's:\n" + "\n".join(sorted(set(kernel) - set(ours))))
    for text, left in kernel.items():
        mine = ours[text]
        assert left is None or mine is None or abs(left - mine) <= 2, (text, left, mine)
    REPORT["entries"] += len(kernel)
    if DEBUG:
        print("\n".join(sorted(listing.splitlines())))

    # ctstate counters
    mine_counts: Counter[str] = Counter()
    for r in rows:
        mine_counts[{"NEW": "NEW", "EST": "ESTABLISHED", "EST_REPLY": "ESTABLISHED", "REL": "RELATED",
                     "REL_REPLY": "RELATED", "INVALID": "INVALID", "UNTRACKED": "UNTRACKED"}[r[1]]] += 1
    for state, n in counters.items():
        assert mine_counts[state] == n, (state, mine_counts[state], n)
    REPORT["counters"] += len(counters)

    # conntrack -S (summed over the CPUs)
    ct_counts = ct.stats()
    for k in ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error", "clash_resolve"):
        assert ct_counts[k] == kernel_stats[k], (k, ct_counts[k], kernel_stats[k])
        REPORT["stats"] += 1
    REPORT["runs"] += 1


def test_kernel_default_sysctls() -> None:
    t0 = time.time()
    compare({}, ["real", "scripted"])
    print(f"\nconntrack kernel comparison: {dict(REPORT)} in {time.time() - t0:.1f}s")


def test_kernel_loose_off_liberal() -> None:
    compare({"net.netfilter.nf_conntrack_tcp_loose": "0", "net.netfilter.nf_conntrack_tcp_be_liberal": "1"},
            ["scripted"])
    print(f"\nconntrack kernel comparison: {dict(REPORT)}")


def test_kernel_checksum_off_short_timeouts() -> None:
    compare({"net.netfilter.nf_conntrack_checksum": "0", "net.netfilter.nf_conntrack_udp_timeout": "12",
             "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": "33",
             "net.netfilter.nf_conntrack_tcp_timeout_established": "4000",
             "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst": "1"}, ["scripted"])
    print(f"\nconntrack kernel comparison: {dict(REPORT)}")
