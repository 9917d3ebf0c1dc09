"""The kernel rules that hand packets to the daemon's queue.

Every rule carries the comment "pyfw-daemon queue NUM pid PID", so the
daemon removes exactly its own rules at stop, and a later start (or
`pyfw daemon --cleanup`) finds the rules a killed daemon left behind.
They stay behind after a SIGKILL on purpose: they keep the gateway in the
chosen fail mode (fail-closed: NFQUEUE to a queue nobody reads drops;
fail-open: `--queue-bypass` lets packets through) until a new daemon takes
them over.  A new daemon installs its own rules in front of the stale ones
first and removes those afterwards, so no packet slips through unsteered
in between.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

IPTABLES = os.environ.get("PYFW_IPTABLES", "iptables-legacy")
IP6TABLES = os.environ.get("PYFW_IP6TABLES", "ip6tables-legacy")
TAG = "pyfw-daemon queue"

# The daemon's marks: OWN on the packets it sends itself (not queued again),
# POST on packets accepted at PREROUTING whose rewrite waits for POSTROUTING.
OWN_MARK = 0x50F30000
POST_MARK = 0x50F20000
OWN_MASK = 0xFFFF0000


@dataclass(frozen=True)
class KernelRule:
    family: int  # 4 (iptables) or 6 (ip6tables)
    table: str
    chain: str
    spec: tuple[str, ...]

    def command(self, op: str, *pos: str) -> list[str]:
        tool = IPTABLES if self.family == 4 else IP6TABLES
        return [tool, "-w", "-t", self.table, op, self.chain, *pos, *self.spec]


@dataclass(frozen=True)
class Steering:
    """What the daemon asks of the kernel."""

    num: int
    fail_open: bool = False
    ipv6: str = "drop"  # "drop": forwarded IPv6 dropped (and counted by the kernel); "accept": left alone
    owner: int = field(default_factory=os.getpid)
    accept_local: int | None = None  # the user's accept_local, kept in a memo rule (None: not changed)

    @property
    def comment(self) -> str:
        return f"{TAG} {self.num} pid {self.owner}"

    def tag(self) -> list[str]:
        """The comment match every rule of this daemon carries."""
        return ["-m", "comment", "--comment", self.comment]

    def queue(self, q: int) -> list[str]:
        """The NFQUEUE target to queue q, in the chosen fail mode."""
        return ["-j", "NFQUEUE", "--queue-num", str(q), *(["--queue-bypass"] if self.fail_open else [])]

    def defrag_rules(self) -> list[KernelRule]:
        """A rule that only uses conntrack (never reached: the queue rules come
        first), so that the kernel turns its defragmentation on in this
        namespace (NOTRACK alone does not): the queue then gets whole
        datagrams, as a kernel gateway's conntrack sees them, and the kernel
        fragments again on the way out."""
        return [KernelRule(4, "raw", "PREROUTING", ("-m", "conntrack", "--ctstate", "INVALID", *self.tag()))]

    def ipv6_rules(self) -> list[KernelRule]:
        if self.ipv6 != "drop":
            return []
        return [KernelRule(6, "filter", "FORWARD", (*self.tag(), "-j", "DROP"))]

    def memo_rules(self) -> list[KernelRule]:
        """A rule that matches nothing (protocol 255) and only keeps, in its
        comment, the accept_local the daemon changed (pyfw.daemon.localsrc),
        for whoever cleans up after a SIGKILL."""
        if self.accept_local is None:
            return []
        memo = f"{self.comment} keeps accept_local={self.accept_local}"
        return [KernelRule(4, "raw", "OUTPUT", ("-p", "255", "-m", "comment", "--comment", memo))]

    def rules(self) -> list[KernelRule]:
        """NOTRACK keeps the kernel's conntrack and NAT out of traffic pyfw
        handles; lo's PREROUTING is skipped (the engine sees loopback at
        OUTPUT); the daemon's own packets carry OWN_MARK and are not queued
        again; packets whose source the engine rewrote come back at mangle
        POSTROUTING."""
        tag = tuple(self.tag())
        queue = tuple(self.queue(self.num))
        own = f"{OWN_MARK:#x}/{OWN_MASK:#x}"
        post = f"{POST_MARK:#x}/{OWN_MASK:#x}"
        return [
            KernelRule(4, "raw", "PREROUTING", (*tag, "-j", "NOTRACK")),
            KernelRule(4, "raw", "PREROUTING", ("!", "-i", "lo", *tag, *queue)),
            KernelRule(4, "raw", "OUTPUT", (*tag, "-j", "NOTRACK")),
            KernelRule(4, "raw", "OUTPUT", ("-m", "mark", "!", "--mark", own, *tag, *queue)),
            KernelRule(4, "mangle", "POSTROUTING", ("-m", "mark", "--mark", post, *tag, *queue)),
            *self.defrag_rules(),
            *self.ipv6_rules(),
            *self.memo_rules(),
        ]


class KernelRules:
    """The rules this daemon added, to remove exactly those."""

    def __init__(self, steering: Steering, rules: list[KernelRule] | None = None) -> None:
        self.steering = steering
        self.rules = steering.rules() if rules is None else rules
        self.added: list[KernelRule] = []

    def install(self) -> None:
        """Insert the rules at the head of their chains (in order); on a
        failure the ones added so far are removed again and it raises."""
        positions: dict[tuple[int, str, str], int] = {}
        try:
            for rule in self.rules:
                key = (rule.family, rule.table, rule.chain)
                pos = positions[key] = positions.get(key, 0) + 1
                subprocess.run(rule.command("-I", str(pos)), check=True, capture_output=True, text=True)
                self.added.append(rule)
        except (subprocess.CalledProcessError, OSError):
            self.remove()
            raise

    def remove(self) -> None:
        while self.added:
            rule = self.added.pop()
            subprocess.run(rule.command("-D"), capture_output=True, text=True)

    def ipv6_dropped(self) -> int | None:
        """Forwarded IPv6 packets the kernel dropped for us (None: no such rule)."""
        for rule in self.added:
            if rule.family == 6:
                for found in installed(6, tables=(rule.table,)):
                    if found.comment == self.steering.comment and found.chain == rule.chain:
                        return found.packets
        return None


@dataclass(frozen=True)
class Installed:
    """A pyfw-daemon rule as iptables-save -c shows it."""

    rule: KernelRule
    comment: str
    packets: int

    @property
    def chain(self) -> str:
        return self.rule.chain

    @property
    def queue(self) -> int | None:
        words = self.comment.split()
        return int(words[2]) if len(words) > 2 and words[2].isdigit() else None

    @property
    def owner(self) -> int | None:
        words = self.comment.split()
        return int(words[4]) if len(words) > 4 and words[3] == "pid" and words[4].isdigit() else None


def _save(family: int, table: str) -> str:
    tool = (IPTABLES if family == 4 else IP6TABLES) + "-save"
    try:
        r = subprocess.run([tool, "-c", "-t", table], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout if r.returncode == 0 else ""


def parse_save(text: str, family: int) -> list[Installed]:
    """The pyfw-daemon rules in iptables-save -c output."""
    out = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if TAG not in line:
            continue
        words = shlex.split(line)
        packets = 0
        if words and words[0].startswith("["):
            packets = int(words[0][1:].split(":")[0])
            words = words[1:]
        if len(words) < 2 or words[0] != "-A":
            continue
        comment = ""
        for i, w in enumerate(words[:-1]):
            if w == "--comment":
                comment = words[i + 1]
        if not comment.startswith(TAG + " "):
            continue
        out.append(Installed(KernelRule(family, table, words[1], tuple(words[2:])), comment, packets))
    return out


def loaded_tables(family: int) -> set[str]:
    """The tables the kernel has (asking iptables-save for another would load it)."""
    try:
        with open("/proc/net/ip_tables_names" if family == 4 else "/proc/net/ip6_tables_names") as f:
            return set(f.read().split())
    except OSError:
        return set()


def installed(family: int, tables: Iterable[str] = ("raw", "mangle", "filter")) -> list[Installed]:
    """Every pyfw-daemon rule in the kernel's tables (of this network namespace)."""
    out: list[Installed] = []
    have = loaded_tables(family)
    for table in tables:
        if table in have:
            out.extend(parse_save(_save(family, table), family))
    return out


def stale_rules(num: int | None, keep_owner: int | None = None) -> list[Installed]:
    """pyfw-daemon rules of queue `num` (any queue: None) not owned by `keep_owner`."""
    return [r for fam in (4, 6) for r in installed(fam)
            if (num is None or r.queue == num) and r.owner != keep_owner]


def owner_alive(pid: int | None) -> bool:
    """Is `pid` a running pyfw daemon?"""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"daemon" in cmd and b"pyfw" in cmd


def remove_rules(rules: Iterable[Installed]) -> int:
    """Delete these rules (one -D each); how many went."""
    gone = 0
    for r in rules:
        if subprocess.run(r.rule.command("-D"), capture_output=True, text=True).returncode == 0:
            gone += 1
    return gone


def queue_counters(nums: Iterable[int]) -> dict[str, int]:
    """The kernel's drops for these queues (/proc/net/netfilter/nfnetlink_queue):
    queue-dropped, the queue was full (fail-closed); queue-user-dropped, the
    daemon's socket buffer was (the packet lost on the way to it)."""
    out = {"queue-dropped": 0, "queue-user-dropped": 0}
    want = set(nums)
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 7 and cols[0].isdigit() and int(cols[0]) in want:
                    out["queue-dropped"] += int(cols[5])
                    out["queue-user-dropped"] += int(cols[6])
    except (OSError, ValueError):
        return {}
    return out
