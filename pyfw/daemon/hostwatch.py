"""Keeps the engine's picture of the host current.

The daemon subscribes to the kernel's rtnetlink events for links, IPv4
addresses and IPv4 routes (pyroute2, or a plain netlink socket without
it).  The events themselves are not decoded: any of them means the host
is read again (pyfw.daemon.hostinfo), a short while after the last one so
that a burst of changes (an interface coming up with its addresses and
routes) costs one read.  MASQUERADE then picks the new address for new
connections, routing answers follow the new routes.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE
SETTLE = 0.15  # seconds after the last event before the host is read again


class _PlainSocket:
    """The multicast groups on a raw NETLINK_ROUTE socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, GROUPS))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        n = 0
        with contextlib.suppress(BlockingIOError, InterruptedError):
            for _ in range(256):
                self.sock.recv(65536)
                n += 1
        return n

    def close(self) -> None:
        self.sock.close()


class _Pyroute2:
    def __init__(self) -> None:
        from pyroute2 import IPRoute

        self.ipr = IPRoute()
        self.ipr.bind(groups=GROUPS)

    def fileno(self) -> int:
        return int(self.ipr.fileno())

    def drain(self) -> int:
        import select

        n = 0
        for _ in range(256):
            ready, _, _ = select.select([self.ipr], [], [], 0)
            if not ready:
                break
            n += len(self.ipr.get())
        return n

    def close(self) -> None:
        self.ipr.close()


class HostWatch:
    """`fileno` for select; `readable` when it is ready; `due` for the
    select timeout; `poll` gives the new Host once events have settled."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read
        self.events = 0
        self._due: float | None = None
        try:
            self.source: Any = _Pyroute2()
        except Exception:  # no pyroute2: the same events on a plain socket
            self.source = _PlainSocket()

    def fileno(self) -> int:
        return int(self.source.fileno())

    def readable(self, now: float | None = None) -> None:
        self.events += self.source.drain()
        self._due = (time.monotonic() if now is None else now) + SETTLE

    def timeout(self, now: float, longest: float) -> float:
        """How long select may wait."""
        if self._due is None:
            return longest
        return max(0.0, min(longest, self._due - now))

    def poll(self, now: float | None = None) -> Any:
        """The host read again if events settled (else None)."""
        if self._due is None or (time.monotonic() if now is None else now) < self._due:
            return None
        self._due = None
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.source.close()
