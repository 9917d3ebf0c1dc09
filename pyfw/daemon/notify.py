"""systemd's readiness protocol (sd_notify), for `Type=notify` units.

READY=1 once the kernel rules are in place (the gateway works from then
on), RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 at stop.
Without NOTIFY_SOCKET (not under systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` ("READY=1", ...) to the service manager; False if none listens."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), path)
    except OSError:
        return False
    return True
