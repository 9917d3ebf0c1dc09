"""Two network namespaces for comparing compiled matches with the kernel.

    peer (veth a, 10.77.0.1) ------ (veth b, 10.77.0.2) fw

Frames are written raw onto `a` from the test process (an AF_PACKET socket
made inside `peer` with setns), so they may carry any Ethernet source, any
IP addresses and any malformation the kernel's ip_rcv lets through to
PREROUTING.  The rules under test live in `fw` with no target: after each
frame the test reads the rule counters (`iptables-legacy-save -c`) and so
learns, rule by rule, which rules the kernel matched for that one packet.
Nothing but these two namespaces sees the traffic; both are deleted on
exit, whatever happens.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import time
from pathlib import Path

from oracle import in_netns  # noqa: E402

ETH_P_ALL = 0x0003
PEER_IP, FW_IP = "10.77.0.1", "10.77.0.2"

_counter = itertools.count()


def lab_problem() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-legacy-restore", "iptables-legacy-save"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} missing"
    Path("/run/netns").mkdir(parents=True, exist_ok=True)
    return None


def _run(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout




_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+)")


class MatchLab:
    def __init__(self) -> None:
        n = next(_counter)
        tag = f"{os.getpid() % 100000}x{n}"
        self.ns = {"peer": f"pyfw-mt-{tag}-peer", "fw": f"pyfw-mt-{tag}-fw"}
        short = f"pm{os.getpid() % 10000}{n}"
        self.dev = {"a": short + "a", "b": short + "b"}
        self.macs: dict[str, bytes] = {}
        self._made: list[str] = []
        self._sock: socket.socket | None = None

    def __enter__(self) -> MatchLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, role: str, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        return _run("ip", "netns", "exec", self.ns[role], *argv, check=check, stdin=stdin)

    def _setup(self) -> None:
        for name in self.ns.values():
            _run("ip", "netns", "add", name)
            self._made.append(name)
        a, b = self.dev["a"], self.dev["b"]
        _run("ip", "link", "add", a, "netns", self.ns["peer"], "type", "veth",
             "peer", "name", b, "netns", self.ns["fw"])
        for role, key, addr in (("peer", "a", PEER_IP), ("fw", "b", FW_IP)):
            self.run(role, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self.run(role, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            self.run(role, "ip", "link", "set", "lo", "up")
            dev = self.dev[key]
            self.run(role, "ip", "addr", "add", addr + "/24", "dev", dev)
            self.run(role, "ip", "link", "set", dev, "up")
            self.run(role, "ethtool", "-K", dev, "tx", "off", "rx", "off", check=False)
            self.macs[key] = bytes.fromhex(
                self.run(role, "cat", f"/sys/class/net/{dev}/address").strip().replace(":", ""))
        mac_a = ":".join(f"{x:02x}" for x in self.macs["a"])
        mac_b = ":".join(f"{x:02x}" for x in self.macs["b"])
        self.run("fw", "ip", "neigh", "replace", PEER_IP, "lladdr", mac_a, "dev", b, "nud", "permanent")
        self.run("peer", "ip", "neigh", "replace", FW_IP, "lladdr", mac_b, "dev", a, "nud", "permanent")
        self.run("fw", "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
        # the peer's own stack stays silent (no ICMP errors or resets back
        # to fw for what fw sends it): only crafted frames reach fw
        self.run("peer", "iptables-legacy-restore", "-w", stdin=(
            "*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p icmp -j DROP\n"
            "-A OUTPUT -p tcp --tcp-flags RST RST -j DROP\nCOMMIT\n"))
        # and so does fw's, until a test loads its own filter table (an
        # ICMP error to a broadcast source would loop back into PREROUTING)
        self.restore("*filter\n:OUTPUT DROP [0:0]\nCOMMIT\n")
        with in_netns(self.ns["peer"]):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((a, 0))
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for name in reversed(self._made):
            _run("ip", "netns", "del", name, check=False)
        self._made.clear()

    # ------------------------------------------------------------------ use
    def restore(self, text: str) -> None:
        self.run("fw", "iptables-legacy-restore", "-w", stdin=text)

    def send(self, frame: bytes) -> float:
        """Write one Ethernet frame onto peer's veth; the monotonic time it
        left (the engine clock for the same packet)."""
        assert self._sock is not None
        now = time.monotonic()
        self._sock.send(frame)
        return now

    def counters(self, table: str) -> dict[str, list[int]]:
        """Packet counters of every rule of `table`, per chain in order."""
        out: dict[str, list[int]] = {}
        for line in self.run("fw", "iptables-legacy-save", "-c", "-t", table).split("\n"):
            m = _RULE.match(line)
            if m:
                out.setdefault(m.group(3), []).append(int(m.group(1)))
        return out

    def local_routes(self) -> list[tuple[str, str, int, str]]:
        """fw's local routing table as (type, prefix, length, dev)."""
        routes = []
        for line in self.run("fw", "ip", "-o", "route", "show", "table", "local").split("\n"):
            words = line.split()
            if len(words) < 2:
                continue
            kind, dest = words[0], words[1]
            dev = words[words.index("dev") + 1] if "dev" in words else ""
            addr, _, plen = dest.partition("/")
            routes.append((kind, addr, int(plen) if plen else 32, dev))
        return routes
