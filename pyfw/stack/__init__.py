"""pyfw's own TCP/UDP endpoint stack (sans-IO) for the TAP gateway's local
services: see stack.py for the interface, tcp.py for the TCP state machine."""

from pyfw.stack.stack import Stack
from pyfw.stack.tcp import Connection

__all__ = ["Stack", "Connection"]
