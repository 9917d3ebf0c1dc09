"""`pyfw simulate` as its contract describes it (shared/contracts/simulate.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

scapy = pytest.importorskip("scapy.all")
from scapy.all import ICMP, IP, TCP, UDP, Ether  # noqa: E402
from scapy.utils import PcapNgWriter, wrpcap  # noqa: E402

from tests.hosts import gateway_host, neighbor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYFW = Path(sys.executable).parent / "pyfw"

HOST = gateway_host(neighbor("192.168.1.10", "02:00:00:00:00:10", "eth0")
                    + '[[service]]\nproto = "tcp"\nport = 22\n')

LAN = "02:00:00:00:00:01"
WAN = "02:00:00:00:00:02"


def write_pcapng(path: Path, frames: list[tuple[str, object]]) -> None:
    w = PcapNgWriter(str(path))
    for i, (iface, p) in enumerate(frames):
        q = Ether(bytes(p))  # type: ignore[arg-type]
        q.time = 1000 + i * 0.5
        q.sniffed_on = iface
        w.write(q)
    w.close()


def simulate(tmp: Path, pcap: Path, *extra: str, ruleset: Path | None = None) -> subprocess.CompletedProcess[str]:
    host = tmp / "host.toml"
    host.write_text(HOST)
    rules = ruleset or (REPO / "rulesets" / "home-gateway.rules")
    return subprocess.run([str(PYFW), "simulate", "--ruleset", str(rules), "--host", str(host), "--pcap", str(pcap),
                           "--iface", "eth0", *extra], capture_output=True, text=True)


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    frames = [
        ("eth0", Ether(dst=LAN) / IP(src="192.168.1.5", dst="8.8.8.8") / TCP(sport=40000, dport=80, flags="S")),
        ("eth1", Ether(dst=WAN) / IP(src="8.8.8.8", dst="203.0.113.1") / TCP(sport=80, dport=40000, flags="SA",
                                                                           ack=1)),
        ("eth0", Ether(dst=LAN) / IP(src="192.168.1.5", dst="192.168.1.1") / ICMP(id=7)),
        ("eth1", Ether(dst=WAN) / IP(src="8.8.8.8", dst="203.0.113.1") / TCP(sport=1234, dport=8080, flags="S")),
        ("eth1", Ether(dst=WAN) / IP(src="8.8.8.8", dst="203.0.113.1") / UDP(sport=1234, dport=53)),
        ("eth1", Ether(dst=WAN) / IP(src="8.8.8.8", dst="203.0.113.1", ttl=1) / TCP(dport=25, flags="S")),
        ("eth0", Ether(dst=LAN) / b"\x00\x01not-an-ip-frame"),
    ]
    path = tmp_path / "in.pcapng"
    write_pcapng(path, frames)
    return path


def test_json_paths_and_outputs(tmp_path: Path, scenario: Path) -> None:
    out = tmp_path / "out"
    p = simulate(tmp_path, scenario, "--out-dir", str(out), "--counters", str(tmp_path / "c.txt"),
                 "--conntrack", str(tmp_path / "ct.txt"), "--log", str(tmp_path / "log.txt"), "--json", "--trace")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(1, 8))
    assert [(r["in"], r["verdict"], r["path"], r["out"]) for r in rows[:5]] == [
        ("eth0", "ACCEPT", "forward", "eth1"),
        ("eth1", "ACCEPT", "forward", "eth0"),
        ("eth0", "ACCEPT", "input", None),
        ("eth1", "ACCEPT", "forward", "eth0"),   # the port forward (DNAT)
        ("eth1", "REJECT", "input", None),
    ]
    assert rows[6]["path"] == "ignored" and rows[6]["verdict"] is None
    for r in rows:
        assert len(r["trace"]) == len(r["trace_src"])
    assert rows[3]["trace"][0] == "nat:PREROUTING:1"
    assert rows[3]["trace_src"][0].endswith("home-gateway.rules:11")
    # the SYN left masqueraded, the echo got a reply, DNAT went to the server
    eth1 = scapy.rdpcap(str(out / "eth1.pcap"))
    assert eth1[0][IP].src == "203.0.113.1" and eth1[0][Ether].dst == "02:00:00:00:00:fe"
    eth0 = scapy.rdpcap(str(out / "eth0.pcap"))
    assert any(ICMP in f and f[ICMP].type == 0 for f in eth0)
    assert any(TCP in f and f[IP].dst == "192.168.1.10" and f[TCP].dport == 80 for f in eth0)
    counters = (tmp_path / "c.txt").read_text()
    assert "[1:40] -A PREROUTING -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.1.10:80" \
        in counters
    ct = (tmp_path / "ct.txt").read_text().splitlines()
    assert any(line.startswith("tcp      6 ") and "dport=8080" in line and "[UNREPLIED]" in line for line in ct)


def test_exit_codes(tmp_path: Path, scenario: Path) -> None:
    bad = tmp_path / "bad.rules"
    bad.write_text("*filter\n-A INPUT --bogus\nCOMMIT\n")
    p = simulate(tmp_path, scenario, ruleset=bad)
    assert p.returncode == 1
    assert "Error occurred at line: 2" in p.stderr
    p = simulate(tmp_path, tmp_path / "missing.pcap")
    assert p.returncode == 2 and "missing.pcap" in p.stderr
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    p = simulate(tmp_path, junk)
    assert p.returncode == 2 and "junk.pcap" in p.stderr
    p = subprocess.run([str(PYFW), "simulate", "--ruleset", "x"], capture_output=True, text=True)
    assert p.returncode == 2


def test_local_interface_starts_in_output(tmp_path: Path) -> None:
    rules = tmp_path / "out.rules"
    rules.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A OUTPUT -p udp -m udp --dport 53 -j DROP\nCOMMIT\n")
    pcap = tmp_path / "local.pcapng"
    write_pcapng(pcap, [("local", Ether() / IP(src="203.0.113.1", dst="9.9.9.9") / UDP(dport=53)),
                        ("local", Ether() / IP(src="203.0.113.1", dst="9.9.9.9") / UDP(dport=123))])
    p = simulate(tmp_path, pcap, "--json", "--trace", "--out-dir", str(tmp_path / "o"), ruleset=rules)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["in"], r["verdict"], r["path"], r["out"]) for r in rows] == [
        ("local", "DROP", "output", None), ("local", "ACCEPT", "output", "eth1")]
    assert rows[0]["trace"] == ["filter:OUTPUT:1"]


def test_malformed_frames_are_counted_not_raised(tmp_path: Path) -> None:
    pcap = tmp_path / "bad.pcap"
    frames = [Ether(dst=LAN) / IP(src="1.2.3.4", dst="192.168.1.1", ihl=3) / (b"x" * 20),
              Ether(dst=LAN) / IP(src="1.2.3.4", dst="192.168.1.1", len=200) / b"y",
              Ether(dst=LAN) / b"\x45"]
    raw = [bytes(f) for f in frames]
    raw[2] = raw[2][:12] + b"\x08\x00" + b"\x45"
    wrpcap(str(pcap), [Ether(r) for r in raw])
    p = simulate(tmp_path, pcap, "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["path"] for r in rows] == ["malformed"] * 3
