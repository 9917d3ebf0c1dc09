"""The daemon's operations on a real gateway namespace: fail modes under a
SIGKILL and a full queue, the take-over of what a killed daemon left,
`--cleanup`, forwarded IPv6, LOG lines on stderr and syslog.

The lab is test_nfqueue's (lan -- gw -- wan); here wan also has a route
back to lan, so that traffic the kernel lets through unrewritten (fail-open)
gets answers.  Traffic only between these namespaces, bounded in count.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_nfqueue import PY, ROOT, Lab, client, pyfw, save_gw, sh

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
-A FORWARD -i {lan} -p udp --dport 5353 -j LOG --log-prefix "pyfw-test: "
-A FORWARD -i {lan} -p udp --dport 5353 -j NFLOG --nflog-prefix "nflog-test"
-A FORWARD -i {lan} -j ACCEPT
COMMIT
"""

# a bounded UDP stream (lan -> wan), to have packets in flight at the kill
FLOOD = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[3])
n = 0
while n < int(sys.argv[2]) and time.monotonic() < end:
    try:
        s.sendto(b"x" * 32, (sys.argv[1], 9999)); n += 1
    except OSError:
        time.sleep(0.001)
print(n)
"""


class Daemon:
    def __init__(self, lab: Lab, tmp: Path, *args: str, rules: str | None = None, name: str = "d") -> None:
        self.lab = lab
        self.sock = str(tmp / f"{name}.sock")
        self.errfile = tmp / f"{name}.stderr"
        rules_file = tmp / f"{name}.rules"
        rules_file.write_text(rules if rules is not None else RULES.format(lan=lab.gl, wan=lab.gwn))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.errfile, "w") as err:
            self.proc = lab.spawn(lab.gw, PY, "-m", "pyfw.daemon", "--nfqueue", "7", "--ruleset", str(rules_file),
                                  "--socket", self.sock, "--syslog", "none", *args,
                                  stderr=err, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log}")
            if "started:" in self.log and pyfw(lab, self.sock, "-S").returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"daemon did not come up: {self.log}")

    @property
    def log(self) -> str:
        return self.errfile.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        sh("ip", "route", "add", "10.71.1.0/24", "via", "203.0.113.1", ns=lab.wan)
        for table in ("raw", "mangle"):  # loaded before, so that "before" and "after" compare
            sh("iptables-legacy", "-t", table, "-S", ns=lab.gw)
        sh("ip6tables-legacy", "-S", ns=lab.gw)
        yield lab
    finally:
        lab.down()


def ping(lab: Lab, ns: str, dst: str, count: int = 2, wait: float = 1.0, *extra: str) -> bool:
    return sh("ping", *extra, "-c", str(count), "-i", "0.2", "-W", str(wait), dst, ns=ns, check=False).returncode == 0


def save6(lab: Lab) -> str:
    """ip6tables-save without comments and chain counters (IPv6 traffic moves them)."""
    return "".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in sh("ip6tables-legacy-save", ns=lab.gw).stdout.splitlines(True)
                   if not line.startswith("#"))


def flood_and_kill(lab: Lab, d: Daemon) -> None:
    """SIGKILL the daemon while a bounded stream passes through it."""
    flood = lab.spawn(lab.lan, PY, "-c", FLOOD, "203.0.113.2", "20000", "3", stdout=subprocess.PIPE)
    time.sleep(0.5)
    d.kill()
    out, _ = flood.communicate(timeout=10)
    assert int(out) > 0


def test_fail_closed_sigkill_then_takeover(lab: Lab, tmp_path: Path) -> None:
    lab.server(lab.wan, "wan", "80")
    before, before6 = save_gw(lab), save6(lab)
    d = Daemon(lab, tmp_path)
    assert "fail-closed" in d.log
    assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
    flood_and_kill(lab, d)
    # the rules stay, queue to no one: the gateway drops (forwarded and its own)
    left = save_gw(lab)
    assert f"pyfw-daemon queue 7 pid {d.proc.pid}" in left  # (ip netns exec execs: the daemon's pid)
    assert "pyfw-daemon queue 7" in left and "--queue-bypass" not in left
    assert not ping(lab, lab.lan, "203.0.113.2")
    assert not ping(lab, lab.gw, "203.0.113.2")
    assert client(lab, lab.lan, "tcp", "203.0.113.2", 80, timeout=1.0) == {"error": "timeout"}
    # a new daemon on the queue takes over: its rules replace the stale ones
    d2 = Daemon(lab, tmp_path, name="d2")
    assert "took over from a stopped daemon (6 stale kernel rules removed)" in d2.log
    now = save_gw(lab)
    assert len(re.findall(r"pyfw-daemon queue 7 pid \d+", now)) == 5
    assert len(set(re.findall(r"pyfw-daemon queue 7 pid (\d+)", now + save6(lab)))) == 1
    assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
    assert ping(lab, lab.lan, "203.0.113.2")
    assert d2.stop() == 0, d2.log
    assert save_gw(lab) == before and save6(lab) == before6


def test_fail_open_sigkill_then_cleanup(lab: Lab, tmp_path: Path) -> None:
    lab.server(lab.wan, "wan", "80")
    before, before6 = save_gw(lab), save6(lab)
    d = Daemon(lab, tmp_path, "--fail-open")
    assert "fail-open" in d.log
    assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 203.0.113.1"}
    flood_and_kill(lab, d)
    assert "--queue-bypass" in save_gw(lab)
    # nobody reads the queue: the kernel lets packets through, unrewritten
    assert ping(lab, lab.lan, "203.0.113.2")
    assert client(lab, lab.lan, "tcp", "203.0.113.2", 80) == {"ok": "wan 10.71.1.2"}
    # forwarded IPv6 stays dropped whatever the IPv4 fail mode: its rule is a DROP
    assert "-j DROP" in save6(lab) and "pyfw-daemon queue 7" in save6(lab)
    r = sh(PY, "-m", "pyfw.daemon", "--cleanup", "--nfqueue", "7", ns=lab.gw, check=False, cwd=str(ROOT),
           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0 and "removed 6 kernel rule(s) of queue 7" in r.stderr, r.stderr
    assert save_gw(lab) == before and save6(lab) == before6


@pytest.mark.parametrize("fail_open", [True, False])
def test_full_queue(lab: Lab, tmp_path: Path, fail_open: bool) -> None:
    """A stopped (SIGSTOP) daemon's queue fills: past --queue-len the kernel
    accepts with --fail-open (NFQA_CFG_F_FAIL_OPEN), drops without."""
    d = Daemon(lab, tmp_path, "--queue-len", "4", *(["--fail-open"] if fail_open else []))
    assert "fail-open flag" not in d.log, d.log
    d.proc.send_signal(signal.SIGSTOP)
    try:
        # (the ip-netns-exec wrapper execs the daemon: the pid is the daemon's)
        got = ping(lab, lab.lan, "203.0.113.2", 10, 1.0)
    finally:
        d.proc.send_signal(signal.SIGCONT)
    assert got == fail_open
    assert d.stop() == 0, d.log


def test_ipv6_dropped_and_counted(lab: Lab, tmp_path: Path) -> None:
    for ns, dev, addr in ((lab.lan, "eth0", "fd71:1::2/64"), (lab.gw, lab.gl, "fd71:1::1/64"),
                          (lab.gw, lab.gwn, "fd71:2::1/64"), (lab.wan, "eth0", "fd71:2::2/64")):
        sh("ip", "-6", "addr", "add", addr, "dev", dev, "nodad", ns=ns)
    sh("ip", "-6", "route", "add", "default", "via", "fd71:1::1", ns=lab.lan)
    sh("ip", "-6", "route", "add", "default", "via", "fd71:2::1", ns=lab.wan)
    sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=lab.gw)
    assert ping(lab, lab.lan, "fd71:2::2", 4, 3.0, "-6")  # the kernel alone forwards it (after neighbour discovery)
    before6 = save6(lab)
    d = Daemon(lab, tmp_path)
    assert "forwarded IPv6 drop" in d.log
    assert not ping(lab, lab.lan, "fd71:2::2", 3, 1.0, "-6")
    assert ping(lab, lab.lan, "fd71:1::1", 1, 2.0, "-6")  # the gateway's own IPv6 is not forwarding
    assert ping(lab, lab.lan, "203.0.113.2")  # IPv4 goes on
    assert d.stop() == 0
    assert re.search(r"ipv6-dropped [3-9]", d.log), d.log
    assert save6(lab) == before6
    d = Daemon(lab, tmp_path, "--ipv6", "accept", name="d2")
    assert "pyfw-daemon" not in save6(lab)
    assert ping(lab, lab.lan, "fd71:2::2", 1, 2.0, "-6")
    assert d.stop() == 0


def test_log_lines_on_stderr_and_syslog(lab: Lab, tmp_path: Path) -> None:
    lab.server(lab.wan, "wan", "80")
    syslog_path = str(tmp_path / "log")
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(syslog_path)
    syslog.settimeout(5)
    try:
        d = Daemon(lab, tmp_path, "--syslog", syslog_path)
        assert client(lab, lab.lan, "udp", "203.0.113.2", 5353) == {"ok": "wan 203.0.113.1"}
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "reloaded" not in d.log and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.stop() == 0
        got = []
        syslog.settimeout(0.5)
        try:
            while True:
                got.append(syslog.recv(4096).decode())
        except TimeoutError:
            pass
    finally:
        syslog.close()
    log = d.log
    # the kernel's LOG line (nf_log_ip_packet's text), with dmesg's time stamp in front
    mac = sh("cat", f"/sys/class/net/{lab.gl}/address", ns=lab.gw).stdout.strip()
    peer = sh("cat", "/sys/class/net/eth0/address", ns=lab.lan).stdout.strip()
    ifs = f"IN={lab.gl} OUT={lab.gwn} "
    line = re.compile(r"^\[\s*\d+\.\d{6}\] pyfw-test: " + ifs + f"MAC={mac}:{peer}:08:00 " +
                      r"SRC=10\.71\.1\.2 DST=203\.0\.113\.2 LEN=30 TOS=0x00 PREC=0x00 TTL=63 ID=\d+ DF PROTO=UDP "
                      r"SPT=\d+ DPT=5353 LEN=10 $", re.M)
    assert line.search(log), log
    assert re.search(r"^\[\s*\d+\.\d{6}\] nflog-test" + ifs, log, re.M), log
    # the daemon's own events: one line each
    assert [x for x in log.splitlines() if x.startswith("pyfw daemon: ")][:1][0].startswith(
        "pyfw daemon: started: queue 7")
    assert sum(1 for x in log.splitlines() if x.startswith("pyfw daemon: reloaded ")) == 1
    # syslog: facility daemon (3) for the events, kern (0) level warning for LOG, info for NFLOG
    assert any(re.match(r"<30>pyfw\[\d+\]: started: queue 7", m) for m in got), got
    assert any(re.match(r"<4>pyfw\[\d+\]: pyfw-test: " + ifs + "MAC=", m) for m in got), got
    assert any(re.match(r"<6>pyfw\[\d+\]: nflog-testIN=", m) for m in got), got
    assert any(re.match(r"<30>pyfw\[\d+\]: stopped \(", m) for m in got), got


def test_reload_error_is_one_line(lab: Lab, tmp_path: Path) -> None:
    d = Daemon(lab, tmp_path)
    (tmp_path / "d.rules").write_text("*filter\n-A FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reload of" not in d.log and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [x for x in d.log.splitlines() if "reload of" in x]
    assert len(lines) == 1 and "the live ruleset is unchanged" in lines[0] and "line: 2" in lines[0], d.log
    assert "MASQUERADE" in pyfw(lab, d.sock, "-t", "nat", "-S").stdout
    assert d.stop() == 0


def test_bad_ruleset_stops_touching_nothing(lab: Lab, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cases = (("*filter\n-A INPUT -j NOPE\nCOMMIT\n", 2, "Error occurred at line: 2"),
             ("*filter\n-A INPUT -j ACCEPT\n", 1, "COMMIT expected at line 3"),
             (None, 1, "Can't open"))
    path = tmp_path / "bad"
    for text, rc, message in cases:  # what the kernel's tool says (it loads the filter table: first)
        if text is not None:
            path.write_text(text)
        ref = sh("iptables-legacy-restore", "--test", str(path if text else tmp_path / "none"), ns=lab.gw, check=False)
        assert ref.returncode == rc and message in ref.stderr, ref.stderr
    before, before6 = save_gw(lab), save6(lab)
    for text, rc, message in cases:
        if text is not None:
            path.write_text(text)
        sock = str(tmp_path / "s")
        r = sh(PY, "-m", "pyfw.daemon", "--nfqueue", "8", "--ruleset", str(path if text else tmp_path / "none"),
               "--socket", sock, ns=lab.gw, check=False, cwd=str(ROOT), env=env)
        assert r.returncode == rc and message in r.stderr, (r.returncode, r.stderr)
        assert save_gw(lab) == before and save6(lab) == before6 and not os.path.exists(sock)
