"""Source NAT in one pass through the queue (pyfw.daemon.localsrc): the
daemon sets accept_local while it runs, so that a masqueraded packet is
queued once, at raw PREROUTING; strict rp_filter on the in-device or
`--nat-two-pass` keep the second pass at POSTROUTING.  A packet from the wan
with one of the gateway's own addresses as source is still dropped: pyfw's
model of the host judges it by the user's accept_local (0), not the daemon's.

The lab is test_ops' (lan 10.71.1.2 -- gw 10.71.1.1 | 203.0.113.1 -- wan 203.0.113.2,
wan with a route back to lan).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_nfqueue import PY, Lab, client, sh
from test_ops import Daemon, accept_local, stats  # (test_nfqueue skips this module when not root)

# lan: N datagrams to wan's echo server on one socket, how many answers came back
UDP_LOOP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
s.connect(("203.0.113.2", 5353)); got = 0
for i in range(int(sys.argv[1])):
    s.send(b"x")
    try:
        got += s.recv(100).startswith(b"wan 203.0.113.1")
    except OSError:
        pass
print(got)
"""

# a UDP listener printing the sources of what reached it within the time given
LISTEN = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2]); seen = []
while True:
    s.settimeout(max(0.01, end - time.monotonic()))
    try:
        seen.append(s.recvfrom(100)[1][0])
    except OSError:
        break
print(" ".join(seen) or "-", flush=True)
"""

# wan: UDP datagrams with made-up sources (IP_HDRINCL), "SRC>DST:PORT" each
SPOOF = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for spec in sys.argv[1:]:
    src, rest = spec.split(">"); dst, port = rest.split(":")
    udp = struct.pack("!HHHH", 4444, int(port), 10, 0) + b"sp"
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(hdr + udp, (dst, 0))
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        sh("ip", "route", "add", "10.71.1.0/24", "via", "203.0.113.1", ns=lab.wan)
        yield lab
    finally:
        lab.down()


def steering_counts(lab: Lab) -> dict[str, int]:
    """Packets the daemon's queue rules at raw PREROUTING and mangle POSTROUTING sent to the queue."""
    out = {}
    for table, chain in (("raw", "PREROUTING"), ("mangle", "POSTROUTING")):
        listing = sh("iptables-legacy", "-t", table, "-L", chain, "-n", "-v", "-x", ns=lab.gw).stdout
        out[chain] = sum(int(line.split()[0]) for line in listing.splitlines()
                         if "NFQUEUE" in line and "pyfw-daemon" in line)
    return out


def udp_loop(lab: Lab, n: int) -> int:
    return int(sh(PY, "-c", UDP_LOOP, str(n), ns=lab.lan).stdout)


@pytest.mark.parametrize("mode", ["one-pass", "loose-rp-filter", "strict-rp-filter", "nat-two-pass"])
def test_masqueraded_flow_queued_once(lab: Lab, tmp_path: Path, mode: str) -> None:
    lab.server(lab.wan, "wan", "80,5353")
    if mode.endswith("rp-filter"):
        # strict: the kernel wants the reverse route through the in-device (a local address has none); loose takes it
        sh("sysctl", "-qw", f"net.ipv4.conf.{lab.gl}.rp_filter={1 if mode.startswith('strict') else 2}", ns=lab.gw)
    d = Daemon(lab, tmp_path, *(["--nat-two-pass"] if mode == "nat-two-pass" else []))
    try:
        assert accept_local(lab) == (0 if mode == "nat-two-pass" else 1)
        before = steering_counts(lab)
        assert udp_loop(lab, 40) == 40
        after = steering_counts(lab)
        queued = {k: after[k] - before[k] for k in after}
        # 40 out and 40 answers at PREROUTING; the way out again at POSTROUTING only with the second pass
        assert 80 <= queued["PREROUTING"] <= 90, queued
        if mode in ("one-pass", "loose-rp-filter"):
            assert queued["POSTROUTING"] == 0, queued
            assert "accept-post" not in stats(lab, d)
        else:
            assert 40 <= queued["POSTROUTING"] <= 45, queued
        # TCP, ICMP and a port forward in, masqueraded either way
        assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
        assert sh("ping", "-c", "1", "-W", "2", "203.0.113.2", ns=lab.lan, check=False).returncode == 0
    finally:
        rc = d.stop()
    assert rc == 0, d.log
    assert accept_local(lab) == 0  # the user's value back


def test_spoofed_own_source_still_dropped(lab: Lab, tmp_path: Path) -> None:
    rules = f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o {lab.gwn} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""
    d = Daemon(lab, tmp_path, rules=rules)
    try:
        assert accept_local(lab) == 1  # the kernel alone would take these sources now
        on_lan = lab.spawn(lab.lan, PY, "-c", LISTEN, "7000", "2.5", stdout=subprocess.PIPE)
        on_gw = lab.spawn(lab.gw, PY, "-c", LISTEN, "7001", "2.5", stdout=subprocess.PIPE)
        for p in (on_lan, on_gw):
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        drops = stats(lab, d).get("drop", 0)
        # the gateway's own wan and lan addresses as sources, forwarded and to the gateway itself;
        # then wan's own address, which passes
        spoofed = ["203.0.113.1>10.71.1.2:7000", "10.71.1.1>10.71.1.2:7000",
                   "203.0.113.1>203.0.113.1:7001", "10.71.1.1>203.0.113.1:7001"]
        sh(PY, "-c", SPOOF, *spoofed, "203.0.113.2>10.71.1.2:7000", "203.0.113.2>203.0.113.1:7001", ns=lab.wan)
        seen_lan = on_lan.communicate(timeout=10)[0].split()
        seen_gw = on_gw.communicate(timeout=10)[0].split()
        assert seen_lan == ["203.0.113.2"] and seen_gw == ["203.0.113.2"], (seen_lan, seen_gw)
        assert stats(lab, d).get("drop", 0) - drops >= len(spoofed)
    finally:
        rc = d.stop()
    assert rc == 0, d.log
    assert accept_local(lab) == 0
    assert not re.search(r"accept_local", sh("iptables-legacy-save", ns=lab.gw).stdout)
