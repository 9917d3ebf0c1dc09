"""A restore on the live NFQUEUE daemon keeps connection tracking: a TCP
stream opened before a `pyfw-restore` over the socket (or a SIGHUP reload
of the ruleset file) goes on flowing under a ruleset that refuses new
connections of its kind, while a new one is refused; counters survive a
`-A`.

The lab is test_ops' (lan -- gw -- wan, MASQUERADE, FORWARD policy DROP with
an ESTABLISHED,RELATED accept).  If the restore lost the connection table,
the stream's next segment from the server would be a new connection to the
gateway itself (its masquerading gone), answered with a reset.  Traffic
only between the lab's namespaces, bounded in rate and time.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_nfqueue import PY, Lab, client, pyfw
from test_ops import RULES, Daemon

PORT = 91

# sends 1 KiB every 5 ms on every connection (about 200 KB/s), until it breaks
STREAM_SERVER = r"""
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
def feed(c):
    try:
        while True:
            c.sendall(b"x" * 1024); time.sleep(0.005)
    except OSError:
        c.close()
print("ready", flush=True)
while True:
    threading.Thread(target=feed, args=(s.accept()[0],), daemon=True).start()
"""

# one connection, read without end; each line on stdin is answered with the
# bytes received so far and whether the stream still stands
STREAM_CLIENT = r"""
import socket, sys, threading
c = socket.create_connection(("203.0.113.2", int(sys.argv[1])), timeout=5)
c.settimeout(None)
got, state = [0], ["open"]
def read():
    try:
        while b := c.recv(65536):
            got[0] += len(b)
        state[0] = "closed"
    except OSError as e:
        state[0] = type(e).__name__
threading.Thread(target=read, daemon=True).start()
print("connected", flush=True)
for _ in sys.stdin:
    print(got[0], state[0], flush=True)
"""


class Stream:
    """A lan client holding one TCP stream from the wan server open."""

    def __init__(self, lab: Lab) -> None:
        self.proc = lab.spawn(lab.lan, PY, "-c", STREAM_CLIENT, str(PORT), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "connected"

    def received(self) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        n, state = self.proc.stdout.readline().split()
        return int(n), state

    def flowing(self, least: int = 50_000, within: float = 5.0) -> bool:
        """Whether `least` more bytes arrive within `within` seconds (the
        stream still open)."""
        start, state = self.received()
        deadline = time.monotonic() + within
        while state == "open" and time.monotonic() < deadline:
            n, state = self.received()
            if n - start >= least:
                return state == "open"
            time.sleep(0.05)
        return False


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        lab.server(lab.wan, "wan", "80")
        p = lab.spawn(lab.wan, PY, "-c", STREAM_SERVER, str(PORT), stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield lab
    finally:
        lab.down()


def refusing(lab: Lab) -> str:
    """test_ops' ruleset with new connections to the stream's port refused."""
    accept = f"-A FORWARD -i {lab.gl} -j ACCEPT"
    return RULES.format(lan=lab.gl, wan=lab.gwn).replace(
        accept, f"-A FORWARD -i {lab.gl} -p tcp --dport {PORT} -j REJECT --reject-with tcp-reset\n{accept}")


def reload(d: Daemon) -> None:
    """SIGHUP, and wait for the daemon's line saying it reloaded."""
    before = d.log.count("reloaded ")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while d.log.count("reloaded ") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.log.count("reloaded ") == before + 1, d.log


def counter(lab: Lab, d: Daemon, rule: str) -> int:
    """The packet counter of the rule `rule` (its -A line) in pyfw-save -c."""
    out = pyfw(lab, d.sock, "-c", prog="pyfw-save").stdout
    m = re.search(r"^\[(\d+):\d+\] " + re.escape(rule) + "$", out, re.M)
    assert m is not None, out
    return int(m.group(1))


@pytest.mark.parametrize("workers", [1, 2])
def test_restore_and_reload_keep_open_streams(lab: Lab, tmp_path: Path, workers: int) -> None:
    """With workers, every worker's share of the connections survives the swap."""
    d = Daemon(lab, tmp_path, *(["--workers", str(workers), "--outside", lab.gwn] if workers > 1 else []))
    streams: list[Stream] = []
    try:
        first = Stream(lab)
        streams.append(first)
        assert first.flowing()
        # a restore over the socket refusing new connections to the port: the
        # open stream goes on, a new connection is refused
        r = pyfw(lab, d.sock, prog="pyfw-restore", stdin=refusing(lab))
        assert r.returncode == 0, r.stderr
        assert f"--dport {PORT} -j REJECT" in pyfw(lab, d.sock, "-S", "FORWARD").stdout
        assert client(lab, lab.lan, "tcp", "203.0.113.2", PORT) == {"error": "refused"}
        assert first.flowing(), d.log
        # SIGHUP reloads the file (which accepts): a second stream opens
        reload(d)
        assert f"--dport {PORT} -j REJECT" not in pyfw(lab, d.sock, "-S", "FORWARD").stdout
        second = Stream(lab)
        streams.append(second)
        assert second.flowing() and first.flowing()
        # the file made to refuse, reloaded by SIGHUP: both streams go on, new ones are refused
        (tmp_path / "d.rules").write_text(refusing(lab))
        reload(d)
        assert client(lab, lab.lan, "tcp", "203.0.113.2", PORT) == {"error": "refused"}
        assert first.flowing() and second.flowing(), d.log
        # counters survive a -A: three new UDP flows counted by the LOG rule, then a rule appended
        log_rule = f'-A FORWARD -i {lab.gl} -p udp -m udp --dport 5353 -j LOG --log-prefix "pyfw-test: " ' \
                   "--log-level 7"
        established = "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        assert counter(lab, d, log_rule) == 0
        for _ in range(3):
            assert client(lab, lab.lan, "udp", "203.0.113.2", 5353) == {"ok": "wan 203.0.113.1"}
        streamed = counter(lab, d, established)
        assert counter(lab, d, log_rule) == 3 and streamed >= 50
        r = pyfw(lab, d.sock, "-A", "FORWARD", "-i", lab.gl, "-p", "udp", "--dport", "9", "-j", "DROP")
        assert r.returncode == 0, r.stderr
        assert counter(lab, d, log_rule) == 3
        assert counter(lab, d, established) >= streamed
        assert first.flowing() and second.flowing()
        assert [s.received()[1] for s in streams] == ["open", "open"]
    finally:
        for s in streams:
            if s.proc.stdin is not None:
                s.proc.stdin.close()
    assert d.stop() == 0, d.log
