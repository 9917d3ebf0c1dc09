"""Where the daemon's lines go: syslog (the journal) and stderr.

Two kinds of line.  The daemon's own events (start, reload, stop, errors),
one line each, with facility daemon.  The packet lines of LOG and NFLOG
rules, in the kernel's text (pyfw.engine.logtext), with facility kern and
the rule's --log-level (NFLOG: info), so the filters that pick the kernel's
packet log lines out of syslog (kern.*) pick these too.  On stderr a packet
line looks as dmesg prints the kernel's: "[seconds.micros] PREFIXIN=...".

Syslog is a datagram to /dev/log (or --syslog PATH), sent without
waiting: a syslog that is gone or full costs a count, never the packet
loop.  When stderr already is the journal (systemd's JOURNAL_STREAM) and
syslog works, lines are not written twice.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TextIO

LOG_KERN = 0
LOG_DAEMON = 3 << 3
LOG_ERR = 3
LOG_WARNING = 4
LOG_INFO = 6
DEV_LOG = "/dev/log"


def dmesg_stamp(now: float) -> str:
    """The kernel's printk time prefix for `now` (seconds on the monotonic clock)."""
    whole = int(now)
    return f"[{whole:5d}.{int((now - whole) * 1e6):06d}] "


def _stderr_is_journal(stream: TextIO) -> bool:
    spec = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = spec.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(spec) and st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


class LogSink:
    """Lines to syslog and stderr; `stats` counts what could not be sent."""

    def __init__(self, syslog: str | None = DEV_LOG, stderr: TextIO | None = None, ident: str = "pyfw") -> None:
        self.path = syslog if syslog and syslog != "none" else None
        self.stderr = stderr if stderr is not None else sys.stderr
        self.ident = f"{ident}[{os.getpid()}]"
        self.stats: dict[str, int] = {}
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._connect()
        self.to_stderr = not (self._sock is not None and _stderr_is_journal(self.stderr))

    def _connect(self) -> None:
        if self.path is None or not os.path.exists(self.path):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.connect(self.path)
            s.setblocking(False)
        except OSError:
            s.close()
            return
        self._sock = s

    def _syslog(self, pri: int, text: str) -> None:
        if self._sock is None:
            if self.path is None or time.monotonic() < self._retry_at:
                return
            self._retry_at = time.monotonic() + 5.0  # syslog restarted: try again now and then
            self._connect()
            if self._sock is None:
                return
        try:
            self._sock.send(f"<{pri}>{self.ident}: {text}".encode(errors="replace"))
        except (BlockingIOError, InterruptedError):
            self.stats["syslog_dropped"] = self.stats.get("syslog_dropped", 0) + 1
        except OSError:
            self.stats["syslog_dropped"] = self.stats.get("syslog_dropped", 0) + 1
            self._sock.close()
            self._sock = None

    def _write(self, line: str) -> None:
        if not self.to_stderr:
            return
        try:
            self.stderr.write(line + "\n")
            self.stderr.flush()
        except (OSError, ValueError):
            pass

    def event(self, text: str, level: int = LOG_INFO) -> None:
        """One line about the daemon itself."""
        self._syslog(LOG_DAEMON | level, text)
        self._write(f"pyfw daemon: {text}")

    def error(self, text: str) -> None:
        self.event(text, LOG_ERR)

    def packet(self, text: str, level: int = LOG_WARNING, now: float | None = None) -> None:
        """A LOG/NFLOG line in the kernel's text (it ends with a space, as the kernel's does)."""
        self._syslog(LOG_KERN | level, text)
        self._write(dmesg_stamp(time.monotonic() if now is None else now) + text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
