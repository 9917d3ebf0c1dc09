"""Source NAT in one pass: the kernel told to take a local source.

A forwarded packet the engine gives a new source (MASQUERADE, SNAT, the
replies of a port forward to the gateway's own address) would, rewritten
at raw PREROUTING, reach the kernel's input routing with the gateway's own
address as source: fib_validate_source calls that a martian and drops it.
Without help the daemon accepts it as it came and swaps in the rewrite when
it is queued again at POSTROUTING -- two trips through the queue.

With net.ipv4.conf.all.accept_local=1 the kernel takes such a source, as
long as the in-device's rp_filter is not strict (strict still wants the
reverse route through the in-device, and a local address is on another).
So the daemon sets it while it runs, queues once where the kernel allows
it, and keeps the second pass for in-devices with strict rp_filter and
when policy routing is in use (the kernel would route by the new source).
The engine keeps judging by the user's own values, read before the daemon
changed anything: a spoofed packet from outside with the gateway's address
as source is still a martian to pyfw, which drops it first.

The original value is written into the comment of a do-nothing kernel rule
beside the queue rules, so that `--cleanup` (or the next daemon) after a
SIGKILL knows what to put back.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

ACCEPT_LOCAL = "net.ipv4.conf.all.accept_local"
MEMO_WORD = "accept_local="  # in a memo rule's comment: the value before any pyfw daemon
_DEFAULT_RULE_PREFS = {0, 32766, 32767}  # local, main, default


def _path(name: str) -> Path:
    return Path("/proc/sys", *name.split("."))


def read_sysctl(name: str) -> int | None:
    try:
        return int(_path(name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def write_sysctl(name: str, value: int) -> bool:
    try:
        _path(name).write_text(f"{value}\n")
        return True
    except OSError:
        return False


def memo_value(comment: str) -> int | None:
    """The original accept_local a memo rule's comment keeps (None: not a memo)."""
    for word in comment.split():
        if word.startswith(MEMO_WORD) and word[len(MEMO_WORD):].isdigit():
            return int(word[len(MEMO_WORD):])
    return None


def original(comments: Iterable[str]) -> int | None:
    """accept_local as the user had it: kept in a memo another pyfw daemon
    left (it changed the live value), else the live value."""
    for comment in comments:
        v = memo_value(comment)
        if v is not None:
            return v
    return read_sysctl(ACCEPT_LOCAL)


def policy_routing() -> bool:
    """Routing rules beyond the kernel's three: the route may depend on the
    source, which the kernel must then see unchanged (second pass)."""
    try:
        out = subprocess.run(["ip", "-j", "-4", "rule", "show"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        rules = json.loads(out or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return True
    return any(r.get("priority") not in _DEFAULT_RULE_PREFS or r.get("src", "all") != "all"
               for r in rules)


class LocalSource:
    """Which in-devices the kernel takes a packet from with a local source
    once accept_local is on: those whose effective rp_filter (the larger of
    conf.all and the device's) is not 1 (strict)."""

    def __init__(self) -> None:
        self._ok: dict[str, bool] = {}

    def __call__(self, dev: str) -> bool:
        ok = self._ok.get(dev)
        if ok is None:
            rpf = max(_read_int(Path("/proc/sys/net/ipv4/conf/all/rp_filter")),
                      _read_int(Path("/proc/sys/net/ipv4/conf", dev, "rp_filter")))
            ok = self._ok[dev] = rpf != 1
        return ok

    def clear(self) -> None:
        """Read the devices' rp_filter again (the host changed)."""
        self._ok.clear()
