"""The kernel side of the ruleset fixtures: a namespace that is the host of
a HOST.toml, running the same ruleset, fed the same frames.

    peer ns p1 --veth-- (eth0) host ns (eth1) --veth-- peer ns p2 ...

The host namespace gets exactly the TOML's interfaces (names, MACs, MTUs,
addresses in order), routes, permanent neighbours and sysctls, and the
ruleset through iptables-legacy-restore.  Each interface's other end sits in
a peer namespace of its own with no address (its stack never answers; its
raw table drops everything as well), where an AF_PACKET socket injects the
fixture's frames and captures what the host sends.  Frames of the pcapng
interface `local` leave an IPPROTO_RAW socket in the host namespace, so they
start in OUTPUT as the host's own packets do.  Frames are paced by their
timestamps.

HOST.toml's `[[service]]` sockets: a UDP service is a bound socket (it
consumes what reaches it, as pyfw's does); for a TCP service the stack's own
resets from that port are dropped in raw OUTPUT before conntrack sees them
(`-m owner --socket-exists ! --uid-owner 0`: the stack's resets leave a
kernel control socket, which has no file and so no owner; REJECT's resets
have no socket at all, and the injected frames come from this process's
root-owned raw socket), which is what pyfw's "consumed silently" means.  With no
listener the kernel never answers a SYN with a SYN-ACK either.

Namespaces are unique to the process, traffic only flows between them, and
everything is deleted on exit, whatever happens.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway_lab import _run, lab_problem  # noqa: E402,F401
from oracle import in_netns  # noqa: E402

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_counter = itertools.count()


def log_prefixes(rules: str) -> list[str]:
    """The --log-prefix strings of a ruleset (to find its LOG lines)."""
    return sorted(set(re.findall(r'--log-prefix "([^"]*)"', rules)))


class RulesetLab:
    """The host of one HOST.toml in namespaces, with a ruleset loaded."""

    def __init__(self, host_toml: Path, rules: str) -> None:
        n = next(_counter)
        self.tag = f"{os.getpid()}-{n}"
        self.toml = tomllib.loads(host_toml.read_text())
        self.rules = rules
        self.ifaces = [i for i in self.toml.get("interface", []) if i["name"] != "lo"]
        self.ns_host = f"pyfw-rs-{self.tag}"
        self.ns_peer = {i["name"]: f"pyfw-rs-{self.tag}-p{k}" for k, i in enumerate(self.ifaces, 1)}
        self.peer_dev = {i["name"]: f"p{k}" for k, i in enumerate(self.ifaces, 1)}
        self._made: list[str] = []
        self.socks: dict[str, socket.socket] = {}
        self.raw: socket.socket | None = None
        self.udp: list[socket.socket] = []
        self.kmsg: int | None = None
        self.prefixes = log_prefixes(rules)

    def __enter__(self) -> RulesetLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ set up
    def x(self, ns: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        return _run(["ip", "netns", "exec", ns, *argv], stdin=stdin, check=check)

    def _setup(self) -> None:
        for ns in (self.ns_host, *self.ns_peer.values()):
            _run(["ip", "netns", "add", ns])
            self._made.append(ns)
        for ns in (self.ns_host, *self.ns_peer.values()):
            self.x(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        sysctls = {k: v for k, v in _flatten("", self.toml.get("sysctl", {}))}
        # conf.default.* before the devices exist, everything else after
        early = {k: v for k, v in sysctls.items() if ".conf.default." in k}
        if early:
            self.x(self.ns_host, "sysctl", "-qw", *(f"{k}={v}" for k, v in early.items()))
        batch = ["link set lo up"]
        for i in self.ifaces:
            name, peer, pns = i["name"], self.peer_dev[i["name"]], self.ns_peer[i["name"]]
            mtu = str(i.get("mtu", 1500))
            _run(["ip", "-n", self.ns_host, "link", "add", name, "type", "veth", "peer", "name", peer,
                  "netns", pns])
            if "mac" in i:
                batch.append(f"link set {name} address {i['mac']}")
            batch.append(f"link set {name} mtu {mtu} up")
            _run(["ip", "-n", pns, "link", "set", peer, "mtu", mtu, "up"])
            self.x(pns, "ethtool", "-K", peer, "tx", "off", "rx", "off", check=False)
            self.x(pns, "iptables-legacy-restore", "-w",
                   stdin="*raw\n:PREROUTING DROP [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n")
        self.x(self.ns_host, "ip", "-batch", "-", stdin="\n".join(batch) + "\n")
        for i in self.ifaces:
            self.x(self.ns_host, "ethtool", "-K", i["name"], "tx", "off", "rx", "off", check=False)
        late = {k: v for k, v in sysctls.items() if k not in early}
        if late:
            self.x(self.ns_host, "sysctl", "-qw", *(f"{k}={v}" for k, v in late.items()))
        batch = []
        for i in self.toml.get("interface", []):
            for a in i.get("addresses", []):
                if i["name"] == "lo" and a == "127.0.0.1/8":
                    continue
                batch.append(f"addr add {a} dev {i['name']}")
        for r in self.toml.get("route", []):
            line = f"route add {r['to']}"
            if "via" in r:
                line += f" via {r['via']}"
            if "dev" in r:
                line += f" dev {r['dev']}"
            if "metric" in r:
                line += f" metric {r['metric']}"
            batch.append(line)
        for nb in self.toml.get("neighbor", []):
            batch.append(f"neigh replace {nb['ip']} lladdr {nb['mac']} dev {nb['dev']} nud permanent")
        if batch:
            self.x(self.ns_host, "ip", "-batch", "-", stdin="\n".join(batch) + "\n")
        self.x(self.ns_host, "iptables-legacy-restore", "-w", stdin=self.rules)
        raw = self._service_rules()
        if raw:
            self.x(self.ns_host, "iptables-legacy-restore", "-w", "--noflush", stdin=raw)
        _run(["sysctl", "-qw", "net.netfilter.nf_log_all_netns=1"])
        for i in self.ifaces:
            with in_netns(self.ns_peer[i["name"]]):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                s.bind((self.peer_dev[i["name"]], 0))
            s.setblocking(False)
            self.socks[i["name"]] = s
        with in_netns(self.ns_host):
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            for svc in self.toml.get("service", []):
                if svc["proto"] == "udp":
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    u.bind((svc.get("address", "0.0.0.0"), svc["port"]))
                    self.udp.append(u)
        self.kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.kmsg, 0, os.SEEK_END)

    def _service_rules(self) -> str:
        tcp = [s for s in self.toml.get("service", []) if s["proto"] == "tcp"]
        if not tcp:
            return ""
        if "*raw" in self.rules:
            raise RuntimeError("a ruleset with a raw table cannot get the service rules")
        lines = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        for s in tcp:
            src = f"-s {s['address']}/32 " if "address" in s else ""
            lines.append(f"-A OUTPUT {src}-p tcp -m tcp --sport {s['port']} --tcp-flags RST RST "
                         f"-m owner --socket-exists ! --uid-owner 0 -j DROP")
        return "\n".join([*lines, "COMMIT", ""])

    def close(self) -> None:
        for s in (*self.socks.values(), *self.udp, *([self.raw] if self.raw else [])):
            s.close()
        self.socks.clear()
        self.udp.clear()
        self.raw = None
        if self.kmsg is not None:
            os.close(self.kmsg)
            self.kmsg = None
        for ns in reversed(self._made):
            _run(["ip", "netns", "del", ns], check=False)
        self._made.clear()

    # ------------------------------------------------------------ use
    def replay(self, frames: list[tuple[float, str, bytes]], settle: float = 0.3) -> list[tuple[int, str, bytes]]:
        """Inject every (timestamp, iface, frame) at its time; return what
        reached the peers as (index of the last frame injected before it,
        iface, frame) in arrival order."""
        got: list[tuple[int, str, bytes]] = []
        if not frames:
            return got
        start = time.monotonic()
        first = frames[0][0]
        for k, (ts, iface, data) in enumerate(frames):
            due = start + (ts - first)
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                self._drain(got, k - 1, min(left, 0.05))
            self._inject(iface, data)
            self._drain(got, k, 0.0)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            self._drain(got, len(frames) - 1, end - time.monotonic())
        return got

    def _inject(self, iface: str, data: bytes) -> None:
        if iface == "local":
            assert self.raw is not None
            ip = data[14:] if len(data) >= 14 and data[12:14] == b"\x08\x00" else data
            try:
                self.raw.sendto(ip, (socket.inet_ntoa(ip[16:20]), 0))
            except OSError as exc:  # OUTPUT dropped it: EPERM, as for any sender
                if exc.errno not in (errno.EPERM, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES):
                    raise
        else:
            self.socks[iface].send(data)

    def _drain(self, got: list[tuple[int, str, bytes]], index: int, wait: float) -> None:
        socks = list(self.socks.items())
        ready, _, _ = select.select([s for _, s in socks], [], [], max(wait, 0.0))
        for name, s in socks:
            if s not in ready:
                continue
            while True:
                try:
                    data, addr = s.recvfrom(65600)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                got.append((index, name, data))

    def counters(self) -> str:
        return self.x(self.ns_host, "iptables-legacy-save", "-c")

    def conntrack(self) -> str:
        return self.x(self.ns_host, "conntrack", "-L", check=False)

    def sysctl(self, name: str) -> str:
        return self.x(self.ns_host, "sysctl", "-n", name).strip()

    def log_lines(self) -> list[str]:
        """New kernel log lines that start with one of the ruleset's LOG prefixes."""
        assert self.kmsg is not None
        out = []
        while True:
            try:
                rec = os.read(self.kmsg, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten meanwhile: go on
                    continue
                raise
            msg = rec.decode("utf-8", "replace").partition(";")[2].split("\n", 1)[0]
            msg = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), msg)
            if any(msg.startswith(p) for p in self.prefixes):
                out.append(msg.rstrip())
        return out


def _flatten(prefix: str, table: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            yield from _flatten(key, v)
        else:
            yield key, v


# ---------------------------------------------------------------- comparing
def norm_counters(text: str, skip: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """iptables-save -c text as {table: lines} without comments (and
    without the tables in `skip`)."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:].strip()
            cur = None if name in skip else out.setdefault(name, [])
            continue
        if cur is not None and line != "COMMIT":
            cur.append(line)
    return out


_CT_TIMEOUT = re.compile(r"^(\S+\s+\d+\s+)(\d+ )")


def norm_conntrack(text: str) -> list[str]:
    """conntrack -L lines with the timeout masked, sorted."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "flow entries have been shown" in line:
            continue
        lines.append(" ".join(_CT_TIMEOUT.sub(r"\1T ", line).split()))
    return sorted(lines)


def ip_part(frame: bytes, host_made: bool) -> bytes:
    """The frame from the IP header on; for a packet the host made, the IP
    ID and the header checksum (which covers it) zeroed."""
    ip = bytearray(frame[14:])
    if host_made and len(ip) >= 20:
        ip[4:6] = b"\x00\x00"
        ip[10:12] = b"\x00\x00"
    return bytes(ip)
