"""The kernel oracle for differential tests: real iptables-legacy 1.8.9 run
in a throw-away network namespace.

Each `Netns` gets a name unique to this process (`pyfw-test-<pid>-<n>`) so
that concurrent test runs never share tables, and is deleted on exit from the
`with` block whatever happens (plus an atexit fallback for a hard exit).
Nothing here sends traffic: a fresh namespace has only a downed loopback.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import pytest

IPTABLES = "iptables-legacy"
IPTABLES_SAVE = "iptables-legacy-save"
IPTABLES_RESTORE = "iptables-legacy-restore"

_counter = itertools.count()
_live: set[str] = set()


class Proc(NamedTuple):
    """One finished command: exit status and both outputs (text)."""

    rc: int
    out: str
    err: str


def root_netns_problem() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables-legacy)"
    for tool in ("ip", IPTABLES, IPTABLES_SAVE, IPTABLES_RESTORE):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


#: Decorator / pytestmark entry: skip unless root with `ip netns` and iptables-legacy.
requires_root_netns = pytest.mark.skipif(
    root_netns_problem() is not None, reason=str(root_netns_problem())
)


def skip_unless_root_netns() -> None:
    """pytest.skip() from inside a fixture or test when the oracle is unusable."""
    problem = root_netns_problem()
    if problem is not None:
        pytest.skip(problem)


def _unique_name() -> str:
    while True:
        name = f"pyfw-test-{os.getpid()}-{next(_counter)}"
        if not Path("/run/netns", name).exists():
            return name


def _delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    _live.discard(name)


@atexit.register
def _delete_leftovers() -> None:
    for name in list(_live):
        _delete(name)


_OWNED = re.compile(r"^pyfw-[a-z]+-(\d+)(?:\D|$)")


def sweep_dead_namespaces() -> list[str]:
    """Delete the namespaces of test and bench runs that were killed before
    their clean-up ran (SIGKILL, a timeout): every lab names its namespaces
    `pyfw-<lab>-<pid>...`, so one whose process is gone is nobody's."""
    gone = []
    for path in Path("/run/netns").glob("pyfw-*"):
        m = _OWNED.match(path.name)
        if m is not None and not Path("/proc", m.group(1)).exists():
            subprocess.run(["ip", "netns", "del", path.name], capture_output=True, check=False)
            gone.append(path.name)
    return gone


class NetnsError(RuntimeError):
    pass


class Netns:
    """A fresh network namespace with the real iptables-legacy inside.

    `wait` adds `-w` to iptables-legacy and -restore calls: the xtables lock
    (/run/xtables.lock) is shared by all namespaces, so concurrent helpers
    would otherwise see spurious exit 4.  It changes no other output.
    """

    def __init__(self, wait: bool = True) -> None:
        self.name = _unique_name()
        self.wait = wait
        self._created = False

    def __enter__(self) -> Netns:
        proc = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetnsError(f"ip netns add {self.name} failed: {proc.stderr.strip()}")
        self._created = True
        _live.add(self.name)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._created:
            _delete(self.name)
            self._created = False

    def run(self, argv: list[str], stdin: str | None = None, timeout: float = 120) -> Proc:
        """Run argv inside the namespace."""
        if not self._created:
            raise NetnsError(f"namespace {self.name} is not active")
        proc = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=stdin,
                              capture_output=True, text=True, timeout=timeout,
                              errors="surrogateescape")
        return Proc(proc.returncode, proc.stdout, proc.stderr)

    def iptables(self, *args: str) -> Proc:
        """`iptables-legacy ARGS`."""
        pre = ["-w"] if self.wait else []
        return self.run([IPTABLES, *pre, *args])

    def save(self, *args: str) -> Proc:
        """`iptables-legacy-save ARGS` (takes no lock in 1.8.9)."""
        return self.run([IPTABLES_SAVE, *args])

    def restore(self, text: str, *args: str) -> Proc:
        """`iptables-legacy-restore ARGS < text`."""
        pre = ["-w"] if self.wait else []
        return self.run([IPTABLES_RESTORE, *pre, *args], stdin=text)


def kernel_netns(wait: bool = True) -> Netns:
    """`with kernel_netns() as k: k.iptables("-S")` (same as `Netns(wait)`)."""
    return Netns(wait)


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def offline(required: bool = True) -> Iterator[bool]:
    """Run the block with this thread in a new, empty network namespace.

    pyfw runs in-process, in the test's own namespace; resolving a name or
    an address there (`-s host`, a bad address like 127.0.0.300, `-L`
    without -n) would send DNS queries from the host.  Inside, lookups fail
    at once (no interfaces), exactly as they do for iptables-legacy in its
    oracle namespace, so both sides see the same world.  Yields whether the
    isolation took effect (False only when `required` is False and the
    unshare is not permitted).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if required:
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            yield False
            return
        try:
            yield True
        finally:
            if libc.setns(orig, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the original network namespace: {os.strerror(err)}")
    finally:
        os.close(orig)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace `name` (sockets made and
    children forked meanwhile live there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if libc.setns(orig, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(orig)
        os.close(target)
