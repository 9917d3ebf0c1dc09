"""NAT against the kernel: client -- router -- server namespaces joined by
veths, the same nat rules loaded into the router with iptables-legacy and
into pyfw, real TCP/UDP/ICMP flows between the namespaces, and every frame
the router received (captured with tcpdump) run through pyfw's NAT: the
result must equal, byte for byte from the IP header on, the frame the
router sent.  The router's conntrack table is compared too (tuples after
NAT).

Traffic only ever flows between the three namespaces made here, which are
deleted at the end whatever happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from natlab import FakeHost, Router, ip  # noqa: E402

from pyfw.engine.api import NF_ACCEPT  # noqa: E402
from pyfw.engine.conntrack.conn import Tuple  # noqa: E402

scapy = pytest.importorskip("scapy.all")

TOOLS = ("ip", "iptables-legacy-restore", "tcpdump", "conntrack", "curl", "ping", "ethtool")


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in TOOLS:
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} not installed"
    return None


pytestmark = pytest.mark.skipif(_problem() is not None, reason=str(_problem()))

CLI_NET, SRV_NET = "10.231.1", "10.231.2"
CLIENT, ROUTER_IN, ROUTER_OUT, SERVER = f"{CLI_NET}.2", f"{CLI_NET}.1", f"{SRV_NET}.1", f"{SRV_NET}.2"
EXTRA_CLIENTS = [f"{CLI_NET}.{i}" for i in range(3, 10)]
ALL_CLIENTS = [CLIENT, *EXTRA_CLIENTS]
SNAT_NET = "10.231.9"  # routed to the router by the server's default route

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(4096)
    s.sendto(d, a)
"""

UDP_CLIENT = """
import socket, sys
src, sport, dst, dport, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if len(sys.argv) > 6:
    s.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK: send with UDP checksum 0
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((src, sport))
s.settimeout(0.5)
for i in range(n):
    s.sendto(b"pyfw nat test %d" % i, (dst, dport))
    try:
        s.recvfrom(4096)
    except OSError:
        pass
"""


def _sbin_path() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


class Lab:
    """Three namespaces: cli (eth0) -- (eth0) rtr (eth1) -- (eth0) srv."""

    def __init__(self) -> None:
        tag = f"pyfw-nat-{os.getpid()}"
        self.ns = {role: f"{tag}-{role}" for role in ("cli", "rtr", "srv")}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="pyfw-nat-"))
        self.env = _sbin_path()
        self.made: list[str] = []

    def run(self, role: str, argv: list[str], stdin: str | None = None, timeout: float = 20,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["ip", "netns", "exec", self.ns[role], *argv]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc

    def bg(self, role: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *argv], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _host(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=20, env=self.env)

    def _setup(self) -> None:
        for name in self.ns.values():
            self._host(["ip", "netns", "add", name])
            self.made.append(name)
        pid = os.getpid() % 1000000
        links = [("cli", "eth0", "rtr", "eth0"), ("rtr", "eth1", "srv", "eth0")]
        for i, (a, an, b, bn) in enumerate(links):
            la, lb = f"pn{pid}{i}a", f"pn{pid}{i}b"
            self._host(["ip", "link", "add", la, "type", "veth", "peer", "name", lb])
            self._host(["ip", "link", "set", la, "netns", self.ns[a], "name", an])
            self._host(["ip", "link", "set", lb, "netns", self.ns[b], "name", bn])
        for role in self.ns:
            self.run(role, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            self.run(role, ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            self.run(role, ["ip", "link", "set", "lo", "up"])
        plan = {"cli": [("eth0", f"{CLIENT}/24")], "rtr": [("eth0", f"{ROUTER_IN}/24"), ("eth1", f"{ROUTER_OUT}/24")],
                "srv": [("eth0", f"{SERVER}/24")]}
        for role, addrs in plan.items():
            for dev, addr in addrs:
                self.run(role, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"])
                self.run(role, ["ip", "addr", "add", addr, "dev", dev])
                self.run(role, ["ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                                "gro", "off"], check=False)
                self.run(role, ["ip", "link", "set", dev, "up"])
        for extra in EXTRA_CLIENTS:
            self.run("cli", ["ip", "addr", "add", f"{extra}/24", "dev", "eth0"])
        self.run("cli", ["ip", "route", "add", "default", "via", ROUTER_IN])
        self.run("srv", ["ip", "route", "add", "default", "via", ROUTER_OUT])
        self.run("rtr", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        # keep the router's replies out of the way: no redirects
        self.run("rtr", ["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"])
        self.run("rtr", ["sysctl", "-qw", "net.ipv4.conf.eth0.send_redirects=0"])
        # servers
        py = sys.executable
        for port in ("8080", "8000"):
            self.bg("srv", [py, "-m", "http.server", port, "--bind", SERVER])
        self.bg("srv", [py, "-c", UDP_ECHO, "5353"])
        self.bg("rtr", [py, "-m", "http.server", "3128", "--bind", ROUTER_IN])
        # a TCP port the server refuses with an ICMP error (quoting the SYN)
        self.run("srv", ["iptables-legacy", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "8081", "-j", "REJECT",
                         "--reject-with", "icmp-port-unreachable"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = self.run("srv", ["ss", "-ltnH"], check=False).stdout
            if ":8080" in out and ":8000" in out:
                break
            time.sleep(0.1)
        # ARP settles before captures start
        self.run("cli", ["ping", "-c", "1", "-W", "1", ROUTER_IN], check=False)
        self.run("srv", ["ping", "-c", "1", "-W", "1", ROUTER_OUT], check=False)

    def ifnames(self, role: str) -> dict[int, str]:
        out = self.run(role, ["ip", "-o", "link", "show"]).stdout
        names = {}
        for line in out.splitlines():
            idx, name = line.split(":")[:2]
            names[int(idx)] = name.strip().split("@")[0]
        return names

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        for name in self.made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.made.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def router_host() -> FakeHost:
    h = FakeHost()
    h.add("eth0", f"{ROUTER_IN}/24")
    h.add("eth1", f"{ROUTER_OUT}/24")
    h.add("lo", "127.0.0.1/8")
    return h


def rules_text(*lines: str) -> str:
    return ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            ":POSTROUTING ACCEPT [0:0]\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n")


@dataclass
class Outcome:
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    kernel_conns: set[tuple[Tuple, Tuple]] = field(default_factory=set)
    model_conns: set[tuple[Tuple, Tuple]] = field(default_factory=set)


def _kv(words: list[str]) -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for w in words:
        if "=" not in w:
            continue
        k, v = w.split("=", 1)
        if k == "src" and "src" in cur:
            groups.append(cur)
            cur = {}
        cur[k] = v
    if cur:
        groups.append(cur)
    return groups


def _tuple(proto: int, g: dict[str, str]) -> Tuple:
    if proto == 1:
        return Tuple(ip(g["src"]), ip(g["dst"]), 1, int(g["id"]), int(g["type"]) << 8 | int(g["code"]))
    return Tuple(ip(g["src"]), ip(g["dst"]), proto, int(g.get("sport", 0)), int(g.get("dport", 0)))


def kernel_conns(lab: Lab) -> set[tuple[Tuple, Tuple]]:
    out = lab.run("rtr", ["conntrack", "-L"], check=False).stdout
    conns = set()
    for line in out.splitlines():
        words = line.split()
        if len(words) < 3 or not words[1].isdigit():
            continue
        proto = int(words[1])
        groups = _kv(words)
        if len(groups) >= 2:
            conns.add((_tuple(proto, groups[0]), _tuple(proto, groups[1])))
    return conns


def _settle(pcap: Path, quiet: float = 0.5, limit: float = 5.0) -> None:
    """Wait until the capture has stopped growing: on a loaded machine the
    router's last forwarded frames (or tcpdump's writing of them) come late,
    and stopping tcpdump then loses a frame the kernel did send."""
    end = time.monotonic() + limit
    size, still = -1, time.monotonic()
    while time.monotonic() < end:
        now_size = pcap.stat().st_size if pcap.exists() else 0
        if now_size != size:
            size, still = now_size, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return
        time.sleep(0.05)


def run_case(lab: Lab, rules: str, traffic: Callable[[Lab], None]) -> Outcome:
    lab.run("rtr", ["iptables-legacy-restore", "-w"], stdin=rules)
    lab.run("rtr", ["conntrack", "-F"], check=False)
    pcap = lab.dir / f"cap{time.monotonic_ns()}.pcap"
    dump = lab.bg("rtr", ["tcpdump", "-Z", "root", "-i", "any", "--immediate-mode", "-n", "-U", "-s", "0",
                          "-w", str(pcap)])
    assert dump.stderr is not None
    for _ in range(5):  # "tcpdump: data link type ...", "listening on any ..."
        line = dump.stderr.readline()
        if b"listening" in line or not line:
            break
    assert b"listening" in line, line
    time.sleep(0.3)
    try:
        traffic(lab)
        time.sleep(0.5)
        kconns = kernel_conns(lab)
        _settle(pcap)
    finally:
        lab.stop(dump, signal.SIGINT)
    names = lab.ifnames("rtr")
    router = Router(rules, router_host())
    out = Outcome(kernel_conns=kconns)
    expected: dict[str, list[bytes]] = {"eth0": [], "eth1": []}
    got: dict[str, list[bytes]] = {"eth0": [], "eth1": []}
    for frame in scapy.rdpcap(str(pcap)):
        if not frame.haslayer(scapy.CookedLinuxV2):
            continue
        sll = frame[scapy.CookedLinuxV2]
        dev = names.get(sll.ifindex, "?")
        if dev not in expected or sll.proto != 0x0800:
            continue
        data = bytes(sll.payload)
        if sll.pkttype == 4:
            got[dev].append(data)
            continue
        verdict, pkt = router.forward(data, dev)
        if verdict == NF_ACCEPT and pkt.outdev in expected:
            expected[pkt.outdev].append(bytes(pkt.data[:pkt.tot_len]))
    for dev in expected:
        exp, real = expected[dev], got[dev]
        if len(exp) != len(real):
            out.mismatches.append(f"{dev}: pyfw sent {len(exp)} frames, the kernel {len(real)}\n  pyfw:   "
                                  + "\n          ".join(scapy.IP(a).summary() for a in exp) + "\n  kernel: "
                                  + "\n          ".join(scapy.IP(b).summary() for b in real))
        for i, (a, b) in enumerate(zip(exp, real)):
            out.compared += 1
            if a != b:
                out.mismatches.append(f"{dev} #{i}: pyfw {scapy.IP(a).summary()} {a.hex()}\n"
                                      f"          kernel {scapy.IP(b).summary()} {b.hex()}")
    out.model_conns = {(c.orig, c.reply) for c in router.ct.conns}
    return out


# ---------------------------------------------------------------- traffic

def curl(url: str) -> Callable[[Lab], None]:
    def go(lab: Lab) -> None:
        lab.run("cli", ["curl", "-s", "-m", "5", "-o", "/dev/null", url], check=False)
    return go


def udp_flows(flows: list[tuple[str, int, str, int]], n: int = 2, nocheck: bool = False) -> Callable[[Lab], None]:
    def go(lab: Lab) -> None:
        for src, sport, dst, dport in flows:
            argv = [sys.executable, "-c", UDP_CLIENT, src, str(sport), dst, str(dport), str(n)]
            lab.run("cli", argv + (["nocheck"] if nocheck else []), check=False)
    return go


def ping(dst: str, count: int = 2) -> Callable[[Lab], None]:
    def go(lab: Lab) -> None:
        lab.run("cli", ["ping", "-c", str(count), "-i", "0.2", "-W", "1", dst], check=False)
    return go


def both(*steps: Callable[[Lab], None]) -> Callable[[Lab], None]:
    def go(lab: Lab) -> None:
        for s in steps:
            s(lab)
    return go


CASES: dict[str, tuple[list[str], Callable[[Lab], None]]] = {
    "masquerade-tcp": (["-A POSTROUTING -o eth1 -j MASQUERADE"], curl(f"http://{SERVER}:8080/")),
    "masquerade-ping": (["-A POSTROUTING -o eth1 -j MASQUERADE"], ping(SERVER)),
    "snat-udp": ([f"-A POSTROUTING -o eth1 -p udp -j SNAT --to-source {SNAT_NET}.1"],
                 udp_flows([(CLIENT, 4000, SERVER, 5353)])),
    "snat-udp-port": ([f"-A POSTROUTING -o eth1 -p udp -j SNAT --to-source {SNAT_NET}.1:20000"],
                      udp_flows([(CLIENT, 4001, SERVER, 5353)])),
    "snat-address-range": ([f"-A POSTROUTING -o eth1 -j SNAT --to-source {SNAT_NET}.10-{SNAT_NET}.20"],
                           udp_flows([(a, 4100 + i, SERVER, 5353) for i, a in enumerate(ALL_CLIENTS)], n=1)),
    "snat-address-range-persistent": (
        [f"-A POSTROUTING -o eth1 -j SNAT --to-source {SNAT_NET}.10-{SNAT_NET}.20 --persistent"],
        udp_flows([(a, 4200 + i, SERVER, 5353) for i, a in enumerate(ALL_CLIENTS)], n=1)),
    "snat-icmp-error": ([f"-A POSTROUTING -o eth1 -j SNAT --to-source {SNAT_NET}.1"],
                        udp_flows([(CLIENT, 4004, SERVER, 9)], n=1)),
    "dnat-tcp": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:8080"],
                 curl(f"http://{ROUTER_IN}:80/")),
    "dnat-port-range": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:8000-8010"],
                        both(curl(f"http://{ROUTER_IN}:80/"), curl(f"http://{ROUTER_IN}:80/"))),
    "dnat-shifted-map": (
        [f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:7990-8010/70"],
        curl(f"http://{ROUTER_IN}:80/")),
    "dnat-icmp-error": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p udp -j DNAT --to-destination {SERVER}:9"],
                        udp_flows([(CLIENT, 4005, ROUTER_IN, 53)], n=1)),
    "dnat-ping": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p icmp -j DNAT --to-destination {SERVER}"],
                  ping(ROUTER_IN)),
    "masquerade-tcp-icmp-error": (["-A POSTROUTING -o eth1 -j MASQUERADE"], curl(f"http://{SERVER}:8081/")),
    "dnat-tcp-icmp-error": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:8081"],
                            curl(f"http://{ROUTER_IN}:80/")),
    "dnat-tcp-reset": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:8099"],
                       curl(f"http://{ROUTER_IN}:80/")),
    "masquerade-udp-port": (["-A POSTROUTING -o eth1 -p udp -j MASQUERADE --to-ports 30000"],
                            udp_flows([(CLIENT, 4300, SERVER, 5353)])),
    "snat-udp-no-checksum": ([f"-A POSTROUTING -o eth1 -p udp -j SNAT --to-source {SNAT_NET}.1:20001"],
                             udp_flows([(CLIENT, 4301, SERVER, 5353)], nocheck=True)),
    "snat-low-port-kept": ([f"-A POSTROUTING -o eth1 -j SNAT --to-source {SNAT_NET}.1"],
                           udp_flows([(CLIENT, 500, SERVER, 5353)])),
    "dnat-and-masquerade": ([f"-A PREROUTING -i eth0 -d {ROUTER_IN} -p tcp -j DNAT --to-destination {SERVER}:8080",
                             "-A POSTROUTING -o eth1 -j MASQUERADE"], curl(f"http://{ROUTER_IN}:80/")),
}


REPORT: dict[str, int] = {}
# conntrack deletes a connection whose only answer was a RST at once (not NAT)
CT_GONE = frozenset({"dnat-tcp-reset"})


@pytest.mark.parametrize("name", sorted(CASES))
def test_nat_matches_kernel(lab: Lab, name: str) -> None:
    lines, traffic = CASES[name]
    # Live TCP closes race: the client's last segments and the server's FIN
    # cross at the router, and tcpdump's order on "any" need not be the
    # order the kernel handled them in (once in a few dozen runs the
    # kernel forwards one frame fewer than the replay in capture order
    # predicts).  A real difference repeats; a crossing does not.
    for _attempt in range(3):
        out = run_case(lab, rules_text(*lines), traffic)
        if not out.mismatches:
            break
    assert out.compared > 0, "no forwarded frames captured"
    assert not out.mismatches, "\n".join(out.mismatches)
    if name not in CT_GONE:
        assert out.model_conns == out.kernel_conns
    REPORT[name] = out.compared


def test_snat_port_clash_like_kernel(lab: Lab) -> None:
    """Two clients, one source port, one public address: the first keeps
    its port (byte-exact), the second is moved in both (the kernel's port is
    random, so only its class is compared)."""
    rules = rules_text(f"-A POSTROUTING -o eth1 -p udp -j SNAT --to-source {SNAT_NET}.1")
    out = run_case(lab, rules, udp_flows([(CLIENT, 4006, SERVER, 5353), (EXTRA_CLIENTS[0], 4006, SERVER, 5353)],
                                         n=1))
    kern = sorted(out.kernel_conns, key=lambda c: c[0].src)
    model = sorted(out.model_conns, key=lambda c: c[0].src)
    assert len(kern) == len(model) == 2
    assert kern[0] == model[0] and kern[0][1].dport == 4006
    for conns in (kern, model):
        moved = conns[1][1].dport
        assert moved != 4006 and 1024 <= moved <= 65535


def test_redirect_binding_like_kernel(lab: Lab) -> None:
    """REDIRECT to the router's own service: the connection's tuples."""
    rules = rules_text("-A PREROUTING -i eth0 -p tcp --dst 10.231.2.2 -j REDIRECT --to-ports 3128")
    out = run_case(lab, rules, curl(f"http://{SERVER}:80/"))
    assert out.kernel_conns
    red = {c for c in out.kernel_conns if c[1].sport == 3128}
    assert red and all(c[1].src == ip(ROUTER_IN) for c in red)
    assert red <= out.model_conns


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """How many frames each case compared (shown with -s)."""
    with capsys.disabled():
        for name, n in sorted(REPORT.items()):
            print(f"  {name}: {n} frames identical")
