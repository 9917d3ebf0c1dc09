"""A client -- router -- server lab of network namespaces to compare the
tracker with the kernel's conntrack.

    client (eth0 10.9.1.2) --veth-- (eth0 10.9.1.1) router (eth1 10.9.2.1) --veth-- (eth0 10.9.2.2) server

The router forwards (ip_forward=1), marks every forwarded packet's DSCP
with the ctstate/ctdir the kernel gave it (mangle FORWARD) and counts the
states in filter FORWARD.  tcpdump in the router captures every frame
(`-i any`, both directions).  Traffic is real (sockets in the client and
server namespaces) or scripted: raw frames written from the test process
through AF_PACKET sockets opened inside the client or server namespace
(setns), so nothing outside these namespaces sees any of it.  The client
and server drop their own RSTs and ICMP errors for the scripted port
range, so scripted conversations are not disturbed.  Everything is deleted
on exit.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from oracle import in_netns  # noqa: E402

_count = itertools.count()

CLIENT, ROUTER0, ROUTER1, SERVER = "10.9.1.2", "10.9.1.1", "10.9.2.1", "10.9.2.2"
OTHER = "10.9.1.77"
SCRIPT_PORTS = "20000:29999"
NOTRACK_PORT = 7777

# DSCP value -> the ctinfo name the mangle rules stand for
DSCP_NAMES = {1: "NEW", 2: "EST", 3: "EST_REPLY", 4: "REL", 5: "REL_REPLY", 6: "INVALID", 7: "UNTRACKED"}
STATE_RULES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")

RULES = f"""*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp --dport {NOTRACK_PORT} -j NOTRACK
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DSCP --set-dscp 6
-A FORWARD -m conntrack --ctstate UNTRACKED -j DSCP --set-dscp 7
-A FORWARD -m conntrack --ctstate NEW -j DSCP --set-dscp 1
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL -j DSCP --set-dscp 2
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j DSCP --set-dscp 3
-A FORWARD -m conntrack --ctstate RELATED --ctdir ORIGINAL -j DSCP --set-dscp 4
-A FORWARD -m conntrack --ctstate RELATED --ctdir REPLY -j DSCP --set-dscp 5
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
""" + "".join(f"-A FORWARD -m conntrack --ctstate {s}\n" for s in STATE_RULES) + "COMMIT\n"

END_RULES = f"""*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp --tcp-flags RST RST --sport {SCRIPT_PORTS} -j DROP
-A OUTPUT -p tcp --tcp-flags RST RST --dport {SCRIPT_PORTS} -j DROP
-A OUTPUT -p icmp --icmp-type protocol-unreachable -j DROP
COMMIT
"""


def problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-legacy-restore", "conntrack", "tcpdump", "ethtool"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} missing"
    return None


def _run(*argv: str, check: bool = True, timeout: float = 60) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout




class CtLab:
    def __init__(self, sysctls: dict[str, str] | None = None) -> None:
        base = f"pyfw-ct{os.getpid()}-{next(_count)}"
        self.ns = {r: f"{base}-{r}" for r in ("c", "r", "s")}
        self.sysctls = sysctls or {}
        self.macs: dict[str, str] = {}
        self.socks: dict[str, socket.socket] = {}
        self.dir = Path(tempfile.mkdtemp(prefix="pyfw-ctlab-"))
        self.pcap = self.dir / "router.pcap"
        self.dump: subprocess.Popen[bytes] | None = None
        self.dump_stats = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    def __enter__(self) -> CtLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def x(self, role: str, *argv: str, check: bool = True) -> str:
        return _run("ip", "netns", "exec", self.ns[role], *argv, check=check)

    def _setup(self) -> None:
        for r, n in self.ns.items():
            _run("ip", "netns", "add", n)
            self._made.append(n)
            self.x(r, "ip", "link", "set", "lo", "up")
            self.x(r, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self.x(r, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        tag = self.ns["r"][-12:-2].replace("-", "")
        for i, (a, b, ra, rb, na, nb) in enumerate((("c", "r", "eth0", "eth0", CLIENT, ROUTER0),
                                                     ("r", "s", "eth1", "eth0", ROUTER1, SERVER))):
            va, vb = f"ct{tag}{i}a", f"ct{tag}{i}b"
            _run("ip", "link", "add", va, "netns", self.ns[a], "type", "veth", "peer", "name", vb,
                 "netns", self.ns[b])
            self.x(a, "ip", "link", "set", va, "name", ra)
            self.x(b, "ip", "link", "set", vb, "name", rb)
            for role, dev, addr in ((a, ra, na), (b, rb, nb)):
                self.x(role, "ip", "addr", "add", addr + "/24", "dev", dev)
                self.x(role, "ethtool", "-K", dev, "tx", "off", "rx", "off", check=False)
                self.x(role, "ip", "link", "set", dev, "up")
                self.macs[addr] = self.x(role, "cat", f"/sys/class/net/{dev}/address").strip()
        # static neighbours: no ARP at all
        for role, dev, ip in (("c", "eth0", ROUTER0), ("r", "eth0", CLIENT), ("r", "eth1", SERVER),
                              ("s", "eth0", ROUTER1)):
            self.x(role, "ip", "neigh", "replace", ip, "lladdr", self.macs[ip], "dev", dev, "nud", "permanent")
        # a host behind the client's wire that never answers (misdirected errors)
        self.x("r", "ip", "neigh", "replace", OTHER, "lladdr", self.macs[CLIENT], "dev", "eth0", "nud", "permanent")
        self.x("c", "ip", "route", "add", "default", "via", ROUTER0)
        self.x("s", "ip", "route", "add", "default", "via", ROUTER1)
        self.x("r", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for k, v in self.sysctls.items():
            self.x("r", "sysctl", "-qw", f"{k}={v}")
        for role, rules in (("r", RULES), ("c", END_RULES), ("s", END_RULES)):
            proc = subprocess.run(["ip", "netns", "exec", self.ns[role], "iptables-legacy-restore", "-w"],
                                  input=rules, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"iptables-legacy-restore: {proc.stderr}")
        for role in ("c", "s"):
            with in_netns(self.ns[role]):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
                s.bind(("eth0", 0))
            self.socks[role] = s
        self.dump = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["r"], "tcpdump", "-i", "any", "-y", "LINUX_SLL", "-n", "-B", "16384",
             "--immediate-mode", "-U", "-s", "0", "-w", str(self.pcap), "ip"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.dump.stderr is not None
        deadline = time.time() + 10
        buf = b""
        while b"listening on" not in buf and time.time() < deadline:
            buf += os.read(self.dump.stderr.fileno(), 4096)
        time.sleep(0.2)

    # ------------------------------------------------------------ traffic
    def send(self, role: str, ip_bytes: bytes, gap: float = 0.01) -> None:
        """A scripted IP packet from the client ("c") or the server ("s")."""
        src = self.macs[CLIENT if role == "c" else SERVER]
        dst = self.macs[ROUTER0 if role == "c" else ROUTER1]
        frame = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00" + ip_bytes
        self.socks[role].send(frame)
        time.sleep(gap)

    def spawn(self, role: str, code: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[role], "python3", "-c", code],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def py(self, role: str, code: str, timeout: float = 30) -> str:
        return _run("ip", "netns", "exec", self.ns[role], "python3", "-c", code, timeout=timeout)

    # ------------------------------------------------------------ results
    def finish(self) -> tuple[float, str, dict[str, int], list[tuple[float, int, bytes]]]:
        """(time of the listing, `conntrack -L` text, FORWARD state counters,
        the capture as (time, sll packet type, IP bytes))."""
        time.sleep(0.3)
        now = time.time()
        listing = self.x("r", "conntrack", "-L")
        self.ct_stats: dict[str, int] = {}
        for line in self.x("r", "conntrack", "-S").splitlines():
            for word in line.split():
                k, _, v = word.partition("=")
                if k != "cpu" and v.isdigit():
                    self.ct_stats[k] = self.ct_stats.get(k, 0) + int(v)
        counters: dict[str, int] = {}
        for line in self.x("r", "iptables-legacy", "-w", "-nvxL", "FORWARD").splitlines():
            parts = line.split()
            if "ctstate" in parts:
                counters[parts[parts.index("ctstate") + 1]] = int(parts[0])
        self._stop_dump()
        return now, listing, counters, read_sll_pcap(self.pcap)

    def _stop_dump(self) -> None:
        if self.dump is not None:
            time.sleep(0.2)
            self.dump.send_signal(signal.SIGINT)
            try:
                self.dump.wait(10)
            except subprocess.TimeoutExpired:
                self.dump.kill()
                self.dump.wait()
            assert self.dump.stderr is not None
            self.dump_stats = self.dump.stderr.read().decode(errors="replace")
            self.dump = None

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self._stop_dump()
        for s in self.socks.values():
            s.close()
        for n in self._made:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        self._made = []
        shutil.rmtree(self.dir, ignore_errors=True)


def read_sll_pcap(path: Path) -> list[tuple[float, int, bytes]]:
    """A pcap of LINUX_SLL frames: (time, packet type, IPv4 datagram)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    assert linktype == 113, linktype
    out = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        rec = data[off:off + incl]
        off += incl
        pkttype, _hw, _alen = struct.unpack_from("!HHH", rec, 0)
        proto = struct.unpack_from("!H", rec, 14)[0]
        if proto != 0x0800:
            continue
        out.append((sec + frac / (1e9 if nano else 1e6), pkttype, rec[16:]))
    return out
