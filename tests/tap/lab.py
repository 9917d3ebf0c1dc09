"""A TAP gateway lab on real namespaces (shared by tests/tap and bench/bench_tap.py):

    lan (10.77.1.2) --veth-- [br-lan --TAP-- pyfw --TAP-- br-wan] --veth-- wan (203.0.113.2)
                              `------------- ns gw ------------'

pyfw is 10.77.1.1 (eth0) and 203.0.113.1 (eth1); the bridges and TAP devices
live in their own namespace, which has no addresses of its own; wan has no
route back to the lan, so only MASQUERADE makes lan->wan work.  Every name
carries the pid; `down` removes everything (the TAP devices go with the
daemon).  Traffic stays between these namespaces.  KernelLab is the same
with Linux as the gateway (veths straight into its namespace), for
differential tests and the bench.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

LAN_MAC = "02:77:00:00:00:01"
WAN_MAC = "02:77:00:00:00:02"


def root_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, TAP devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def sh(*cmd: str, check: bool = True, ns: str | None = None, timeout: float = 60,
       **kw: object) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=timeout,  # type: ignore[call-overload, no-any-return]
                          **kw)


# the gateway's rules for both labs: MASQUERADE out, the lan allowed out, replies back
RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o {wan} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i {lan} -j ACCEPT
COMMIT
"""


class TapLab:
    def __init__(self, tag: str = "") -> None:
        t = f"{os.getpid() % 100000}{tag}"
        self.lan, self.gw, self.wan = f"pyfw-tl-{t}", f"pyfw-tg-{t}", f"pyfw-tw-{t}"
        self.brl, self.brw = f"tb{t}l", f"tb{t}w"
        self.vl, self.vw = f"tv{t}l", f"tv{t}w"
        self.tapl, self.tapw = f"tt{t}l", f"tt{t}w"
        self.procs: list[subprocess.Popen[str]] = []
        self.daemon: subprocess.Popen[str] | None = None
        self.log = ""

    def up(self) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns, check=False)
            sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", ns=ns, check=False)
        for br in (self.brl, self.brw):
            sh("ip", "link", "add", br, "type", "bridge", "forward_delay", "0", ns=self.gw)
            sh("ip", "link", "set", br, "up", ns=self.gw)
        for veth, br, ns, addr in ((self.vl, self.brl, self.lan, "10.77.1.2/24"),
                                   (self.vw, self.brw, self.wan, "203.0.113.2/24")):
            sh("ip", "link", "add", veth, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", br, ns=self.gw)
            sh("ip", "link", "set", veth, "up", ns=self.gw)
            sh("ip", "addr", "add", addr, "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "10.77.1.1", ns=self.lan)

    def host_toml(self, extra: str = "") -> str:
        return f"""
[host]
name = "tapgw"

[[interface]]
name = "eth0"
mac = "{LAN_MAC}"
addresses = ["10.77.1.1/24"]
bridge = "{self.brl}"
tap = "{self.tapl}"

[[interface]]
name = "eth1"
mac = "{WAN_MAC}"
addresses = ["203.0.113.1/24"]
bridge = "{self.brw}"
tap = "{self.tapw}"

[sysctl]
"net.ipv4.ip_forward" = 1
{extra}
"""

    def spawn(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p  # type: ignore[no-any-return]

    def start(self, tmp: Path, rules: str, *args: str, host_extra: str = "") -> str:
        """Start `pyfw daemon --tap` in the gw namespace; its socket path."""
        (tmp / "host.toml").write_text(self.host_toml(host_extra))
        (tmp / "rules").write_text(rules)
        sock = str(tmp / "pyfw.sock")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.daemon = self.spawn(self.gw, PY, "-m", "pyfw.daemon", "--tap", "--host", str(tmp / "host.toml"),
                                 "--ruleset", str(tmp / "rules"), "--socket", sock, *args,
                                 stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                err = self.daemon.stderr.read() if self.daemon.stderr else ""
                raise AssertionError(f"daemon exited {self.daemon.returncode}: {err}")
            if os.path.exists(sock) and self._tap_up(self.tapl) and self._tap_up(self.tapw):
                return sock
            time.sleep(0.05)
        raise AssertionError("daemon did not come up")

    def _tap_up(self, name: str) -> bool:
        r = sh("ip", "-o", "link", "show", name, ns=self.gw, check=False)
        return r.returncode == 0 and "master" in r.stdout and ",UP" in r.stdout

    def stop(self) -> int:
        """SIGTERM the daemon; its exit status (its log in self.log)."""
        d, self.daemon = self.daemon, None
        if d is None:
            return 0
        d.send_signal(signal.SIGTERM)
        try:
            rc = d.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.kill()
            rc = d.wait(timeout=5)
        self.log = d.stderr.read() if d.stderr else ""
        return rc

    def down(self) -> None:
        self.stop()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class KernelLab:
    """lan -- gw -- wan on veths, the gateway being Linux itself."""

    def __init__(self) -> None:
        t = f"{os.getpid() % 100000}"
        self.lan, self.gw, self.wan = f"pyfw-kl-{t}", f"pyfw-kg-{t}", f"pyfw-kw-{t}"
        self.gl, self.gwn = f"kb{t}l", f"kb{t}w"
        self.procs: list[subprocess.Popen[str]] = []

    def up(self, rules: str | None = None) -> None:
        for ns in (self.lan, self.gw, self.wan):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", self.gl, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", self.gwn, "netns", self.gw, "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        for ns, dev, addr in ((self.lan, "eth0", "10.77.1.2/24"), (self.gw, self.gl, "10.77.1.1/24"),
                              (self.gw, self.gwn, "203.0.113.1/24"), (self.wan, "eth0", "203.0.113.2/24")):
            sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", "10.77.1.1", ns=self.lan)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.gw)
        if rules is not None:
            sh("iptables-legacy-restore", ns=self.gw, input=rules)

    def spawn(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p  # type: ignore[no-any-return]

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for ns in (self.lan, self.gw, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
