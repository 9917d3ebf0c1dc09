"""Writes the pcapng fixtures of the shipped rulesets' tests.

    .venv/bin/python tests/rulesets/make_fixtures.py        # rewrites tests/rulesets/fixtures/

Each fixture is a short, realistic conversation built with scapy on a fixed
clock (no wall time, no randomness), so the files are the same on every
run and are committed.  Frames carry the interface they arrive on as the
pcapng interface name (`local`: the host itself sends it; its Ethernet
header is what it would leave with, and is ignored) and a comment saying
what the frame is, which Wireshark shows.  Addresses and MACs are the ones
of tests/rulesets/<ruleset>.toml.  Frames are 20 ms apart unless a
scenario needs them faster (a flood) -- short enough that the kernel
comparison (test_kernel_agreement.py) replays them in real time.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures"
T0_US = 1_700_000_000 * 1_000_000   # 2023-11-14 22:13:20 UTC, the fixtures' clock


# ---------------------------------------------------------------- pcapng
def write_pcapng(path: Path, frames: list[tuple[int, str, bytes, str]]) -> None:
    """Section header, one interface description block per interface name
    (if_name, microsecond timestamps), one enhanced packet block per frame
    (with opt_comment)."""
    names: list[str] = []
    for _t, name, _d, _c in frames:
        if name not in names:
            names.append(name)

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                 + opt(4, b"pyfw tests/rulesets/make_fixtures.py") + opt(0, b""))]
    for name in names:
        out.append(block(1, struct.pack("<HHI", 1, 0, 262144) + opt(2, name.encode()) + opt(0, b"")))
    for usec, name, data, comment in frames:
        body = struct.pack("<IIIII", names.index(name), usec >> 32, usec & 0xFFFFFFFF, len(data), len(data))
        body += data + b"\x00" * (-len(data) % 4)
        if comment:
            body += opt(1, comment.encode()) + opt(0, b"")
        out.append(block(6, body))
    path.write_bytes(b"".join(out))


# ---------------------------------------------------------------- building conversations
@dataclass
class Host:
    """The MACs of one ruleset's host (from its TOML)."""

    macs: dict[str, str]          # interface -> the host's MAC
    gateway_mac: dict[str, str]   # interface -> the MAC frames from beyond that link come from
    own: tuple[str, ...]          # the host's addresses
    neighbors: dict[str, str] = field(default_factory=dict)  # on-link IP -> MAC


@dataclass
class Fixture:
    name: str
    host: Host
    frames: list[tuple[int, str, bytes, str]] = field(default_factory=list)
    t_us: int = 0
    ip_id: int = 0x1000

    def add(self, iface: str, pkt: Any, comment: str, gap_ms: float = 20, via: str | None = None) -> None:
        """`pkt` is an IP packet; it gets the Ethernet header it would have
        on `iface` (`local`: the host sends it, out of `via`)."""
        ip = pkt[IP]
        if ip.id == 1:  # scapy's default: give every packet its own ID
            self.ip_id += 1
            ip.id = self.ip_id
        if ip.flags == 0 and TCP in ip:
            ip.flags = "DF"
        if self.frames:
            self.t_us += int(gap_ms * 1000)
        if iface == "local":
            via = via or next(iter(self.host.macs))
            dst_mac = self.host.neighbors.get(ip.dst, self.host.gateway_mac[via])
            if ip.dst.startswith("127.") or ip.dst in self.host.own:
                src_mac = dst_mac = "00:00:00:00:00:00"
            else:
                src_mac = self.host.macs[via]
            frame = Ether(src=src_mac, dst=dst_mac) / ip
        else:
            src_mac = self.host.neighbors.get(ip.src, self.host.gateway_mac[iface])
            frame = Ether(src=src_mac, dst=self.host.macs[iface]) / ip
        self.frames.append((T0_US + self.t_us, iface, bytes(frame), comment))

    def write(self) -> Path:
        path = OUT / f"{self.name}.pcapng"
        write_pcapng(path, self.frames)
        return path


class Tcp:
    """Both ends of one TCP connection with consistent sequence numbers."""

    def __init__(self, fx: Fixture, client: tuple[str, int], server: tuple[str, int],
                 c_iface: str, s_iface: str, c_isn: int = 1000, s_isn: int = 500_000,
                 s_addr: tuple[str, int] | None = None, c_addr: tuple[str, int] | None = None) -> None:
        """`server`/`client` as each end sends from; `s_addr`/`c_addr` are
        the addresses the other end sees (after NAT), default the same."""
        self.fx = fx
        self.c, self.s = client, server
        self.c_sees = s_addr or server       # where the client sends to
        self.s_sees = c_addr or client       # where the server sends to
        self.c_iface, self.s_iface = c_iface, s_iface
        self.c_seq, self.s_seq = c_isn, s_isn

    def _c(self, flags: str, data: bytes = b"") -> Any:
        p = IP(src=self.c[0], dst=self.c_sees[0]) / TCP(sport=self.c[1], dport=self.c_sees[1], flags=flags,
                                                        seq=self.c_seq, ack=self.s_seq if "A" in flags else 0,
                                                        window=64240)
        return p / Raw(data) if data else p

    def _s(self, flags: str, data: bytes = b"") -> Any:
        p = IP(src=self.s[0], dst=self.s_sees[0]) / TCP(sport=self.s[1], dport=self.s_sees[1], flags=flags,
                                                        seq=self.s_seq, ack=self.c_seq if "A" in flags else 0,
                                                        window=65160)
        return p / Raw(data) if data else p

    def _send(self, who: str, p: Any, comment: str, gap_ms: float) -> None:
        iface = self.c_iface if who == "c" else self.s_iface
        if iface.startswith("local"):
            _, _, via = iface.partition(":")
            self.fx.add("local", p, comment, gap_ms, via=via)
        else:
            self.fx.add(iface, p, comment, gap_ms)

    def syn(self, comment: str = "client SYN", gap_ms: float = 20) -> None:
        self._send("c", self._c("S"), comment, gap_ms)
        self.c_seq += 1

    def synack(self, comment: str = "server SYN-ACK", gap_ms: float = 20) -> None:
        self._send("s", self._s("SA"), comment, gap_ms)
        self.s_seq += 1

    def ack(self, comment: str = "client ACK", gap_ms: float = 20) -> None:
        self._send("c", self._c("A"), comment, gap_ms)

    def client_data(self, data: bytes, comment: str, gap_ms: float = 20) -> None:
        self._send("c", self._c("PA", data), comment, gap_ms)
        self.c_seq += len(data)

    def server_data(self, data: bytes, comment: str, gap_ms: float = 20) -> None:
        self._send("s", self._s("PA", data), comment, gap_ms)
        self.s_seq += len(data)

    def handshake(self, what: str) -> None:
        self.syn(f"{what}: SYN")
        self.synack(f"{what}: SYN-ACK")
        self.ack(f"{what}: ACK")


HTTP_GET = b"GET / HTTP/1.1\r\nHost: example.net\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"
DNS_QUERY = bytes.fromhex("1234010000010000000000000765786d706c65036e65740000010001")
DNS_ANSWER = bytes.fromhex("1234818000010001000000000765786d706c65036e65740000010001"
                           "c00c000100010000012c0004c6336407")


def ping(src: str, dst: str, ident: int, seq: int = 1) -> Any:
    return IP(src=src, dst=dst) / ICMP(type=8, id=ident, seq=seq) / Raw(b"pyfw-ping-payload-0123456789abcdef")


# ---------------------------------------------------------------- the rulesets
def home_gateway() -> list[Fixture]:
    host = Host({"eth0": "02:00:00:00:01:01", "eth1": "02:00:00:00:02:01"},
                {"eth0": "02:00:00:00:01:05", "eth1": "02:00:00:00:02:fe"}, ("192.168.1.1", "203.0.113.2"),
                {"192.168.1.5": "02:00:00:00:01:05", "192.168.1.10": "02:00:00:00:01:10"})
    out = []

    fx = Fixture("home-gateway-lan-browsing", host)
    web = Tcp(fx, ("192.168.1.5", 40001), ("198.51.100.7", 443), "eth0", "eth1",
              c_addr=("203.0.113.2", 40001))
    web.handshake("laptop -> web site (MASQUERADE)")
    web.client_data(b"\x16\x03\x01\x00\x05hello", "laptop sends the TLS hello")
    web.server_data(b"\x16\x03\x03\x00\x05howdy", "web site answers (de-NATed to the laptop)")
    fx.add("eth0", IP(src="192.168.1.5", dst="198.51.100.53") / UDP(sport=50000, dport=53) / Raw(DNS_QUERY),
           "laptop asks a public resolver (MASQUERADE)")
    fx.add("eth1", IP(src="198.51.100.53", dst="203.0.113.2") / UDP(sport=53, dport=50000) / Raw(DNS_ANSWER),
           "the answer comes back to the laptop")
    out.append(fx)

    fx = Fixture("home-gateway-port-forward", host)
    fwd = Tcp(fx, ("192.0.2.99", 51000), ("192.168.1.10", 80), "eth1", "eth0",
              s_addr=("203.0.113.2", 8080))
    fwd.handshake("internet -> WAN:8080 (DNAT to 192.168.1.10:80)")
    fwd.client_data(HTTP_GET, "GET through the port forward")
    fwd.server_data(HTTP_OK, "the LAN server answers (source back to WAN:8080)")
    fx.add("eth1", IP(src="192.0.2.99", dst="192.168.1.10") / TCP(sport=51001, dport=80, flags="S", seq=7000),
           "straight to the LAN server's address, not through the forward: logged and dropped")
    out.append(fx)

    fx = Fixture("home-gateway-gateway-itself", host)
    fx.add("local", ping("127.0.0.1", "127.0.0.1", 0x0101), "the gateway pings itself on lo")
    ssh = Tcp(fx, ("192.168.1.5", 40022), ("192.168.1.1", 22), "eth0", "local:eth0")
    ssh.handshake("laptop -> gateway's sshd")
    ssh.client_data(SSH_BANNER, "the laptop's SSH banner")
    fx.add("eth0", IP(src="192.168.1.5", dst="192.168.1.1") / UDP(sport=50001, dport=53) / Raw(DNS_QUERY),
           "laptop asks the gateway's resolver")
    fx.add("local", IP(src="192.168.1.1", dst="192.168.1.5") / UDP(sport=53, dport=50001) / Raw(DNS_ANSWER),
           "the resolver answers", via="eth0")
    fx.add("eth1", ping("192.0.2.99", "203.0.113.2", 0x0202), "someone on the internet pings the WAN address")
    fx.add("eth1", IP(src="192.0.2.99", dst="203.0.113.2") / TCP(sport=52000, dport=22, flags="S", seq=9000),
           "SSH from the internet: reset")
    fx.add("eth1", IP(src="192.0.2.99", dst="203.0.113.2") / UDP(sport=52001, dport=161) / Raw(b"\x30\x00"),
           "SNMP from the internet: port unreachable")
    fx.add("eth1", IP(src="192.0.2.99", dst="203.0.113.2") / TCP(sport=52002, dport=80, flags="SF", seq=9100),
           "a SYN+FIN scan probe: conntrack calls it INVALID, dropped")
    out.append(fx)

    fx = Fixture("home-gateway-ping-flood", host)
    for i in range(12):
        fx.add("eth1", ping("192.0.2.99", "203.0.113.2", 0x0300 + i),
               f"flood ping {i + 1} of 12 (a new ICMP id each: a new connection each)", gap_ms=5)
    out.append(fx)
    return out


def web_server() -> list[Fixture]:
    host = Host({"eth0": "02:00:00:00:0a:01"}, {"eth0": "02:00:00:00:0a:fe"}, ("198.51.100.10",))
    out = []

    fx = Fixture("web-server-http", host)
    http = Tcp(fx, ("192.0.2.44", 50500), ("198.51.100.10", 80), "eth0", "local:eth0")
    http.handshake("visitor -> HTTP")
    http.client_data(HTTP_GET, "GET /")
    http.server_data(HTTP_OK, "200 OK")
    http.ack("visitor ACKs the page")
    p = http._c("PA", b"junk")
    p[TCP].seq = (http.c_seq + 10_000_000) & 0xFFFFFFFF
    fx.add("eth0", p, "a segment far outside the window: INVALID, dropped")
    https = Tcp(fx, ("192.0.2.44", 50501), ("198.51.100.10", 443), "eth0", "local:eth0", c_isn=77_000)
    https.syn("visitor -> HTTPS: SYN")
    out.append(fx)

    fx = Fixture("web-server-admin", host)
    admin = Tcp(fx, ("203.0.113.5", 50022), ("198.51.100.10", 22), "eth0", "local:eth0")
    admin.handshake("administrator -> sshd")
    fx.add("eth0", IP(src="192.0.2.44", dst="198.51.100.10") / TCP(sport=50600, dport=22, flags="S", seq=3000),
           "SSH from outside the admin network: reset")
    fx.add("eth0", IP(src="192.0.2.44", dst="198.51.100.10") / TCP(sport=50601, dport=25, flags="S", seq=3100),
           "a closed port (SMTP): reset")
    fx.add("eth0", IP(src="192.0.2.44", dst="198.51.100.10") / UDP(sport=50602, dport=53) / Raw(DNS_QUERY),
           "UDP: silently dropped")
    fx.add("eth0", ping("192.0.2.44", "198.51.100.10", 0x0404), "a ping: answered")
    fx.add("local", ping("198.51.100.10", "198.51.100.10", 0x0505), "the server pings its own address (through lo)")
    out.append(fx)
    return out


def ssh_bastion() -> list[Fixture]:
    host = Host({"eth0": "02:00:00:00:16:01"}, {"eth0": "02:00:00:00:16:fe"}, ("198.51.100.22",))
    out = []

    fx = Fixture("ssh-bastion-login", host)
    s = Tcp(fx, ("203.0.113.5", 50022), ("198.51.100.22", 22), "eth0", "local:eth0")
    s.handshake("administrator logs in")
    s.server_data(SSH_BANNER, "sshd's banner")
    s.client_data(SSH_BANNER, "the client's banner")
    fx.add("eth0", ping("203.0.113.5", "198.51.100.22", 0x0606), "a ping: answered")
    fx.add("local", ping("127.0.0.1", "127.0.0.1", 0x0707), "the bastion pings itself on lo")
    fx.add("eth0", IP(src="203.0.113.5", dst="10.0.0.9") / TCP(sport=50024, dport=22, flags="S", seq=777),
           "through the bastion to somewhere else: it does not forward (ip_forward 0), dropped")
    out.append(fx)

    fx = Fixture("ssh-bastion-bruteforce", host)
    for i in range(6):
        n = i + 1
        verdict = "accepted" if n <= 4 else "logged and dropped"
        fx.add("eth0", IP(src="192.0.2.66", dst="198.51.100.22")
               / TCP(sport=40000 + n, dport=22, flags="S", seq=10_000 * n, window=64240),
               f"attacker's new SSH connection {n} within a second: {verdict}", gap_ms=100)
        if n == 5:
            fx.add("eth0", IP(src="203.0.113.5", dst="198.51.100.22")
                   / TCP(sport=50023, dport=22, flags="S", seq=4242, window=64240),
                   "meanwhile the administrator connects: another source, accepted", gap_ms=50)
    out.append(fx)
    return out


def container_host() -> list[Fixture]:
    host = Host({"eth0": "02:00:00:00:14:01", "docker0": "02:42:ac:11:00:01"},
                {"eth0": "02:00:00:00:14:fe", "docker0": "02:42:ac:11:00:03"}, ("198.51.100.20", "172.17.0.1"),
                {"172.17.0.2": "02:42:ac:11:00:02", "172.17.0.3": "02:42:ac:11:00:03"})
    out = []

    fx = Fixture("container-host-published", host)
    pub = Tcp(fx, ("192.0.2.77", 50000), ("172.17.0.2", 80), "eth0", "docker0", s_addr=("198.51.100.20", 8080))
    pub.handshake("internet -> host:8080 (DNAT to the web container)")
    pub.client_data(HTTP_GET, "GET through the published port")
    pub.server_data(HTTP_OK, "the container answers (source back to host:8080)")
    out.append(fx)

    fx = Fixture("container-host-outbound", host)
    up = Tcp(fx, ("172.17.0.3", 45000), ("192.0.2.80", 443), "docker0", "eth0",
             c_addr=("198.51.100.20", 45000))
    up.handshake("a container -> the internet (MASQUERADE)")
    up.client_data(b"\x16\x03\x01\x00\x05hello", "the container sends")
    up.server_data(b"\x16\x03\x03\x00\x05howdy", "the answer, de-NATed to the container")
    out.append(fx)

    fx = Fixture("container-host-hairpin", host)
    hp = Tcp(fx, ("172.17.0.3", 46000), ("172.17.0.2", 80), "docker0", "docker0",
             s_addr=("198.51.100.20", 8080), c_addr=("172.17.0.1", 46000))
    hp.handshake("a container -> the host's public address:8080 (hairpin: DNAT and MASQUERADE)")
    hp.client_data(HTTP_GET, "GET through the hairpin")
    hp.server_data(HTTP_OK, "the web container answers the host, which answers the container")
    fx.add("docker0", IP(src="172.17.0.3", dst="172.17.0.2") / UDP(sport=46001, dport=5353) / Raw(b"hi"),
           "container to container through the host's routing")
    me = Tcp(fx, ("198.51.100.20", 47000), ("172.17.0.2", 80), "local:eth0", "docker0",
             s_addr=("198.51.100.20", 8080), c_isn=31_000)
    me.handshake("the host itself -> its public address:8080 (DNAT in OUTPUT)")
    out.append(fx)
    return out


def strict_server() -> list[Fixture]:
    host = Host({"eth0": "02:00:00:00:28:01"}, {"eth0": "02:00:00:00:28:fe"}, ("198.51.100.40",))
    out = []

    fx = Fixture("strict-server-ssh", host)
    s = Tcp(fx, ("203.0.113.5", 50022), ("198.51.100.40", 22), "eth0", "local:eth0")
    s.handshake("administrator logs in")
    s.server_data(SSH_BANNER, "sshd's banner (OUTPUT: ESTABLISHED)")
    s.client_data(SSH_BANNER, "the client's banner (INPUT: ESTABLISHED)")
    out.append(fx)

    fx = Fixture("strict-server-updates", host)
    fx.add("local", IP(src="198.51.100.40", dst="192.0.2.53") / UDP(sport=41000, dport=53) / Raw(DNS_QUERY),
           "the server looks up its mirror")
    fx.add("eth0", IP(src="192.0.2.53", dst="198.51.100.40") / UDP(sport=53, dport=41000) / Raw(DNS_ANSWER),
           "the resolver answers (INPUT: ESTABLISHED)")
    up = Tcp(fx, ("198.51.100.40", 41001), ("192.0.2.80", 443), "local:eth0", "eth0")
    up.handshake("the server fetches updates over HTTPS")
    fx.add("local", ping("127.0.0.1", "127.0.0.1", 0x0808), "a ping on lo")
    fx.add("local", IP(src="198.51.100.40", dst="192.0.2.123") / UDP(sport=41002, dport=123)
           / Raw(b"\x23" + b"\x00" * 47), "NTP is not on the list: logged and dropped")
    out.append(fx)

    fx = Fixture("strict-server-scan", host)
    for i in range(12):
        fx.add("eth0", IP(src="192.0.2.66", dst="198.51.100.40")
               / TCP(sport=33000 + i, dport=1 + i, flags="S", seq=1_000 + i, window=1024),
               f"port scan probe {i + 1} of 12: dropped, the first 10 logged", gap_ms=5)
    out.append(fx)
    return out


ALL = {
    "home-gateway": home_gateway,
    "web-server": web_server,
    "ssh-bastion": ssh_bastion,
    "container-host": container_host,
    "strict-server": strict_server,
}


def build() -> dict[str, list[Fixture]]:
    return {name: make() for name, make in ALL.items()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for fixtures in build().values():
        for fx in fixtures:
            path = fx.write()
            print(f"{path.relative_to(HERE.parents[1])}: {len(fx.frames)} frames", file=sys.stderr)


if __name__ == "__main__":
    main()
