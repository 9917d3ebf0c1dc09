"""A three-namespace lab for comparing pyfw.wire's builders with what the
real kernel sends.

    nsA a0 10.99.1.1/24 ==(mtu 9000)== b0 10.99.1.2/24 nsB (router)
                                       b1 10.99.2.254/24 ==(mtu 1280)== c0 10.99.2.1/24 nsC

Frames are injected and captured with AF_PACKET sockets by a small helper
run inside a namespace; every namespace is deleted on close.  Traffic only
flows between these namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

MAC = {
    "a0": bytes.fromhex("020000990101"),
    "b0": bytes.fromhex("020000990102"),
    "b1": bytes.fromhex("020000990201"),
    "c0": bytes.fromhex("020000990202"),
}
IP = {
    "a0": "10.99.1.1",
    "b0": "10.99.1.2",
    "b1": "10.99.2.254",
    "c0": "10.99.2.1",
}

HELPER = textwrap.dedent('''
    import json, select, socket, sys, time
    iface, timeout = sys.argv[1], float(sys.argv[2])
    frames = [bytes.fromhex(h) for h in sys.argv[3:]]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((iface, 0))
    print("ready", flush=True)
    if not frames:
        sys.stdin.readline()
    for f in frames:
        s.send(f)
    got = []
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            break
        data, addr = s.recvfrom(65535)
        if addr[2] == 4:   # PACKET_OUTGOING
            continue
        if data[12:14] not in (b"\\x08\\x00", b"\\x08\\x06"):
            continue
        got.append(data.hex())
    print(json.dumps(got), flush=True)
''')


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


class Lab:
    def __init__(self, workdir: Path) -> None:
        tag = f"pyfw-wire-{os.getpid()}"
        self.ns = {"a": f"{tag}-a", "b": f"{tag}-b", "c": f"{tag}-c"}
        self.helper = workdir / "wire_helper.py"
        self.helper.write_text(HELPER)
        self._made: list[str] = []
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------ plumbing
    def ex(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.ns[ns], *cmd, check=check)

    def _setup(self) -> None:
        for n in self.ns.values():
            _run("ip", "netns", "add", n)
            self._made.append(n)
        for n in "abc":
            self.ex(n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
            self.ex(n, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", check=False)
        _run("ip", "link", "add", "a0", "netns", self.ns["a"], "type", "veth", "peer", "name", "b0",
             "netns", self.ns["b"])
        _run("ip", "link", "add", "b1", "netns", self.ns["b"], "type", "veth", "peer", "name", "c0",
             "netns", self.ns["c"])
        for ns, dev, mtu in (("a", "a0", 9000), ("b", "b0", 9000), ("b", "b1", 1280), ("c", "c0", 1280)):
            self.ex(ns, "ip", "link", "set", dev, "address", MAC[dev].hex(":"), "mtu", str(mtu))
            self.ex(ns, "ip", "addr", "add", IP[dev] + "/24", "dev", dev)
            self.ex(ns, "ip", "link", "set", dev, "up")
            # checksums computed in software, as a real NIC would put them
            # on the wire (veth would otherwise pass CHECKSUM_PARTIAL along)
            self.ex(ns, "ethtool", "-K", dev, "tx", "off", check=False)
        for ns in "abc":
            self.ex(ns, "ip", "link", "set", "lo", "up")
        self.ex("a", "ip", "route", "add", "10.99.2.0/24", "via", IP["b0"])
        self.ex("c", "ip", "route", "add", "default", "via", IP["b1"])
        self.ex("b", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000",
                    "net.ipv4.icmp_msgs_burst=100000"):
            self.ex("b", "sysctl", "-qw", key, check=False)
        for ns, dev, peer in (("a", "a0", "b0"), ("b", "b0", "a0"), ("b", "b1", "c0"), ("c", "c0", "b1")):
            self.ex(ns, "ip", "neigh", "replace", IP[peer], "lladdr", MAC[peer].hex(":"), "dev", dev,
                    "nud", "permanent")

    def close(self) -> None:
        for n in self._made:
            _run("ip", "netns", "del", n, check=False)
        self._made.clear()

    # ------------------------------------------------------------ traffic
    def exchange(self, ns: str, dev: str, frames: list[bytes], timeout: float = 0.6,
                 listen: tuple[str, str] | None = None) -> tuple[list[bytes], list[bytes]]:
        """Send `frames` out of `dev` in `ns`; return the frames that came
        back on `dev` and (with `listen=(ns2, dev2)`) those seen on dev2."""
        other = None
        if listen is not None:
            other = subprocess.Popen(["ip", "netns", "exec", self.ns[listen[0]], sys.executable,
                                      str(self.helper), listen[1], str(timeout + 1.0)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert other.stdout is not None and other.stdin is not None
            line = other.stdout.readline()
            assert line.strip() == "ready", line
            other.stdin.write("go\n")
            other.stdin.flush()
        try:
            res = self.ex(ns, sys.executable, str(self.helper), dev, str(timeout),
                          *[f.hex() for f in frames])
            back = [bytes.fromhex(h) for h in json.loads(res.stdout.splitlines()[-1])]
            seen: list[bytes] = []
            if other is not None:
                out, _ = other.communicate(timeout=timeout + 10)
                seen = [bytes.fromhex(h) for h in json.loads(out.splitlines()[-1])]
        finally:
            if other is not None and other.poll() is None:
                other.kill()
                other.wait()
        return back, seen

    def snmp(self, ns: str) -> dict[str, int]:
        """Ip: and IpExt: counters of the namespace."""
        out: dict[str, int] = {}
        for path in ("/proc/net/snmp", "/proc/net/netstat"):
            lines = self.ex(ns, "cat", path).stdout.splitlines()
            for head, vals in zip(lines[::2], lines[1::2]):
                hname, *keys = head.split()
                _, *nums = vals.split()
                if hname in ("Ip:", "IpExt:"):
                    for k, v in zip(keys, nums):
                        out[k] = int(v)
        return out

    def iptables(self, ns: str, *args: str) -> str:
        return self.ex(ns, "iptables-legacy", *args).stdout


def wait_quiet() -> None:
    time.sleep(0.05)
