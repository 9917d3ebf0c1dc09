"""Interop with Linux's TCP: curl in a namespace fetches the status page
and a 10 MB body from pyfw.stack over a TAP device."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import pytest
from oracle import root_netns_problem
from stack_sim import HttpGet
from tap_link import LINUX_ADDR, STACK_ADDR, TapLink

from pyfw.stack import Stack
from pyfw.stack.http import pattern_bytes, status_app
from pyfw.stack.stack import format_addr

problem = root_netns_problem() or (None if shutil.which("curl") else "curl not installed")
pytestmark = [pytest.mark.root, pytest.mark.skipif(problem is not None, reason=str(problem))]

N = 10 * 1024 * 1024
URL = f"http://{format_addr(STACK_ADDR)}"


def _stack(cc: str) -> Stack:
    stack = Stack(cc=cc)
    stack.listen(STACK_ADDR, 80, status_app(lambda: {"counters": stack.stats(), "sockets": stack.sockets(),
                                                       "interfaces": [{"name": "tap0", "mtu": 1500}]}))
    return stack


@pytest.mark.parametrize("cc", ["cubic", "reno"])
def test_curl_fetches_status_and_10mb(cc: str) -> None:
    stack = _stack(cc)
    with TapLink(stack) as link:
        proc = link.popen(["curl", "-sS", "--max-time", "20", f"{URL}/status.json", "-o", "-", "-w",
                           "\\n%{http_code}", f"{URL}/"])
        assert link.pump(lambda: proc.poll() is not None, timeout=25)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        text = out.decode()
        status = json.loads(text[:text.index("\n}") + 2])
        assert status["counters"]["PassiveOpens"] >= 1
        assert "<h1>pyfw status</h1>" in text and text.endswith("200")

        proc = link.popen(["sh", "-c", f"curl -sS --max-time 60 '{URL}/bytes?n={N}' | sha256sum"])
        assert link.pump(lambda: proc.poll() is not None, timeout=65)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert out.split()[0].decode() == hashlib.sha256(pattern_bytes(N)).hexdigest()
        assert stack.counters["StackErrors"] == 0, stack.last_error
        assert stack.counters["AppErrors"] == 0, stack.last_app_error


@pytest.mark.parametrize("cc", ["cubic", "reno"])
def test_faulty_link_download_and_upload_intact(cc: str) -> None:
    """2% loss, 1% duplication, 2% reordering both ways: Linux's TCP and
    ours both recover (no SACK: NewReno on both ends)."""
    stack = _stack(cc)
    n = 2 * 1024 * 1024
    with TapLink(stack, loss=0.02, dup=0.01, reorder=0.02, seed=11) as link:
        proc = link.popen(["sh", "-c", f"curl -sS --max-time 60 '{URL}/bytes?n={n}' | sha256sum"])
        assert link.pump(lambda: proc.poll() is not None, timeout=65)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert out.split()[0].decode() == hashlib.sha256(pattern_bytes(n)).hexdigest()
        assert stack.counters["RetransSegs"] > 0 and link.faulted > 0
        proc = link.popen(["sh", "-c", f"head -c {n} /dev/zero | tr '\\000' 'u' | curl -sS --max-time 60 "
                                       f"--data-binary @- -H 'Content-Type: application/octet-stream' {URL}/upload"])
        assert link.pump(lambda: proc.poll() is not None, timeout=65)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert json.loads(out) == {"bytes": n, "sha256": hashlib.sha256(b"u" * n).hexdigest()}
    assert stack.counters["StackErrors"] == 0, stack.last_error


UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"ping " * 200, ("10.77.0.2", 5353))
data, addr = s.recvfrom(4096)
print(addr[0], addr[1], data.decode())
"""


def test_udp_echo_with_linux() -> None:
    stack = Stack()
    seen: list[tuple[int, int, bytes]] = []

    def echo(src: int, sport: int, data: bytes) -> None:
        seen.append((src, sport, data))
        stack.udp_send(STACK_ADDR, 5353, src, sport, b"pong:" + data[:10])

    stack.udp_bind(STACK_ADDR, 5353, echo)
    with TapLink(stack) as link:
        proc = link.popen(["python3", "-c", UDP_CLIENT])
        assert link.pump(lambda: proc.poll() is not None, timeout=10)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
    assert out.decode().strip() == "10.77.0.2 5353 pong:ping ping"
    assert len(seen) == 1 and seen[0][2] == b"ping " * 200


SERVER = """
import hashlib, http.server, sys
body = bytes(range(256)) * (int(sys.argv[1]) // 256)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("10.77.0.1", 8080), H)
print("ready", flush=True)
srv.handle_request()
"""


def test_active_open_download_from_linux() -> None:
    """Our stack as the client: SYN_SENT against Linux's listener, then a
    bulk transfer with Linux sending (window scaling and SACK from our side)."""
    n = 4 * 1024 * 1024
    stack = Stack()
    with TapLink(stack) as link:
        srv = link.popen(["python3", "-c", SERVER, str(n)])
        assert srv.stdout is not None and srv.stdout.readline().strip() == b"ready"
        app = HttpGet("/", close=True)
        conn = stack.connect(STACK_ADDR, 40123, LINUX_ADDR, 8080, app, now=time.monotonic())
        try:
            assert link.pump(lambda: app.complete, timeout=30)
        finally:
            srv.kill()
            srv.wait()
        assert app.head is not None and app.head.startswith(b"HTTP/1.1 200 ")
        assert app.hash.hexdigest() == hashlib.sha256(pattern_bytes(n)).hexdigest()
        assert conn.sack_ok and conn.snd_wscale > 0 and conn.mss == 1460
        assert stack.counters["StackErrors"] == 0, stack.last_error
