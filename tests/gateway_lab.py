"""An end-to-end lab: a gateway namespace and its peers, to run the same
frames through Linux and through `pyfw simulate` and compare everything.

    lan peer (eth0) ---veth--- (lan) gw (wan) ---veth--- (eth0) wan peer
                                     (dmz)
                                       |veth
                                     (eth0) dmz peer

One `HostSpec` describes the gateway; it is written both as `ip`/`sysctl`
commands for the kernel and as the matching HOST.toml for pyfw, so the two
sides see the same interfaces, addresses, routes, static neighbours (no
ARP timing) and sysctls.  The peers are mute (raw PREROUTING and filter
OUTPUT drop everything): AF_PACKET sockets in them inject crafted frames
and capture what the gateway sends.  Frames the gateway itself sends
(pcapng interface `local`) leave an IPPROTO_RAW socket made in the gateway
namespace, so the kernel's OUTPUT path sees them.

`run_scenario` feeds one scenario frame by frame to the kernel and to an
in-process `Engine` built as `pyfw simulate` builds it, and after every
frame compares the emitted frames (per egress interface, in order, from
the IP header on; the IP ID of packets the host makes aside), every rule
and policy counter (`iptables-legacy-save -c` vs pyfw-save -c text), the
connection table (`conntrack -L`, timeouts aside) and the new LOG lines
(/dev/kmsg, timestamps aside).  At the end the real CLI
(`pyfw.cli.simulate.main`) runs over the pcapng of the same frames and its
output files are compared with the kernel's final state too.

Namespaces and devices are unique to the process, traffic only flows
between them, and everything is deleted on exit, whatever happens.
"""

from __future__ import annotations

import errno
import gc
import io
import itertools
import os
import re
import select
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oracle import in_netns  # noqa: E402

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
_counter = itertools.count()
PID_TAG = os.getpid() & 0xFFFF


def lab_problem() -> str | None:
    """Why the lab cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables-legacy, raw sockets)"
    for tool in ("ip", "iptables-legacy-restore", "iptables-legacy-save", "conntrack", "ethtool", "sysctl"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} missing"
    if not os.access("/dev/kmsg", os.R_OK):
        return "/dev/kmsg not readable"
    Path("/run/netns").mkdir(parents=True, exist_ok=True)
    return None




def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


# ====================================================================== the host
@dataclass
class Iface:
    """One gateway interface and the peer namespace at its other end."""

    name: str            # the gateway's device name (what rules match with -i/-o)
    addr: str            # "192.168.10.1/24"
    peer_addr: str       # the peer's own address (its stack is mute)
    index: int
    mtu: int = 1500
    extra: list[str] = field(default_factory=list)  # more addresses, in `ip addr add` order

    @property
    def mac(self) -> str:
        return f"02:fa:{PID_TAG >> 8:02x}:{PID_TAG & 0xFF:02x}:{self.index:02x}:01"

    @property
    def peer_mac(self) -> str:
        return f"02:fa:{PID_TAG >> 8:02x}:{PID_TAG & 0xFF:02x}:{self.index:02x}:02"

    @property
    def ip(self) -> str:
        return self.addr.split("/")[0]


MAC_TAG = f"02:fa:{PID_TAG >> 8:02x}:{PID_TAG & 0xFF:02x}:"


@dataclass
class HostSpec:
    """The gateway: what `ip` sets up in its namespace and HOST.toml says."""

    ifaces: list[Iface]
    routes: list[tuple[str, str | None, str]]          # (to, via, dev)
    neighbors: list[tuple[str, str]]                     # (ip, dev): the peer's MAC
    sysctls: dict[str, int] = field(default_factory=dict)
    services: list[tuple[str, int, str | None]] = field(default_factory=list)  # udp only

    def iface(self, name: str) -> Iface:
        for i in self.ifaces:
            if i.name == name:
                return i
        raise KeyError(name)

    def host_toml(self) -> str:
        out = ['[host]\nname = "gw"\n']
        for i in self.ifaces:
            addrs = ", ".join(f'"{a}"' for a in [i.addr, *i.extra])
            out.append(f'\n[[interface]]\nname = "{i.name}"\nmac = "{i.mac}"\n'
                       f'addresses = [{addrs}]\nmtu = {i.mtu}\n')
        for to, via, dev in self.routes:
            out.append(f'\n[[route]]\nto = "{to}"\ndev = "{dev}"\n' + (f'via = "{via}"\n' if via else ""))
        for ip, dev in self.neighbors:
            out.append(f'\n[[neighbor]]\nip = "{ip}"\nmac = "{self.iface(dev).peer_mac}"\ndev = "{dev}"\n')
        for proto, port, addr in self.services:
            out.append(f'\n[[service]]\nproto = "{proto}"\nport = {port}\n'
                       + (f'address = "{addr}"\n' if addr else ""))
        out.append("\n[sysctl]\n")
        for k, v in self.sysctls.items():
            out.append(f'"{k}" = {v}\n')
        return "".join(out)

    def neighbor_mac(self, ip: str) -> str | None:
        for n, dev in self.neighbors:
            if n == ip:
                return self.iface(dev).peer_mac
        return None


def default_spec(**sysctls: int) -> HostSpec:
    """lan 192.168.10.1/24, wan 203.0.113.1/24 (198.51.100.0/24 behind the
    wan peer, no default route: anything else is net unreachable), dmz
    10.20.0.1/24 with MTU 1280."""
    ifaces = [
        Iface("lan", "192.168.10.1/24", "192.168.10.2", 1),
        Iface("wan", "203.0.113.1/24", "203.0.113.2", 2),
        Iface("dmz", "10.20.0.1/24", "10.20.0.2", 3, mtu=1280),
    ]
    neigh = [(f"192.168.10.{n}", "lan") for n in (2, 3, 4, 5, 50)]
    neigh += [(f"203.0.113.{n}", "wan") for n in (2, 3, 9)]
    neigh += [(f"10.20.0.{n}", "dmz") for n in (2, 3)]
    base = {
        "net.ipv4.ip_forward": 1,
        "net.ipv4.icmp_ratelimit": 0,
    }
    base.update({k.replace("__", "."): v for k, v in sysctls.items()})
    return HostSpec(ifaces, [("198.51.100.0/24", "203.0.113.2", "wan")], neigh, base)


# ====================================================================== frames
@dataclass
class Frame:
    """One input frame: where it enters (`local`: the gateway sends it)."""

    iface: str
    data: bytes          # Ethernet frame (for `local` the IP datagram after a dummy header)
    note: str = ""


@dataclass
class Pause:
    """Let the clock run (rate limits, recent --seconds)."""

    seconds: float


def write_pcapng(path: Path, frames: list[tuple[int, str, bytes]], names: list[str]) -> None:
    """A pcapng with one interface block per name (if_name set) and one
    enhanced packet block per (microseconds, iface, frame)."""
    out = io.BytesIO()

    def block(btype: int, body: bytes) -> None:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        out.write(struct.pack("<II", btype, n) + body + struct.pack("<I", n))

    block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for name in names:
        raw = name.encode()
        opt = struct.pack("<HH", 2, len(raw)) + raw + b"\x00" * (-len(raw) % 4) + struct.pack("<HH", 0, 0)
        block(1, struct.pack("<HHI", 1, 0, 262144) + opt)
    for usec, iface, data in frames:
        body = struct.pack("<IIIII", names.index(iface), usec >> 32, usec & 0xFFFFFFFF, len(data), len(data))
        block(6, body + data)
    path.write_bytes(out.getvalue())


# ====================================================================== the kernel side
class GatewayLab:
    """The namespaces of one HostSpec, set up on enter, deleted on exit."""

    def __init__(self, spec: HostSpec) -> None:
        n = next(_counter)
        tag = f"{os.getpid()}-{n}"
        self.spec = spec
        self.ns = {"gw": f"pyfw-gw-{tag}"}
        for i in spec.ifaces:
            self.ns[i.name] = f"pyfw-gw-{tag}-{i.name}"
        self._made: list[str] = []
        self.peer_socks: dict[str, socket.socket] = {}
        self.raw: socket.socket | None = None
        self.services: list[socket.socket] = []
        self.kmsg: int | None = None
        self._kmsg_buf: list[str] = []

    def __enter__(self) -> GatewayLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def x(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        """Run a command in a namespace (forked from this thread inside it)."""
        with in_netns(self.ns[role]):
            return _run(list(argv), stdin=stdin, check=check)

    def _setup(self) -> None:
        spec = self.spec
        for name in self.ns.values():
            _run(["ip", "netns", "add", name])
            self._made.append(name)
        for i in spec.ifaces:
            _run(["ip", "link", "add", i.name, "netns", self.ns["gw"], "type", "veth",
                  "peer", "name", "eth0", "netns", self.ns[i.name]])
        for role in self.ns:
            self.x(role, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1")
        gw = ["link set lo up"]
        for i in spec.ifaces:
            gw += [f"link set {i.name} address {i.mac} mtu {i.mtu}", f"addr add {i.addr} dev {i.name}",
                   *(f"addr add {a} dev {i.name}" for a in i.extra), f"link set {i.name} up"]
            plen = i.addr.split("/")[1]
            peer = ["link set lo up", f"link set eth0 address {i.peer_mac} mtu {i.mtu}",
                    f"addr add {i.peer_addr}/{plen} dev eth0", "link set eth0 up",
                    f"neigh replace {i.ip} lladdr {i.mac} dev eth0 nud permanent"]
            self.x(i.name, "ip", "-batch", "-", stdin="\n".join(peer) + "\n")
            self.x(i.name, "ethtool", "-K", "eth0", "tx", "off", "rx", "off", check=False)
            self.x("gw", "ethtool", "-K", i.name, "tx", "off", "rx", "off", check=False)
            # the peer's own stack stays mute: only crafted frames reach the gateway
            self.x(i.name, "iptables-legacy-restore", "-w", stdin=(
                "*raw\n:PREROUTING DROP [0:0]\n:OUTPUT DROP [0:0]\nCOMMIT\n"))
        for to, via, dev in spec.routes:
            gw.append(f"route add {to} dev {dev}" + (f" via {via}" if via else ""))
        for ip, dev in spec.neighbors:
            gw.append(f"neigh replace {ip} lladdr {spec.iface(dev).peer_mac} dev {dev} nud permanent")
        self.x("gw", "ip", "-batch", "-", stdin="\n".join(gw) + "\n")
        if spec.sysctls:
            self.x("gw", "sysctl", "-qw", *(f"{k}={v}" for k, v in spec.sysctls.items()))
        _run(["sysctl", "-qw", "net.netfilter.nf_log_all_netns=1"])
        for i in spec.ifaces:
            with in_netns(self.ns[i.name]):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.bind(("eth0", 0))
            s.setblocking(False)
            self.peer_socks[i.name] = s
        with in_netns(self.ns["gw"]):
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            for proto, port, addr in spec.services:
                assert proto == "udp", "only UDP services can be compared (TCP would answer SYNs)"
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.bind((addr or "0.0.0.0", port))
                self.services.append(u)
        self.kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.kmsg, 0, os.SEEK_END)

    def close(self) -> None:
        for s in (*self.peer_socks.values(), *self.services, *([self.raw] if self.raw else [])):
            s.close()
        self.peer_socks.clear()
        self.services.clear()
        self.raw = None
        if self.kmsg is not None:
            os.close(self.kmsg)
            self.kmsg = None
        for name in reversed(self._made):
            _run(["ip", "netns", "del", name], check=False)
        self._made.clear()

    # ------------------------------------------------------------ use
    def restore(self, rules: str) -> None:
        self.x("gw", "iptables-legacy-restore", "-w", stdin=rules)

    def send(self, frame: Frame) -> None:
        if frame.iface == "local":
            ip = frame.data[14:]
            assert self.raw is not None
            dst = socket.inet_ntoa(ip[16:20])
            try:
                self.raw.sendto(ip, (dst, 0))
            except OSError as exc:
                # EPERM: a hook dropped it; ENETUNREACH: no route.  Either
                # way nothing leaves, which the comparison checks.
                if exc.errno not in (errno.EPERM, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL):
                    raise
        else:
            self.peer_socks[frame.iface].send(frame.data)

    def drain(self, wait: float) -> dict[str, list[bytes]]:
        """What reached the peers within `wait` seconds (or that was queued)."""
        got: dict[str, list[bytes]] = {name: [] for name in self.peer_socks}
        deadline = time.monotonic() + wait
        socks = list(self.peer_socks.items())
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([s for _, s in socks], [], [], max(left, 0))
            if not ready and left <= 0:
                break
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
                    got[name].append(data)
            if left <= 0:
                break
        return got

    def counters(self) -> str:
        return self.x("gw", "iptables-legacy-save", "-c")

    def conntrack(self) -> str:
        return self.x("gw", "conntrack", "-L", check=False)

    def log_lines(self, tag: str) -> list[str]:
        """New kernel log lines of this lab: LOG lines whose prefix holds
        `tag`, TRACE lines of frames from this lab's MACs."""
        assert self.kmsg is not None
        out = []
        while True:
            try:
                rec = os.read(self.kmsg, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                raise
            text = rec.decode("utf-8", "replace")
            head, _, msg = text.partition(";")
            msg = msg.split("\n", 1)[0]
            if tag in msg or (msg.startswith("TRACE: ") and MAC_TAG in msg):
                out.append(_unescape_kmsg(msg))
        return out


def _unescape_kmsg(msg: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), msg)


# ====================================================================== normalising
def norm_counters(text: str) -> dict[str, list[str]]:
    """iptables-save -c text as {table: lines}, comments aside."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = out.setdefault(line[1:], [])
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


_LOG_TS = re.compile(r"^\[\s*[\d.]+\]\s?")


_LOG_ID = re.compile(r" ID=(\d+) ")


def norm_log(line: str, injected_ids: set[int] | None = None) -> str:
    """A LOG line without its timestamp; with `injected_ids`, the packet's
    own ID masked when it is none of the injected frames' (a packet the
    host made: the kernel picks its ID)."""
    line = _LOG_TS.sub("", line).rstrip()
    if injected_ids is not None:
        m = _LOG_ID.search(line)
        if m is not None and int(m.group(1)) not in injected_ids:
            line = line[:m.start()] + " ID=? " + line[m.end():]
    return line


def ip_view(frame: bytes, injected_ids: set[int]) -> tuple[bytes, bool]:
    """The frame from its network header on; for an IPv4 packet the host
    made (its ID is none of the injected frames'), the ID and the header
    checksum zeroed.  Returns (bytes, masked)."""
    payload = frame[12:]  # ethertype and on
    if payload[:2] != b"\x08\x00" or len(payload) < 22:
        return payload, False
    ident = struct.unpack_from("!H", payload, 2 + 4)[0]
    b = bytearray(payload)
    masked = False
    icmp = 2 + (b[2] & 0x0F) * 4
    if b[11] == 1 and len(b) >= icmp + 20 and b[icmp] == 14 and ident not in injected_ids:
        # a timestamp reply the host made: its clock (compared apart, see
        # timestamp_skew) and the checksum over it
        b[icmp + 2:icmp + 4] = b"\x00\x00"
        b[icmp + 12:icmp + 20] = b"\x00" * 8
        masked = True
    if ident in injected_ids:
        return bytes(b), masked
    b[6:8] = b"\x00\x00"
    b[12:14] = b"\x00\x00"
    return bytes(b), True


def timestamp_skew(a: bytes, b: bytes) -> int:
    """Milliseconds between the receive timestamps of two ICMP timestamp
    replies (frames), around midnight too; 0 for anything else."""
    ts = []
    for f in (a, b):
        p = f[14:]
        icmp = (p[0] & 0x0F) * 4
        if len(p) < icmp + 20 or p[9] != 1 or p[icmp] != 14:
            return 0
        ts.append(struct.unpack_from("!I", p, icmp + 12)[0])
    d = abs(ts[0] - ts[1]) % 86400000
    return min(d, 86400000 - d)


def describe(frame: bytes) -> str:
    """A one-line summary for reports (scapy is a test-only dependency)."""
    try:
        from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

        return str(Ether(frame).summary())
    except Exception:  # pragma: no cover - diagnostics only
        return frame[:64].hex()


# ====================================================================== the pyfw side
class PyfwSide:
    """The engine exactly as `pyfw simulate` builds it, stepped frame by
    frame so that every frame's effect can be compared."""

    def __init__(self, rules_path: Path, host_path: Path) -> None:
        from pyfw.cli.simulate import load_ruleset
        from pyfw.engine.engine import Engine
        from pyfw.engine.host import load_host

        self.ruleset = load_ruleset(str(rules_path))
        self.engine = Engine(self.ruleset, load_host(host_path))
        self._logs = 0

    def step(self, frame: Frame, ts: float) -> Any:
        if frame.iface == "local":
            return self.engine.send(frame.data[14:], ts, trace=True)
        return self.engine.receive(frame.data, frame.iface, ts, trace=True)

    def counters(self) -> str:
        from pyfw.ruleset.format import save_table

        return "".join(save_table(t, counters=True, program="pyfw-save") for t in self.ruleset.ordered_tables())

    def conntrack(self) -> str:
        return str(self.engine.ct.format(self.engine.now))

    def new_logs(self) -> list[str]:
        logs = self.engine.logs[self._logs:]
        self._logs = len(self.engine.logs)
        return [text for _ts, text in logs]


def run_cli(workdir: Path, rules: Path, host: Path, pcap: Path) -> dict[str, Any]:
    """`pyfw simulate` in-process over the whole pcapng: its output files."""
    import contextlib as _cl

    from pyfw.cli.simulate import main
    from pyfw.io.pcap import read_frames

    out_dir = workdir / "out"
    files = {k: workdir / f"sim.{k}" for k in ("counters", "conntrack", "log")}
    argv = ["--ruleset", str(rules), "--host", str(host), "--pcap", str(pcap), "--iface", "lan",
            "--out-dir", str(out_dir), "--counters", str(files["counters"]),
            "--conntrack", str(files["conntrack"]), "--log", str(files["log"]), "--json"]
    buf = io.StringIO()
    enabled = gc.isenabled()
    try:
        with _cl.redirect_stdout(buf):
            rc = main(argv)
    finally:
        if enabled:
            gc.enable()
    out: dict[str, Any] = {"rc": rc, "json": buf.getvalue()}
    for k, p in files.items():
        out[k] = p.read_text() if p.exists() else ""
    out["frames"] = {}
    if out_dir.exists():
        for p in sorted(out_dir.glob("*.pcap")):
            out["frames"][p.stem] = [f for _ts, _n, f in read_frames(str(p))]
    return out


# ====================================================================== a scenario
@dataclass
class Scenario:
    name: str
    rules: str                      # iptables-restore text; {T} is the LOG tag
    frames: Sequence[Frame | Pause]
    spec: HostSpec = field(default_factory=default_spec)
    gap: float = 0.03               # seconds after each frame before reading state


@dataclass
class Outcome:
    name: str
    frames: int = 0
    checks: int = 0
    items: int = 0                  # emitted frames, counter lines, entries, log lines compared
    problems: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)  # what each frame did (for debugging)


def _tables_of(rules: str) -> list[str]:
    return [line[1:].strip() for line in rules.splitlines() if line.startswith("*")]


def run_scenario(sc: Scenario, tag: str, workdir: Path | None = None) -> Outcome:
    """Both sides, frame by frame; an Outcome listing every disagreement."""
    own_dir = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="pyfw-gwlab-")) if workdir is None else workdir
    try:
        return _run_scenario(sc, tag, wd)
    finally:
        if own_dir:
            import shutil

            shutil.rmtree(wd, ignore_errors=True)


def _run_scenario(sc: Scenario, tag: str, wd: Path) -> Outcome:
    out = Outcome(sc.name)
    rules = sc.rules.replace("{T}", tag)
    rules_path, host_path, pcap_path = wd / "rules.v4", wd / "HOST.toml", wd / "in.pcapng"
    rules_path.write_text(rules)
    host_path.write_text(sc.spec.host_toml())
    pyfw = PyfwSide(rules_path, host_path)
    injected: set[int] = set()
    for f in sc.frames:
        if isinstance(f, Frame) and f.data[12:14] == b"\x08\x00":
            injected.add(struct.unpack_from("!H", f.data, 18)[0])
    injected.discard(0)
    recorded: list[tuple[int, str, bytes]] = []
    kernel_all: dict[str, list[bytes]] = {i.name: [] for i in sc.spec.ifaces}
    final: dict[str, Any] = {}
    with GatewayLab(sc.spec) as lab:
        lab.restore(rules)
        lab.log_lines(tag)  # anything before the first frame is not ours
        n = 0
        for f in sc.frames:
            if isinstance(f, Pause):
                time.sleep(f.seconds)
                continue
            n += 1
            usec = int(time.time() * 1_000_000)
            lab.send(f)
            recorded.append((usec, f.iface, f.data))
            res = pyfw.step(f, usec / 1_000_000)
            got = lab.drain(sc.gap)
            label = f"frame {n} ({f.iface}{': ' + f.note if f.note else ''}; pyfw {res.verdict}/{res.path}" \
                    f" trace {[s.label() for s in res.trace]})"
            mine: dict[str, list[bytes]] = {i.name: [] for i in sc.spec.ifaces}
            for em in res.emitted:
                mine.setdefault(em.iface, []).append(em.frame)
            out.transcript.append(f"{label}: kernel " + ", ".join(
                f"{k}: {[describe(x) for x in v]}" for k, v in got.items() if v))
            for name in mine:
                kernel_all.setdefault(name, []).extend(got.get(name, []))
            out.items += _compare_frames(out, label, got, mine, injected)
            out.items += _compare_state(out, label, lab.counters(), pyfw.counters(), lab.conntrack(),
                                        pyfw.conntrack())
            k_logs = [norm_log(x, injected) for x in lab.log_lines(tag)]
            p_logs = [norm_log(x, injected) for x in pyfw.new_logs()]
            out.items += max(len(k_logs), len(p_logs))
            if k_logs != p_logs:
                out.problems.append(f"{sc.name} {label}: LOG lines differ\n  kernel: {k_logs}\n  pyfw:   {p_logs}")
            out.frames += 1
            out.checks += 4
        late = lab.drain(0.15)
        for name, frames in late.items():
            if frames:
                out.problems.append(f"{sc.name}: {len(frames)} late kernel frame(s) on {name}: "
                                    f"{[describe(x) for x in frames]}")
                kernel_all[name].extend(frames)
        final["counters"] = lab.counters()
        final["conntrack"] = lab.conntrack()
        final["logs"] = lab.log_lines(tag)
    # the CLI over the same frames, against the kernel's final state
    write_pcapng(pcap_path, recorded, [i.name for i in sc.spec.ifaces] + ["local"])
    cli = run_cli(wd, rules_path, host_path, pcap_path)
    label = "pyfw simulate (whole run)"
    if cli["rc"] != 0:
        out.problems.append(f"{sc.name} {label}: exit {cli['rc']}")
    out.items += _compare_frames(out, label, kernel_all, cli["frames"], injected)
    out.items += _compare_state(out, label, final["counters"], cli["counters"], final["conntrack"],
                                cli["conntrack"])
    k_logs = [norm_log(x) for x in final["logs"]]
    if k_logs:
        out.problems.append(f"{sc.name}: late kernel LOG lines {k_logs}")
    out.checks += 4
    cli_logs = [norm_log(x) for x in cli["log"].splitlines()]
    all_p = [norm_log(x) for _ts, x in pyfw.engine.logs]
    if cli_logs != all_p:
        out.problems.append(f"{sc.name} {label}: --log differs from the engine's lines\n"
                            f"  cli:    {cli_logs}\n  engine: {all_p}")
    out.items += len(cli_logs)
    return out


def _compare_frames(out: Outcome, label: str, kernel: dict[str, list[bytes]], mine: dict[str, list[bytes]],
                    injected: set[int]) -> int:
    items = 0
    for name in sorted(set(kernel) | set(mine)):
        k, p = kernel.get(name, []), mine.get(name, [])
        items += max(len(k), len(p))
        kv = [ip_view(x, injected) for x in k]
        pv = [ip_view(x, injected) for x in p]
        if [v for v, _ in kv] == [v for v, _ in pv]:
            # the Ethernet header: the interface's MAC, the neighbour's
            for a, b in zip(k, p):
                skew = timestamp_skew(a, b)
                if skew > 1000:
                    out.problems.append(f"{out.name} {label}: timestamp reply on {name} {skew} ms off")
                if a[:12] != b[:12]:
                    out.problems.append(f"{out.name} {label}: on {name} MACs differ: kernel {a[:12].hex()} "
                                        f"pyfw {b[:12].hex()}")
            continue
        lines = [f"{out.name} {label}: frames out of {name} differ"]
        for i in range(max(len(k), len(p))):
            ka = k[i] if i < len(k) else None
            pa = p[i] if i < len(p) else None
            same = ka is not None and pa is not None and kv[i][0] == pv[i][0]
            lines.append(f"  [{i}] {'=' if same else '!'} kernel: {describe(ka) if ka else '-'}")
            if not same:
                lines.append(f"        pyfw:   {describe(pa) if pa else '-'}")
                if ka is not None and pa is not None:
                    lines.append(f"        kernel {ka[14:].hex()}\n        pyfw   {pa[14:].hex()}")
        out.problems.append("\n".join(lines))
    return items


def _compare_state(out: Outcome, label: str, k_cnt: str, p_cnt: str, k_ct: str, p_ct: str) -> int:
    kc, pc = norm_counters(k_cnt), norm_counters(p_cnt)
    items = sum(len(v) for v in kc.values())
    if kc != pc:
        diff = []
        for table in sorted(set(kc) | set(pc)):
            a, b = kc.get(table), pc.get(table)
            if a == b:
                continue
            if a is None or b is None:
                diff.append(f"  table {table}: kernel {'absent' if a is None else 'present'}, "
                            f"pyfw {'absent' if b is None else 'present'}")
                continue
            for i in range(max(len(a), len(b))):
                x = a[i] if i < len(a) else "-"
                y = b[i] if i < len(b) else "-"
                if x != y:
                    diff.append(f"  {table}: kernel {x}\n  {' ' * len(table)}  pyfw   {y}")
        out.problems.append(f"{out.name} {label}: counters differ\n" + "\n".join(diff))
    kt, pt = norm_conntrack(k_ct), norm_conntrack(p_ct)
    items += max(len(kt), len(pt))
    if kt != pt:
        out.problems.append(f"{out.name} {label}: conntrack differs\n  kernel: "
                            + "\n          ".join(kt or ["(empty)"]) + "\n  pyfw:   "
                            + "\n          ".join(pt or ["(empty)"]))
    return items


__all__ = [
    "Frame", "GatewayLab", "HostSpec", "Iface", "Outcome", "Pause", "PyfwSide", "Scenario",
    "default_spec", "describe", "in_netns", "ip_view", "lab_problem", "mac_bytes", "norm_conntrack",
    "norm_counters", "norm_log", "run_cli", "run_scenario", "write_pcapng",
]
