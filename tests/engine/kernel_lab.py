"""A small lab of network namespaces for comparing targets with the kernel.

    peer (a0 10.77.0.1) ---veth--- (b0 10.77.0.2) fw (b1 10.77.1.1) ---veth--- (c0 10.77.1.2) peer2

Frames are written raw onto a0 from the test process (an AF_PACKET socket
made inside `peer` with setns) and whatever arrives back on a0 and on c0 is
read the same way, so nothing but these namespaces ever sees the traffic.
The veths have transmit checksum offload off so that the kernel's own
packets carry their final checksums.  LOG lines are read from the kernel
log by their unique prefix.  Everything is deleted on exit.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import subprocess
import time
from pathlib import Path

from oracle import in_netns as _in_netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

PEER_IP, FW_IP0, FW_IP1, PEER2_IP = "10.77.0.1", "10.77.0.2", "10.77.1.1", "10.77.1.2"

_counter = itertools.count()


def problem() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-legacy-restore", "ethtool", "dmesg"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} missing"
    return None


def _run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout




class Lab:
    def __init__(self, ratelimit: bool = False) -> None:
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        self.tag = tag
        self.ns = {role: f"pyfw-tgt-{tag}-{role}" for role in ("fw", "peer", "peer2")}
        short = f"pt{os.getpid() % 10000}{n}"
        self.dev = {"a0": short + "a", "b0": short + "b", "b1": short + "c", "c0": short + "d"}
        self.ratelimit = ratelimit
        self.macs: dict[str, bytes] = {}
        self._made: list[str] = []
        self._log_mark = 0

    # ------------------------------------------------------------ set up
    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ns(self, role: str, *argv: str, check: bool = True) -> str:
        return _run("ip", "netns", "exec", self.ns[role], *argv, check=check)

    def _setup(self) -> None:
        for name in self.ns.values():
            _run("ip", "netns", "add", name)
            self._made.append(name)
        d = self.dev
        _run("ip", "link", "add", d["a0"], "netns", self.ns["peer"], "type", "veth",
             "peer", "name", d["b0"], "netns", self.ns["fw"])
        _run("ip", "link", "add", d["c0"], "netns", self.ns["peer2"], "type", "veth",
             "peer", "name", d["b1"], "netns", self.ns["fw"])
        plan = (("peer", "a0", PEER_IP), ("fw", "b0", FW_IP0), ("fw", "b1", FW_IP1),
                ("peer2", "c0", PEER2_IP))
        for role in self.ns:
            self._ns(role, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self._ns(role, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            self._ns(role, "ip", "link", "set", "lo", "up")
        for role, key, addr in plan:
            dev = d[key]
            self._ns(role, "ip", "addr", "add", addr + "/24", "dev", dev)
            self._ns(role, "ip", "link", "set", dev, "up")
            self._ns(role, "ethtool", "-K", dev, "tx", "off", "rx", "off", check=False)
            link = self._ns(role, "cat", f"/sys/class/net/{dev}/address").strip()
            self.macs[key] = bytes.fromhex(link.replace(":", ""))
        self._ns("peer", "ip", "route", "add", "default", "via", FW_IP0)
        self._ns("peer2", "ip", "route", "add", "default", "via", FW_IP1)
        self._ns("fw", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if not self.ratelimit:
            self._ns("fw", "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
        # static neighbours: no ARP in the captures
        self._ns("fw", "ip", "neigh", "replace", PEER_IP, "lladdr", _mac(self.macs["a0"]),
                 "dev", d["b0"], "nud", "permanent")
        self._ns("fw", "ip", "neigh", "replace", PEER2_IP, "lladdr", _mac(self.macs["c0"]),
                 "dev", d["b1"], "nud", "permanent")
        self._ns("peer", "ip", "neigh", "replace", FW_IP0, "lladdr", _mac(self.macs["b0"]),
                 "dev", d["a0"], "nud", "permanent")
        self._ns("peer2", "ip", "neigh", "replace", FW_IP1, "lladdr", _mac(self.macs["b1"]),
                 "dev", d["c0"], "nud", "permanent")
        _run("sysctl", "-qw", "net.netfilter.nf_log_all_netns=1")

    def close(self) -> None:
        for name in reversed(self._made):
            _run("ip", "netns", "del", name, check=False)
        self._made.clear()

    # ------------------------------------------------------------ use
    def restore(self, rules: str) -> None:
        proc = subprocess.run(["ip", "netns", "exec", self.ns["fw"], "iptables-legacy-restore", "-w"],
                              input=rules, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"iptables-legacy-restore: {proc.stderr.strip()}\n{rules}")

    def sysctl(self, setting: str) -> None:
        self._ns("fw", "sysctl", "-qw", setting)

    def _socket(self, role: str, key: str) -> socket.socket:
        with _in_netns(self.ns[role]):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((self.dev[key], 0))
        s.setblocking(False)
        return s

    def exchange(self, ip_packets: list[bytes], wait: float = 0.25,
                 gap: float = 0.0) -> dict[str, list[bytes]]:
        """Send each IPv4 packet in a frame from peer to fw's b0; return the
        IPv4 packets that arrived back at peer (a0) and at peer2 (c0)."""
        listen = {"a0": self._socket("peer", "a0"), "c0": self._socket("peer2", "c0")}
        out = self._socket("peer", "a0")
        got: dict[str, list[bytes]] = {"a0": [], "c0": []}
        try:
            head = self.macs["b0"] + self.macs["a0"] + b"\x08\x00"
            for p in ip_packets:
                out.send(head + p)
                if gap:
                    time.sleep(gap)
            deadline = time.monotonic() + wait
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select(list(listen.values()), [], [], left)
                for key, s in listen.items():
                    if s in ready:
                        while True:
                            try:
                                frame, addr = s.recvfrom(65600)
                            except BlockingIOError:
                                break
                            if addr[2] == PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                                continue
                            got[key].append(frame[14:])
        finally:
            for s in (*listen.values(), out):
                s.close()
        return got

    def frame_head(self) -> bytes:
        """The Ethernet header fw sees on b0 for what peer sends."""
        return self.macs["b0"] + self.macs["a0"] + b"\x08\x00"

    def log_lines(self, prefix: str) -> list[str]:
        """Kernel log lines (text after the prefix included) that start with prefix."""
        text = _run("dmesg", "--notime")
        return [line for line in text.split("\n") if line.startswith(prefix)]


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def lab_problem() -> str | None:
    p = problem()
    if p is None and not Path("/run/netns").exists():
        Path("/run/netns").mkdir(parents=True, exist_ok=True)
    return p
