"""UDP sockets (checksums, binding) and the HTTP status server."""

from __future__ import annotations

import hashlib
import json

import pytest
from raw_peer import HOST, PEER
from stack_sim import A_ADDR, B_ADDR, Collector, HttpGet, Sim, http_pair

from pyfw.stack import Stack
from pyfw.stack.http import pattern_bytes
from pyfw.stack.tcp import Connection
from pyfw.wire import ipv4
from pyfw.wire import udp as wire_udp
from pyfw.wire.checksum import verify, verify_l4


def _udp(payload: bytes, dport: int = 53, checksum: bool = True, corrupt: bool = False) -> bytes:
    seg = wire_udp.build(PEER, HOST, 4444, dport, payload, checksum=checksum)
    if corrupt:
        seg[-1] ^= 0x55
    return bytes(ipv4.build(PEER, HOST, 17, seg))


def test_udp_receive_checksums_and_binding() -> None:
    s = Stack()
    got: list[tuple[int, int, bytes]] = []
    s.udp_bind(HOST, 53, lambda src, sport, data: got.append((src, sport, data)))
    assert s.wants(_udp(b"q"))
    assert not s.wants(_udp(b"q", dport=54))
    s.input(_udp(b"hello"), 0.0)
    s.input(_udp(b"nocsum", checksum=False), 0.0)   # 0: no checksum, accepted
    s.input(_udp(b"broken", corrupt=True), 0.0)
    s.input(_udp(b"other", dport=54), 0.0)
    assert got == [(PEER, 4444, b"hello"), (PEER, 4444, b"nocsum")]
    assert s.counters["UdpInCsumErrors"] == 1 and s.counters["UdpNoPorts"] == 1
    assert s.counters["UdpInDatagrams"] == 2
    # bound to any address
    s2 = Stack()
    s2.udp_bind(0, 53, lambda *a: got.append(a))
    assert s2.wants(_udp(b"x"))


def test_udp_send() -> None:
    s = Stack(mtu=1500)
    s.udp_send(HOST, 53, PEER, 4444, b"answer")
    s.udp_send(HOST, 53, PEER, 4444, b"z" * 3000)
    small, big = s.output(0.0)
    for d in (small, big):
        assert verify(d[:20]) and verify_l4(HOST, PEER, 17, d[20:])
        assert d[8] == 64 and ipv4.src(d) == HOST and ipv4.dst(d) == PEER
    assert small[6] & 0x40 and small[28:] == b"answer"
    assert not big[6] & 0x40 and len(big) == 3028       # no DF: the gateway fragments


def _get(sim: Sim, a: Stack, raw: bytes, port: int) -> tuple[Collector, Connection]:
    """Send raw request bytes; run until the server closes."""
    col = Collector()
    conn = a.connect(A_ADDR, port, B_ADDR, 80, col, now=sim.now)
    conn.send(raw)
    sim.run(lambda: col.closed, limit=sim.now + 10)
    return col, conn


def test_http_keep_alive_pipelined_and_close() -> None:
    sim, a, b = http_pair()
    req = (b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n"
           b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /bytes?n=5000 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    col, conn = _get(sim, a, req, 1000)
    text = bytes(col.data)
    parts = text.split(b"HTTP/1.1 ")
    assert [p[:3] for p in parts[1:]] == [b"200", b"200", b"200", b"404"]
    body = parts[1].split(b"\r\n\r\n", 1)[1]
    assert json.loads(body) == {"hello": "world"}
    assert b"Content-Length: " in parts[2] and parts[2].endswith(b"\r\n\r\n")    # HEAD: no body
    blob = parts[3].split(b"\r\n\r\n", 1)[1]
    assert blob[:5000] == bytes(i % 256 for i in range(5000))[:len(blob[:5000])]
    assert col.closed                                # the server closed after "Connection: close"


def test_http_1_0_closes_and_errors() -> None:
    sim, a, b = http_pair()
    col, _ = _get(sim, a, b"GET / HTTP/1.0\r\n\r\n", 1001)
    assert col.data.startswith(b"HTTP/1.1 200 OK") and b"<h1>pyfw status</h1>" in col.data and col.closed
    col, _ = _get(sim, a, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 1002)
    assert col.data.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in col.data
    col, _ = _get(sim, a, b"garbage\r\n\r\n", 1003)
    assert col.data.startswith(b"HTTP/1.1 400") and col.closed
    col, _ = _get(sim, a, b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 20000, 1004)
    assert col.data.startswith(b"HTTP/1.1 431") and col.closed
    assert b.counters["AppErrors"] == 0


@pytest.mark.parametrize("n", [0, 1, 1 << 20, (4 << 20) + 12345])
def test_http_bytes_lengths(n: int) -> None:
    sim, a, b = http_pair()
    app = HttpGet(f"/bytes?n={n}")
    a.connect(A_ADDR, 1005, B_ADDR, 80, app, now=0.0)
    sim.run(lambda: app.closed, limit=60)
    assert app.length == n and app.body == n
    assert app.hash.hexdigest() == hashlib.sha256(pattern_bytes(n)).hexdigest()


def test_http_upload_and_expect_100_continue() -> None:
    sim, a, b = http_pair()
    body = bytes(range(256)) * 4000
    col = Collector()
    conn = a.connect(A_ADDR, 1006, B_ADDR, 80, col, now=0.0)
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    sim.run(lambda: b"100 Continue" in col.data, limit=5)
    assert bytes(col.data) == b"HTTP/1.1 100 Continue\r\n\r\n"   # nothing final before the body
    conn.send(body)
    sim.run(lambda: col.closed, limit=10)
    final = bytes(col.data).split(b"\r\n\r\n", 1)[1]
    assert final.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(final.split(b"\r\n\r\n", 1)[1]) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # Expect on anything else: the final answer at once, then a close
    col, _ = _get(sim, a, b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99\r\n\r\n", 1007)
    assert col.data.startswith(b"HTTP/1.1 405") and b"Connection: close" in col.data and col.closed
