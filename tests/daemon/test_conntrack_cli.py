"""`pyfw conntrack` (issue 5): conntrack-tools' command against the daemon's
connection table.

The unit tests run an in-process control server (pyfw.daemon.control with
pyfw.daemon.ctops) over an Engine fed crafted frames on a fake clock, and
talk to it as the command line does.  The differential test sends the same
TCP, UDP and ICMP connections (MASQUERADE'd, one DNAT'ed, one CONNMARK'ed)
through a gateway namespace (tests/gateway_lab.py) and through the engine,
then runs the same `conntrack` command lines against both: the kernel's
`conntrack` and `pyfw conntrack` must print the same entries (timeouts
masked), the same messages and exit statuses, and `-E` the same events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyfw.cli import conntrack as cc  # noqa: E402
from pyfw.daemon.control import ControlServer, LiveStore  # noqa: E402
from pyfw.daemon.ctops import CtSource  # noqa: E402

scapy = pytest.importorskip("scapy.all")
Ether, IP, TCP, UDP, ICMP, raw = scapy.Ether, scapy.IP, scapy.TCP, scapy.UDP, scapy.ICMP, scapy.raw

ROOT = Path(__file__).resolve().parents[2]
HEAD = "conntrack v1.4.7 (conntrack-tools): "

HOST = """
[host]
name = "gw"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:01"
addresses = ["192.168.1.1/24"]
[[interface]]
name = "eth1"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
[[route]]
to = "default"
via = "203.0.113.254"
dev = "eth1"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"
[[neighbor]]
ip = "192.168.1.10"
mac = "02:00:00:00:00:10"
dev = "eth0"
[sysctl]
"net.ipv4.ip_forward" = 1
"""

RULES = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j CONNMARK --set-mark 0x5
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
"""


class Gateway:
    """An Engine on a fake clock behind a control server served by a thread."""

    def __init__(self, tmp: Path) -> None:
        from pyfw.cli.simulate import load_ruleset
        from pyfw.engine.engine import Engine
        from pyfw.engine.host import load_host

        (tmp / "host.toml").write_text(HOST)
        (tmp / "rules").write_text(RULES)
        self.engine = Engine(load_ruleset(str(tmp / "rules")), load_host(tmp / "host.toml"))
        self.t = 1000.0
        self.lock = threading.Lock()
        self.sock = str(tmp / "pyfw.sock")
        eng = self.engine
        self.server = ControlServer(self.sock, LiveStore(eng.ruleset, eng.load),
                                    CtSource(lambda: [eng.ct], lambda: eng.now))
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.server], [], [], 0.02)
            if ready:
                with self.lock:
                    self.server.handle_one()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.server.close()

    def frame(self, iface: str, pkt: Any, dt: float = 0.1) -> Any:
        mac, peer = ("02:00:00:00:00:01", "02:00:00:00:00:10") if iface == "eth0" else \
            ("02:00:00:00:00:02", "02:00:00:00:00:fe")
        with self.lock:
            self.t += dt
            return self.engine.receive(raw(Ether(dst=mac, src=peer) / pkt), iface, self.t)

    def traffic(self) -> None:
        """UDP (CONNMARK 5) with a reply, a TCP handshake, an unanswered ping, a DNAT'ed SYN."""
        lan, wan = "eth0", "eth1"
        self.frame(lan, IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=5000, dport=53) / b"q")
        self.frame(wan, IP(src="8.8.8.8", dst="203.0.113.1") / UDP(sport=53, dport=5000) / b"a")
        self.frame(lan, IP(src="192.168.1.10", dst="1.1.1.1") / TCP(sport=4000, dport=80, flags="S", seq=1))
        self.frame(wan, IP(src="1.1.1.1", dst="203.0.113.1") / TCP(sport=80, dport=4000, flags="SA", seq=100,
                                                                   ack=2))
        self.frame(lan, IP(src="192.168.1.10", dst="1.1.1.1") / TCP(sport=4000, dport=80, flags="A", seq=2,
                                                                    ack=101))
        self.frame(lan, IP(src="192.168.1.10", dst="9.9.9.9") / ICMP(id=7, seq=1))
        self.frame(wan, IP(src="5.5.5.5", dst="203.0.113.1") / TCP(sport=6000, dport=8080, flags="S", seq=9))

    def run(self, *args: str) -> tuple[int, str, str]:
        r = cc.run(["--socket", self.sock, *args])
        return r.rc, r.out, r.err


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    g = Gateway(tmp_path)
    try:
        yield g
    finally:
        g.close()


UDP_LINE = ("udp      17 29 src=192.168.1.10 dst=8.8.8.8 sport=5000 dport=53 src=8.8.8.8 dst=203.0.113.1 "
            "sport=53 dport=5000 mark=5 use=1")
TCP_LINE = ("tcp      6 431999 ESTABLISHED src=192.168.1.10 dst=1.1.1.1 sport=4000 dport=80 src=1.1.1.1 "
            "dst=203.0.113.1 sport=80 dport=4000 [ASSURED] mark=0 use=1")
ICMP_LINE = ("icmp     1 29 src=192.168.1.10 dst=9.9.9.9 type=8 code=0 id=7 [UNREPLIED] src=9.9.9.9 "
             "dst=203.0.113.1 type=0 code=0 id=7 mark=0 use=1")
DNAT_LINE = ("tcp      6 119 SYN_SENT src=5.5.5.5 dst=203.0.113.1 sport=6000 dport=8080 [UNREPLIED] "
             "src=192.168.1.10 dst=5.5.5.5 sport=80 dport=6000 mark=0 use=1")


def test_list_count_and_messages(gw: Gateway) -> None:
    gw.traffic()
    gw.engine.now += 0.05
    rc, out, err = gw.run("-L")
    assert rc == 0
    assert sorted(out.splitlines()) == sorted([UDP_LINE, TCP_LINE, ICMP_LINE, DNAT_LINE])
    assert err == HEAD + "4 flow entries have been shown.\n"
    assert gw.run("-C") == (0, "4\n", "")
    rc, out, err = gw.run("-L", "-o", "extended,id", "-p", "udp")
    assert out.startswith("ipv4     2 udp      17 ") and re.search(r" use=1 id=\d+\n$", out)
    rc, out, _ = gw.run("-S")
    assert re.fullmatch(r"cpu=0   \tfound=\d+ invalid=\d+ insert=0 insert_failed=0 drop=0 early_drop=0 "
                        r"error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n", out)
    assert gw.run("-V") == (0, "conntrack v1.4.7 (conntrack-tools)\n", "")
    assert gw.run("-h")[1].startswith("Command line interface for the connection tracking system. Version 1.4.7\n")
    assert gw.run("-L", "expect") == (0, "", HEAD + "0 expectations have been shown.\n")


@pytest.mark.parametrize("args,expect", [
    (["-p", "tcp"], [TCP_LINE, DNAT_LINE]),
    (["-p", "6", "--state", "SYN_SENT"], [DNAT_LINE]),
    (["--proto", "udp"], [UDP_LINE]),
    (["-p", "icmp", "--icmp-type", "8", "--icmp-id", "7"], [ICMP_LINE]),
    (["-s", "192.168.1.10"], [UDP_LINE, TCP_LINE, ICMP_LINE]),
    (["-s", "192.168.0.0/16", "-d", "1.1.1.1"], [TCP_LINE]),
    (["--orig-dst", "203.0.113.1"], [DNAT_LINE]),
    (["-r", "192.168.1.10"], [DNAT_LINE]),
    (["--reply-dst", "203.0.113.1"], [UDP_LINE, TCP_LINE, ICMP_LINE]),
    (["-p", "tcp", "--dport", "80"], [TCP_LINE]),
    (["-p", "tcp", "--reply-port-src", "80"], [TCP_LINE, DNAT_LINE]),
    (["--mark", "5"], [UDP_LINE]),
    (["-m", "0x4/0xfe"], [UDP_LINE]),
    (["-m", "0/0xfe"], [TCP_LINE, ICMP_LINE, DNAT_LINE]),
    (["-u", "ASSURED"], [TCP_LINE]),
    (["-u", "SEEN_REPLY"], [UDP_LINE, TCP_LINE]),
    (["--dst-nat", "192.168.1.10"], [DNAT_LINE]),
    (["--dst-nat", "192.168.1.10:80", "-p", "tcp"], [DNAT_LINE]),
    (["--src-nat", "203.0.113.1"], [UDP_LINE, TCP_LINE, ICMP_LINE]),
    (["-p", "tcp", "--src-nat"], [TCP_LINE]),
    (["-f", "ipv6"], []),
])
def test_filters(gw: Gateway, args: list[str], expect: list[str]) -> None:
    gw.traffic()
    gw.engine.now += 0.05
    rc, out, err = gw.run("-L", *args)
    assert rc == 0, err
    assert sorted(out.splitlines()) == sorted(expect)
    assert err == HEAD + f"{len(expect)} flow entries have been shown.\n"


def test_delete_and_flush(gw: Gateway) -> None:
    gw.traffic()
    gw.engine.now += 0.05
    assert gw.run("-D", "-p", "udp") == (0, UDP_LINE + "\n", HEAD + "1 flow entries have been deleted.\n")
    assert gw.run("-D", "-p", "udp") == (1, "", HEAD + "0 flow entries have been deleted.\n")
    assert gw.run("-C") == (0, "3\n", "")
    assert gw.run("-F") == (0, "", HEAD + "connection tracking table has been emptied.\n")
    assert gw.run("-C") == (0, "0\n", "")
    # the next packet of a flushed connection starts a new one
    gw.frame("eth0", IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=5000, dport=53) / b"q")
    assert gw.run("-C") == (0, "1\n", "")


@pytest.mark.parametrize("args,message", [
    (["-X"], "unknown option `-X'"),
    (["-L", "-p", "foo"], "`foo' unsupported protocol"),
    (["-C", "-p", "tcp"], "Illegal option `--protonum' with this command"),
    (["-L", "-F"], "Invalid commands combination"),
    (["-L", "-p", "tcp", "--state", "established"], "unknown TCP state `established'"),
    (["-L", "--dport", "5"], "unknown option `--dport'"),
    (["-L", "-s"], "option `-s' requires an argument"),
    (["-L", "-s", "foo"], "Invalid IP address `foo'"),
    (["-L", "-r", "1.2.3.0/24"], "CIDR notation unavailable for `--reply-src'"),
    (["-L", "-s", "1.2.3.4/33"], "Invalid netmask"),
    (["-L", "-o", "foo"], "Bad parameter `foo'"),
    (["-L", "-z", "-p", "tcp"], "Can't use -z with filtering parameters"),
    (["-L", "-j", "-n"], "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'"),
    (["-C", "extra"], "unknown type `extra'"),
    (["-E", "-u", "ASSURED"], "Illegal option `--status' with this command"),
    (["-L", "--s", "1.1.1.1"], "unknown option `--s'"),
])
def test_parameter_problems(gw: Gateway, args: list[str], message: str) -> None:
    assert gw.run(*args) == (2, "", HEAD + message + "\n" + cc.TRY_HELP)


def test_no_daemon(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    rc, out, err = cc.run(["--socket", sock, "-L"]).__iter__()
    assert (rc, out) == (1, "")
    assert err.startswith(f"pyfw conntrack: cannot reach the pyfw daemon at {sock}: ")
    # parameter problems are found before the daemon is asked
    assert cc.run(["--socket", sock, "-L", "-p", "foo"]).rc == 2


def _subscribe(gw: Gateway, *args: str) -> socket.socket:
    q, _ = cc.parse(["-E", *args])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(gw.sock)
    s.sendall(json.dumps({"conntrack": q.to_json(), "portid": 4242}).encode())
    s.shutdown(socket.SHUT_WR)
    return s


def _lines(s: socket.socket, n: int) -> list[str]:
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode().splitlines()


def test_events(gw: Gateway) -> None:
    everything = _subscribe(gw)
    tcp_only = _subscribe(gw, "-p", "tcp", "-e", "NEW,DESTROY")
    assert _lines(everything, 1) == ['{"ok": true}'] and _lines(tcp_only, 1) == ['{"ok": true}']
    gw.traffic()
    gw.run("-D", "-p", "udp")
    got = _lines(everything, 8)
    assert got[:3] == [
        "    [NEW] udp      17 30 src=192.168.1.10 dst=8.8.8.8 sport=5000 dport=53 [UNREPLIED] src=8.8.8.8 "
        "dst=203.0.113.1 sport=53 dport=5000 mark=5",
        " [UPDATE] udp      17 30 src=192.168.1.10 dst=8.8.8.8 sport=5000 dport=53 src=8.8.8.8 "
        "dst=203.0.113.1 sport=53 dport=5000 mark=5",
        "    [NEW] tcp      6 120 SYN_SENT src=192.168.1.10 dst=1.1.1.1 sport=4000 dport=80 [UNREPLIED] "
        "src=1.1.1.1 dst=203.0.113.1 sport=80 dport=4000",
    ]
    assert got[3].startswith(" [UPDATE] tcp      6 60 SYN_RECV ")
    assert got[4].startswith(" [UPDATE] tcp      6 432000 ESTABLISHED ") and got[4].endswith(" [ASSURED]")
    assert got[5].startswith("    [NEW] icmp     1 30 ")
    assert got[6].startswith("    [NEW] tcp      6 120 SYN_SENT src=5.5.5.5 ")
    assert got[7].startswith("[DESTROY] udp      17 29 ") and got[7].endswith(f" mark=5 [USERSPACE] portid={os.getpid()}")
    tcp_lines = _lines(tcp_only, 2)
    assert [line[:9] for line in tcp_lines] == ["    [NEW]", "    [NEW]"]
    assert all(" tcp " in line for line in tcp_lines)
    # a connection the garbage collector removes: no timeout left to show
    gw.frame("eth0", IP(src="192.168.1.10", dst="9.9.9.9") / ICMP(id=8, seq=1), dt=40)
    gone = _lines(everything, 2)
    assert "[DESTROY] icmp     1 src=192.168.1.10 dst=9.9.9.9 type=8 code=0 id=7 [UNREPLIED] " \
           "src=9.9.9.9 dst=203.0.113.1 type=0 code=0 id=7" == gone[0]
    assert gone[1].startswith("    [NEW] icmp     1 30 src=192.168.1.10 dst=9.9.9.9 type=8 code=0 id=8 ")
    everything.close()
    tcp_only.close()
    # readers that went away are dropped at the next event
    gw.frame("eth0", IP(src="192.168.1.10", dst="9.9.9.9") / ICMP(id=9, seq=1))
    gw.frame("eth0", IP(src="192.168.1.10", dst="9.9.9.9") / ICMP(id=10, seq=1))
    assert not gw.engine.ct.listeners


def test_follow_command_line(gw: Gateway) -> None:
    """`pyfw conntrack -E` as a process: lines as they come, the count at SIGINT."""
    code = "import sys; sys.argv = ['pyfw', *sys.argv[1:]]; from pyfw.cli.main import main_pyfw; main_pyfw()"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", code, "conntrack", "-E", "--socket", gw.sock, "-p", "udp"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: bool(gw.engine.ct.listeners))
        gw.traffic()
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith("    [NEW] udp      17 30 src=192.168.1.10 ")
        assert p.stdout.readline().startswith(" [UPDATE] udp ")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0
    assert out == ""
    assert err == HEAD + "2 flow events have been shown.\n"


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_no_listener_no_cost(gw: Gateway) -> None:
    """Without a reader the engine has no listener to call."""
    gw.traffic()
    assert gw.engine.ct.listeners == [] and gw.engine.ct.table.listeners is gw.engine.ct.listeners


# ====================================================================== against the kernel
def _kernel_lab_problem() -> str | None:
    try:
        from gateway_lab import lab_problem
    except ImportError as exc:  # pragma: no cover
        return str(exc)
    return lab_problem()


_MASK = re.compile(r"^((?:\s*\[\w+\]\s+)?(?:ipv4\s+2\s+)?\S+\s+\d+\s+)(\d+ )")


def _norm(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = _MASK.sub(r"\1T ", line)
        line = re.sub(r" id=\d+$", " id=N", line) if " use=1 id=" in line else line
        line = re.sub(r"portid=\d+", "portid=N", line)
        line = re.sub(r"<timeout>\d+</timeout>", "<timeout>T</timeout>", line)
        line = re.sub(r"<id>\d+</id>", "<id>N</id>", line)
        out.append(" ".join(line.split()))
    return sorted(out)


def _kernel_events_ready(lab: Any, events: subprocess.Popen[str]) -> None:
    """Wait until `conntrack -E` reads the kernel's events: ping over lo
    until its entry shows up, then delete it (its lines are left out)."""
    assert events.stdout is not None
    os.set_blocking(events.stdout.fileno(), False)
    deadline = time.monotonic() + 20
    seen = ""
    while "127.0.0.1" not in seen:
        assert time.monotonic() < deadline, "conntrack -E saw no event"
        lab.x("gw", "ping", "-c1", "-W1", "127.0.0.1", check=False)
        ready, _, _ = select.select([events.stdout], [], [], 0.5)
        if ready:
            seen += events.stdout.read() or ""
    lab.x("gw", "conntrack", "-D", "-s", "127.0.0.1", check=False)
    os.set_blocking(events.stdout.fileno(), True)


def _destroys_sorted(lines: list[str]) -> list[str]:
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("[DESTROY]"):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line:
            out.append(line)
    return out


DIFF_ARGS = [
    ["-L"], ["-L", "-p", "tcp"], ["-L", "-p", "udp"], ["-L", "-p", "icmp"], ["-L", "-s", "192.168.10.2"],
    ["-L", "-s", "192.168.10.0/24"], ["-L", "-d", "198.51.100.7"], ["-L", "-r", "198.51.100.7"],
    ["-L", "-q", "203.0.113.1"], ["-L", "-p", "tcp", "--dport", "80"], ["-L", "-p", "tcp", "--sport", "4000"],
    ["-L", "-p", "tcp", "--state", "ESTABLISHED"], ["-L", "-p", "tcp", "--state", "SYN_SENT"],
    ["-L", "-p", "udp", "--dport", "53"], ["-L", "-p", "icmp", "--icmp-type", "8"], ["-L", "--src-nat"],
    ["-L", "--dst-nat"], ["-L", "--src-nat", "203.0.113.1"], ["-L", "--dst-nat", "192.168.10.3"],
    ["-L", "-p", "tcp", "--dst-nat", "192.168.10.3:80"], ["-L", "-j"], ["-L", "--any-nat", "192.168.10.3"],
    ["-L", "--mark", "5"], ["-L", "-m", "0x4/0x4"], ["-L", "-u", "ASSURED"], ["-L", "-u", "SEEN_REPLY"],
    ["-L", "-o", "extended"], ["-L", "-o", "id"], ["-L", "-o", "xml"], ["-L", "-p", "tcp", "-o", "xml,id"],
    ["-L", "-p", "sctp", "-o", "xml"], ["-L", "-z"], ["-L", "-f", "ipv6"], ["-C"], ["-L", "-p", "foo"],
    ["-C", "-p", "tcp"], ["-X"], ["-L", "-p", "tcp", "--state", "BAD"],
    ["-G", "-p", "tcp", "-s", "192.168.10.2", "-d", "198.51.100.7", "--sport", "4000", "--dport", "80"],
    ["-G", "-p", "tcp", "-s", "198.51.100.7", "-d", "203.0.113.1", "--sport", "80", "--dport", "4000"],
    ["-G", "-p", "udp", "-r", "198.51.100.7", "-q", "203.0.113.1", "--reply-port-src", "53",
     "--reply-port-dst", "5353"],
    ["-G", "-p", "icmp", "-s", "192.168.10.2", "-d", "198.51.100.7", "--icmp-type", "8", "--icmp-code", "0",
     "--icmp-id", "119"],
    ["-G", "-p", "tcp", "-s", "192.168.10.2", "-d", "198.51.100.7", "--sport", "4001", "--dport", "80"],
    ["-G", "-p", "tcp", "-s", "192.168.10.2"], ["-G", "-s", "192.168.10.2", "-d", "198.51.100.7"], ["-D", "-p", "udp", "--dport", "9"],
    ["-D", "-p", "udp", "--dport", "53"], ["-L", "-p", "udp"], ["-C"], ["-D", "-p", "icmp", "-o", "xml"],
    ["-F"], ["-C"], ["-L"],
]


@pytest.mark.skipif(_kernel_lab_problem() is not None, reason=str(_kernel_lab_problem()))
def test_like_the_kernels_conntrack(tmp_path: Path) -> None:
    from gateway_lab import Frame, GatewayLab, PyfwSide, default_spec

    spec = default_spec()
    rules = (RULES.replace("-i eth1", "-i wan").replace("-o eth1", "-o wan")
             .replace("--set-mark 0x5\n", "--set-mark 0x5\n-A PREROUTING -i wan -p udp --sport 53 -j CONNMARK "
                      "--set-mark 0x2/0x2\n-A POSTROUTING -p icmp -j CONNMARK --set-mark 0x9\n")
             .replace("192.168.1.10:80", "192.168.10.3:80")
             + "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT\nCOMMIT\n")
    (tmp_path / "rules").write_text(rules)
    (tmp_path / "host.toml").write_text(spec.host_toml())
    side = PyfwSide(tmp_path / "rules", tmp_path / "host.toml")
    eng = side.engine
    sock = str(tmp_path / "pyfw.sock")
    server = ControlServer(sock, LiveStore(eng.ruleset, eng.load), CtSource(lambda: [eng.ct], lambda: eng.now))
    lan, wan = spec.iface("lan"), spec.iface("wan")

    def on(iface: Any, pkt: Any) -> Frame:
        return Frame(iface.name, raw(Ether(dst=iface.mac, src=iface.peer_mac) / pkt))

    L2, X, GW = "192.168.10.2", "198.51.100.7", "203.0.113.1"
    frames = [
        on(lan, IP(src=L2, dst=X, id=0x3101) / TCP(sport=4000, dport=80, flags="S", seq=1000)),
        on(wan, IP(src=X, dst=GW, id=0x3102) / TCP(sport=80, dport=4000, flags="SA", seq=5000, ack=1001)),
        on(lan, IP(src=L2, dst=X, id=0x3103) / TCP(sport=4000, dport=80, flags="A", seq=1001, ack=5001)),
        on(lan, IP(src=L2, dst=X, id=0x3104) / UDP(sport=5353, dport=53) / b"query"),
        on(wan, IP(src=X, dst=GW, id=0x3105) / UDP(sport=53, dport=5353) / b"answer"),
        on(lan, IP(src=L2, dst=X, id=0x3106) / ICMP(id=0x77, seq=1)),
        on(wan, IP(src=X, dst=GW, id=0x3107) / ICMP(type=0, id=0x77, seq=1)),
        on(lan, IP(src=L2, dst=X, id=0x3108) / UDP(sport=6000, dport=9) / b"x"),
        on(wan, IP(src=X, dst=GW, id=0x3109) / TCP(sport=7000, dport=8080, flags="S", seq=77)),
    ]
    problems: list[str] = []
    with GatewayLab(spec) as lab:
        lab.restore(rules)
        events = subprocess.Popen(["ip", "netns", "exec", lab.ns["gw"], "conntrack", "-E"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stop = False
        lock = threading.Lock()  # the daemon serves its socket between two packets

        def serve() -> None:
            while not stop:
                ready, _, _ = select.select([server], [], [], 0.02)
                if ready:
                    with lock:
                        server.handle_one()

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        try:
            _kernel_events_ready(lab, events)
            q, _ = cc.parse(["-E"])
            sub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sub.connect(sock)
            sub.sendall(json.dumps({"conntrack": q.to_json(), "portid": 1}).encode())
            sub.shutdown(socket.SHUT_WR)
            sub.settimeout(5)
            assert sub.recv(13) == b'{"ok": true}\n'
            for f in frames:
                t = time.time()
                lab.send(f)
                with lock:
                    side.step(f, t)
                lab.drain(0.03)
            eng.now = time.time()
            for args in DIFF_ARGS:
                k = subprocess.run(["ip", "netns", "exec", lab.ns["gw"], "conntrack", *args],
                                   capture_output=True, text=True, timeout=30)
                eng.now = time.time()
                p = cc.run(["--socket", sock, *args])
                if (k.returncode, _norm(k.stdout), k.stderr) != (p.rc, _norm(p.out), p.err):
                    problems.append(f"conntrack {' '.join(args)}:\n  kernel rc={k.returncode} {_norm(k.stdout)} "
                                    f"{k.stderr!r}\n  pyfw   rc={p.rc} {_norm(p.out)} {p.err!r}")
            time.sleep(0.2)
            events.send_signal(signal.SIGTERM)
            k_out, k_err = events.communicate(timeout=10)
            sub_buf = b""
            sub.settimeout(0.5)
            with contextlib.suppress(OSError):
                while chunk := sub.recv(65536):
                    sub_buf += chunk
            sub.close()
        finally:
            stop = True
            th.join(5)
            server.close()
            if events.poll() is None:
                events.kill()
                events.wait()
    k_events = [" ".join(_MASK.sub(r"\1T ", x).split()) for x in k_out.splitlines() if "127.0.0.1" not in x]
    p_events = [" ".join(_MASK.sub(r"\1T ", x).split()) for x in sub_buf.decode().splitlines()]
    # the reader names the deleting program if it still runs: racy either side
    k_events = [re.sub(r"portid=\d+( progname=\S+)?", "portid=N", x) for x in k_events]
    p_events = [re.sub(r"portid=\d+( progname=\S+)?", "portid=N", x) for x in p_events]
    # a flush destroys in hash order: compare each run of DESTROY lines as a set
    k_events, p_events = _destroys_sorted(k_events), _destroys_sorted(p_events)
    if k_events != p_events:
        problems.append("conntrack -E:\n  kernel " + "\n         ".join(k_events)
                        + "\n  pyfw   " + "\n         ".join(p_events))
    assert k_err.endswith("flow events have been shown.\n")
    assert not problems, "\n".join(problems)


def test_progname_of_a_live_deleter() -> None:
    line = f"[DESTROY] udp      17 29 src=1.1.1.1 [USERSPACE] portid={os.getpid()}\n"
    with open(f"/proc/{os.getpid()}/comm") as f:
        comm = f.read().strip()
    assert cc._with_progname(line) == line[:-1] + f" progname={comm}\n"
    assert cc._with_progname("[DESTROY] udp [USERSPACE] portid=999999999\n").endswith("portid=999999999\n")


def test_xml_output(gw: Gateway) -> None:
    gw.traffic()
    gw.engine.now += 0.05
    rc, out, err = gw.run("-L", "-p", "udp", "-o", "xml")
    flow = re.sub(r"<id>\d+</id>", "<id>N</id>", out.splitlines()[2])
    assert out.splitlines()[:2] == ['<?xml version="1.0" encoding="utf-8"?>', "<conntrack>"]
    assert out.splitlines()[3:] == ["</conntrack>"]
    assert flow == (
        '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>192.168.1.10</src>'
        '<dst>8.8.8.8</dst></layer3><layer4 protonum="17" protoname="udp"><sport>5000</sport><dport>53</dport>'
        '</layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>8.8.8.8</src>'
        '<dst>203.0.113.1</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport>'
        '<dport>5000</dport></layer4></meta><meta direction="independent"><timeout>29</timeout><mark>5</mark>'
        '<use>1</use><id>N</id></meta></flow>')
    assert gw.run("-L", "-p", "gre", "-o", "xml") == (0, "", HEAD + "0 flow entries have been shown.\n")
    rc, out, err = gw.run("-D", "-p", "icmp", "-o", "xml")
    assert rc == 0 and out.startswith("<flow>") and "<layer4 protonum=\"1\" protoname=\"icmp\"></layer4>" in out
    assert out.rstrip().endswith("<unreplied/></meta></flow>") and out.count("\n") == 1


def test_get(gw: Gateway) -> None:
    gw.traffic()
    gw.engine.now += 0.05
    tcp = ["-p", "tcp", "-s", "192.168.1.10", "-d", "1.1.1.1", "--sport", "4000", "--dport", "80"]
    assert gw.run("-G", *tcp) == (0, TCP_LINE.replace("use=1", "use=2") + "\n",
                                  HEAD + "1 flow entries have been shown.\n")
    # found by its reply tuple, then not shown: the template's original tuple differs
    back = ["-p", "tcp", "-s", "1.1.1.1", "-d", "203.0.113.1", "--sport", "80", "--dport", "4000"]
    assert gw.run("-G", *back) == (1, "", HEAD + "0 flow entries have been shown.\n")
    assert gw.run("-G", *tcp[:-1], "81") == (1, "", HEAD + "Operation failed: such conntrack doesn't exist\n")
    assert gw.run("-G", "-p", "udp", "-r", "8.8.8.8", "-q", "203.0.113.1") == (
        1, "", HEAD + "Operation failed: invalid parameters\n")
    assert gw.run("-G", "-s", "1.1.1.1", "-d", "2.2.2.2")[0] == 2  # --protonum is compulsory
