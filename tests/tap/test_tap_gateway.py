"""`pyfw daemon --tap` as the gateway between two bridges (tests/tap/lab.py),
seen by real clients: curl, ping, python sockets in the lan and wan
namespaces.  One lab and one daemon for the module; the fault test runs its
own daemon on the same lab."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import PY, TapLab, root_problem, sh  # noqa: E402

pytestmark = pytest.mark.root
if root_problem():
    pytest.skip(str(root_problem()), allow_module_level=True)

HERE = Path(__file__).resolve().parent
SIZE = 10 << 20
STATUS = ("--status", "0.0.0.0:8000")

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth1 -p tcp --dport 8080 -j DNAT --to-destination 10.77.1.2:80
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i eth1 -p tcp --dport 8000 -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -p tcp --dport 81 -j REJECT --reject-with tcp-reset
-A FORWARD -i eth0 -p tcp --dport 82 -j DROP
-A FORWARD -i eth0 -d 203.0.113.3 -p icmp -j REJECT
-A FORWARD -i eth0 -d 203.0.113.4 -p icmp -j DROP
-A FORWARD -i eth0 -j ACCEPT
-A FORWARD -i eth1 -d 10.77.1.2 -p tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT
COMMIT
"""

# floods from the lan at a bounded rate, from "start" until their stdin
# closes (at most `cap` seconds), then the number sent: ARP requests for the
# gateway from made-up senders all over 10.0.0.0/8 (each one a neighbour
# entry: more than the table holds), and SYNs at the gateway's status page
# from made-up lan sources (its SYN-ACKs then wait for neighbours that never
# answer; more than its SYN backlog)
FLOOD = r"""
import random, select, socket, struct, sys, time
kind, rate, cap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b)); s = (s & 0xffff) + (s >> 16); s += s >> 16
    return ~s & 0xffff
if kind == "arp":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
    def one(i):
        mac = bytes([2, 0x99]) + rng.randbytes(4); sip = bytes([10, rng.randrange(1, 77)]) + rng.randbytes(2)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, mac, sip, bytes(6), bytes([10, 77, 1, 1]))
        s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    def one(i):
        src = bytes([10, 77, 1, rng.randrange(100, 250)]); dst = bytes([10, 77, 1, 1])
        sport = rng.randrange(1024, 65535)
        tcp = struct.pack("!HHIIBBHHH", sport, 8000, rng.getrandbits(32), 0, 5 << 4, 2, 65535, 0, 0)
        c = csum(src + dst + struct.pack("!BBH", 0, 6, 20) + tcp)
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, dst)
        s.sendto(ip + tcp, ("10.77.1.1", 0))
print("start", flush=True)
t0 = time.monotonic(); n = 0
while (now := time.monotonic()) < t0 + cap:
    if n < (now - t0) * rate:
        one(n); n += 1
    elif select.select([sys.stdin], [], [], 0.002)[0]:
        break  # stdin closed: the test has seen enough
print(n, flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TapLab]:
    lab = TapLab()
    tmp = tmp_path_factory.mktemp("tap")
    try:
        lab.up()
        for ns, name in ((lab.wan, "wan"), (lab.lan, "lan")):
            p = lab.spawn(ns, PY, str(HERE / "servers.py"), name, "80,81,82,83", stdout=subprocess.PIPE)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p = lab.spawn(lab.wan, PY, str(HERE / "bulk.py"), "serve", "5001", str(SIZE), "1", stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        p = lab.spawn(lab.wan, PY, str(HERE / "bulk.py"), "sink", "5002", stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        lab.sock = lab.start(tmp, RULES, *STATUS)  # type: ignore[attr-defined]
        yield lab
    finally:
        lab.down()


def curl(lab: TapLab, ns: str, url: str, timeout: float = 3.0) -> tuple[int, str]:
    r = sh("curl", "-s", "--max-time", str(timeout), url, ns=ns, check=False)
    return r.returncode, r.stdout.strip()


def udp(ns: str, host: str, port: int) -> str:
    code = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); "
            f"s.sendto(b'hi',({host!r},{port})); print(s.recv(200).decode())")
    return sh(PY, "-c", code, ns=ns, check=False).stdout.strip()


def ping(ns: str, host: str, count: int = 1, wait: float = 2) -> subprocess.CompletedProcess[str]:
    return sh("ping", "-n", "-c", str(count), "-W", str(wait), host, ns=ns, check=False)


def fetch(lab: TapLab, timeout: float = 60) -> dict[str, object]:
    r = sh(PY, str(HERE / "bulk.py"), "fetch", "203.0.113.2", "5001", str(timeout), ns=lab.lan, check=False,
           timeout=timeout + 10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def expected_sha() -> str:
    return sh(PY, str(HERE / "bulk.py"), "expect", str(SIZE), "1").stdout.strip()


def test_masquerade_dnat_reject_drop(lab: TapLab) -> None:
    # MASQUERADE: the wan server sees the gateway's address, for TCP, UDP and ICMP
    assert curl(lab, lab.lan, "http://203.0.113.2/") == (0, "wan 203.0.113.1")
    assert udp(lab.lan, "203.0.113.2", 5353) == "wan 203.0.113.1"
    r = ping(lab.lan, "203.0.113.2", count=2)
    assert r.returncode == 0 and "ttl=63" in r.stdout, r.stdout
    # the gateway answers pings itself, on both sides
    assert ping(lab.lan, "10.77.1.1").returncode == 0
    assert ping(lab.wan, "203.0.113.1").returncode == 0
    # fragments: reassembled for conntrack and sent on in pieces again, and
    # reassembled for the gateway itself, whose reply leaves fragmented
    r = sh("ping", "-n", "-c", "1", "-W", "2", "-s", "4000", "203.0.113.2", ns=lab.lan, check=False)
    assert r.returncode == 0 and "4008 bytes from 203.0.113.2" in r.stdout, r.stdout
    r = sh("ping", "-n", "-c", "1", "-W", "2", "-s", "4000", "10.77.1.1", ns=lab.lan, check=False)
    assert r.returncode == 0 and "4008 bytes from 10.77.1.1" in r.stdout, r.stdout
    # DNAT port forward: the lan server sees the wan client's own address
    assert curl(lab, lab.wan, "http://203.0.113.1:8080/") == (0, "lan 203.0.113.2")
    # REJECT with tcp-reset: curl's "couldn't connect" at once; DROP: its timeout
    # (a dropped SYN would leave curl waiting for its whole --max-time of 10 s)
    t0 = time.monotonic()
    assert curl(lab, lab.lan, "http://203.0.113.2:81/", timeout=10.0)[0] == 7
    assert time.monotonic() - t0 < 5.0
    assert curl(lab, lab.lan, "http://203.0.113.2:82/", timeout=1.0)[0] == 28
    # and for ping: REJECT's port unreachable comes back, DROP stays silent
    r = ping(lab.lan, "203.0.113.3")
    assert r.returncode == 1 and "Destination Port Unreachable" in r.stdout, r.stdout
    r = ping(lab.lan, "203.0.113.4", wait=1)
    assert r.returncode == 1 and "Unreachable" not in r.stdout and " 0 received" in r.stdout, r.stdout
    # a closed port of the gateway itself: a reset, as Linux sends
    assert curl(lab, lab.lan, "http://10.77.1.1:9/")[0] == 7


def test_arp_both_ways(lab: TapLab) -> None:
    assert ping(lab.lan, "10.77.1.1").returncode == 0
    assert ping(lab.lan, "203.0.113.2").returncode == 0
    # the hosts resolved the gateway's MACs (pyfw answered their requests)...
    lan = sh("ip", "neigh", "show", "10.77.1.1", ns=lab.lan).stdout
    wan = sh("ip", "neigh", "show", "203.0.113.1", ns=lab.wan).stdout
    assert "02:77:00:00:00:01" in lan, lan
    assert "02:77:00:00:00:02" in wan, wan
    # ...and the gateway resolved theirs: its replies reached them, and the
    # unanswered requests for a missing host end in host unreachable
    r = ping(lab.lan, "10.77.1.99", wait=5)
    assert r.returncode == 1
    r = ping(lab.wan, "203.0.113.1", count=1)
    assert r.returncode == 0


def test_status_page_from_the_lan(lab: TapLab) -> None:
    pytest.importorskip("pyfw.stack")
    assert curl(lab, lab.lan, "http://203.0.113.2/")[0] == 0
    code, body = curl(lab, lab.lan, "http://10.77.1.1:8000/status.json")
    assert code == 0, body
    st = json.loads(body)
    assert [i["name"] for i in st["interfaces"]] == ["eth0", "eth1"]
    assert st["interfaces"][0]["tap"] == lab.tapl and st["interfaces"][0]["rx_frames"] > 0
    # the gateway's side of ARP: it learnt the lan host's MAC
    lan_mac = re.search(r"link/ether (\S+)", sh("ip", "-o", "link", "show", "eth0", ns=lab.lan).stdout)
    assert lan_mac is not None
    assert {"ip": "10.77.1.2", "dev": "eth0", "mac": lan_mac.group(1)}.items() <= \
        next(n for n in st["neighbours"] if n["ip"] == "10.77.1.2").items()
    # the connection table holds this very request, as conntrack -L prints it
    assert any("dport=8000" in line and "src=10.77.1.2" in line for line in st["conntrack"]), st["conntrack"]
    # the rules with their counters: MASQUERADE has counted the connection above
    masq = next(line for line in st["rules"] if "MASQUERADE" in line)
    assert re.match(r"\[[1-9]\d*:\d+\] -A POSTROUTING -o eth1 -j MASQUERADE", masq), masq
    code, page = curl(lab, lab.lan, "http://10.77.1.1:8000/")
    assert code == 0 and "<h1>pyfw status</h1>" in page and "eth0" in page
    # the INPUT chain guards it like any local service: not from the wan
    assert curl(lab, lab.wan, "http://203.0.113.1:8000/", timeout=1.0)[0] == 28


def test_status_stack_serves_10mb_intact(lab: TapLab) -> None:
    http = pytest.importorskip("pyfw.stack.http")
    import hashlib

    r = sh("sh", "-c", f"curl -s --max-time 60 'http://10.77.1.1:8000/bytes?n={SIZE}' | sha256sum", ns=lab.lan,
           timeout=70)
    assert r.stdout.split()[0] == hashlib.sha256(http.pattern_bytes(SIZE)).hexdigest()


def test_download_10mb_intact(lab: TapLab) -> None:
    got = fetch(lab)
    assert got["bytes"] == SIZE
    assert got["sha256"] == expected_sha()


def test_upload_10mb_intact(lab: TapLab) -> None:
    # lan -> wan: the lan host's super-frames are masqueraded on the way out
    r = sh(PY, str(HERE / "bulk.py"), "push", "203.0.113.2", "5002", str(SIZE), "2", ns=lab.lan, timeout=90)
    assert json.loads(r.stdout)["sha256"] == sh(PY, str(HERE / "bulk.py"), "expect", str(SIZE), "2").stdout.strip()


def test_conntrack_of_the_daemon(lab: TapLab) -> None:
    assert curl(lab, lab.lan, "http://203.0.113.2/") == (0, "wan 203.0.113.1")
    code = "import sys; from pyfw.cli.main import main_pyfw; sys.argv = ['pyfw', 'conntrack', '--socket', " \
           f"{lab.sock!r}, '-L', '-p', 'tcp', '--dport', '80']; main_pyfw()"  # type: ignore[attr-defined]
    r = sh(PY, "-c", code, ns=lab.gw, check=False, env=dict(os.environ, PYTHONPATH=str(HERE.parents[1])))
    assert "src=10.77.1.2 dst=203.0.113.2" in r.stdout and "dst=203.0.113.1" in r.stdout, (r.stdout, r.stderr)


def status(lab: TapLab) -> dict[str, Any]:
    code, body = curl(lab, lab.lan, "http://10.77.1.1:8000/status.json", timeout=10)
    assert code == 0, body
    return json.loads(body)  # type: ignore[no-any-return]


def control(lab: TapLab, *argv: str) -> Any:
    """A pyfw command on the daemon's socket (pyfw.cli.main.Result)."""
    from pyfw.daemon.control import request

    return request(lab.sock, ["pyfw", *argv], timeout=10)  # type: ignore[attr-defined]


def test_output_chain_guards_the_own_stack(lab: TapLab) -> None:
    """What the gateway's own TCP sends passes OUTPUT: a DROP there on the
    status page's port silences it; deleted over the socket, it answers again."""
    pytest.importorskip("pyfw.stack")
    url = "http://10.77.1.1:8000/status.json"
    assert curl(lab, lab.lan, url)[0] == 0
    rule = ("OUTPUT", "-p", "tcp", "--sport", "8000", "-j", "DROP")
    r = control(lab, "-A", *rule)
    assert r.rc == 0, r.err
    try:
        assert curl(lab, lab.lan, url, timeout=1.5)[0] == 28
        out = control(lab, "-L", "OUTPUT", "-n", "-v", "-x").out
        row = next(line for line in out.splitlines() if "tcp spt:8000" in line)
        assert int(row.split()[0]) >= 1, out  # its SYN-ACKs, counted and dropped
        # the forwarded traffic does not pass OUTPUT
        assert curl(lab, lab.lan, "http://203.0.113.2/") == (0, "wan 203.0.113.1")
    finally:
        r = control(lab, "-D", *rule)
    assert r.rc == 0, r.err
    assert "--sport 8000" not in control(lab, "-S", "OUTPUT").out
    code, body = curl(lab, lab.lan, url)
    assert code == 0 and json.loads(body)["host"] == "tapgw", body


def test_arp_storm_and_syn_flood_keep_it_forwarding(lab: TapLab) -> None:
    """The 10 MB download runs while both floods do (each ~1000 frames/s, 3 s
    at least); the status page shows that they reached the gateway: SYNs past
    the backlog dropped, the neighbour table full of the storm's senders but
    never past its bound."""
    has_stack = importlib.util.find_spec("pyfw.stack") is not None
    before = status(lab) if has_stack else {}
    floods = [lab.spawn(lab.lan, PY, "-c", FLOOD, kind, "1000", "60", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
              for kind in ("arp", "syn")]
    try:
        for p in floods:
            assert p.stdout is not None and p.stdout.readline().strip() == "start"
        started = time.monotonic()
        got = fetch(lab)
        assert got["bytes"] == SIZE and got["sha256"] == expected_sha()
        assert curl(lab, lab.lan, "http://203.0.113.2/", timeout=10) == (0, "wan 203.0.113.1")
        # the floods ran the whole time (each stops only when told to)
        assert [p.poll() for p in floods] == [None, None]
        time.sleep(max(0.0, started + 3.0 - time.monotonic()))
    finally:
        for p in floods:
            if p.stdin is not None:
                p.stdin.close()
        for p in floods:
            p.wait(timeout=30)
    sent = [int(p.stdout.read()) if p.stdout is not None else 0 for p in floods]
    assert [p.returncode for p in floods] == [0, 0]
    assert min(sent) >= 2000, sent
    # after the floods it still forwards and answers, its status page too
    assert curl(lab, lab.lan, "http://203.0.113.2/") == (0, "wan 203.0.113.1")
    assert ping(lab.lan, "10.77.1.1").returncode == 0
    if not has_stack:
        return
    after = status(lab)
    tcp0, tcp1 = before["tcp"], after["tcp"]
    # the SYNs reached the listener: hundreds of passive opens, the oldest
    # half-open ones dropped past the backlog (256) to let new ones in
    assert tcp1["PassiveOpens"] - tcp0["PassiveOpens"] >= 500, (tcp0, tcp1)
    assert tcp1["SynDropped"] - tcp0.get("SynDropped", 0) >= 100, (tcp0, tcp1)
    # the ARP requests were answered and their senders learnt, the table held
    # at its bound (gc_thresh3) by forced garbage collection
    storm = [n for n in after["neighbours"] if n["ip"].startswith("10.") and not n["ip"].startswith("10.77.")]
    assert len(storm) >= 500, len(storm)
    assert len(after["neighbours"]) <= 1024, len(after["neighbours"])
    c0, c1 = before["counters"], after["counters"]
    assert c1.get("neigh_forced_gc_runs", 0) > c0.get("neigh_forced_gc_runs", 0), (c0, c1)


def test_faults_still_give_an_intact_transfer(lab: TapLab, tmp_path: Path) -> None:
    sock = lab.sock  # type: ignore[attr-defined]
    assert lab.stop() == 0
    try:
        lab.start(tmp_path, RULES, "--fault-seed", "5", "--loss", "0.01", "--dup", "0.01", "--reorder", "0.02")
        got = fetch(lab, timeout=90)
    finally:
        # (no assertion here: it would hide the failure that brought us here)
        rc = lab.stop()
        log = lab.log
        lab.sock = lab.start(Path(sock).parent, RULES, *STATUS)  # type: ignore[attr-defined]
    assert rc == 0, log
    assert got["bytes"] == SIZE and got["sha256"] == expected_sha()
    counts = dict(re.findall(r"(fault_\w+) (\d+)", log))
    assert all(int(counts.get(k, 0)) > 0 for k in ("fault_lost", "fault_duplicated", "fault_reordered")), log


def test_stop_leaves_nothing(tmp_path: Path) -> None:
    lab = TapLab("s")
    try:
        lab.up()
        sock = lab.start(tmp_path, RULES)
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        assert lab.stop() == 0, lab.log
        assert not os.path.exists(sock)
        links = sh("ip", "-o", "link", ns=lab.gw).stdout
        assert lab.tapl not in links and lab.tapw not in links
        # killed outright: the devices go with the process, and the next
        # daemon takes over the stale socket
        lab.start(tmp_path, RULES)
        assert lab.daemon is not None
        lab.daemon.kill()
        lab.daemon.wait(timeout=10)
        lab.daemon = None
        links = sh("ip", "-o", "link", ns=lab.gw).stdout
        assert lab.tapl not in links and lab.tapw not in links
        # LOG lines go to the daemon's log sink (stderr here), in the kernel's text
        lab.start(tmp_path, RULES.replace("-A FORWARD -i eth0 -j ACCEPT",
                                          '-A FORWARD -i eth0 -p icmp -j LOG --log-prefix "tap-log "\n'
                                          "-A FORWARD -i eth0 -j ACCEPT"))
        assert ping(lab.lan, "10.77.1.1").returncode == 0
        assert ping(lab.lan, "203.0.113.2").returncode == 0
        assert lab.stop() == 0, lab.log
        assert re.search(r"tap-log IN=eth0 OUT=eth1 MAC=02:77:00:00:00:01:\S+ SRC=10.77.1.2 DST=203.0.113.2 .*PROTO=ICMP "
                         r"TYPE=8 CODE=0", lab.log), lab.log
    finally:
        lab.down()


def test_start_up_checks_touch_nothing(tmp_path: Path) -> None:
    """A missing bridge, a bad host file or ruleset: a message and an exit
    status before any device is made."""
    ns = f"pyfw-tc-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        host = tmp_path / "host.toml"
        rules = tmp_path / "rules"
        rules.write_text(RULES)
        env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))

        def daemon(*args: str) -> subprocess.CompletedProcess[str]:
            return sh(PY, "-m", "pyfw.daemon", "--tap", "--host", str(host), "--socket", str(tmp_path / "s"),
                      *args, ns=ns, check=False, env=env)

        host.write_text('[host]\nname = "g"\n[[interface]]\nname = "eth0"\naddresses = ["10.1.1.1/24"]\n'
                        'bridge = "nosuchbr"\ntap = "tcheck0"\n')
        r = daemon("--ruleset", str(rules))
        assert r.returncode == 1 and "no bridge named nosuchbr" in r.stderr, r.stderr
        host.write_text('[host]\nname = "g"\n[[interface]]\nname = "eth0"\ncolour = "red"\n')
        r = daemon()
        assert r.returncode == 2 and "colour" in r.stderr, r.stderr
        host.write_text('[host]\nname = "g"\n[[interface]]\nname = "eth0"\naddresses = ["10.1.1.1/24"]\ntap = "tcheck0"\n')
        rules.write_text("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
        r = daemon("--ruleset", str(rules))
        assert r.returncode == 2 and "Error occurred at line: 2" in r.stderr, r.stderr
        r = daemon("--status", "10.9.9.9:80")
        assert r.returncode == 2 and "not an address of the host" in r.stderr, r.stderr
        assert "tcheck0" not in sh("ip", "-o", "link", ns=ns).stdout
        assert not (tmp_path / "s").exists()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
