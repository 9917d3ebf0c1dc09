"""Connection tracking as nf_conntrack does it (tuples, states, timeouts,
the TCP state machine with window tracking, ICMP errors RELATED, limits)."""

from pyfw.engine.conntrack.conn import Conn, Tuple

__all__ = ["Conn", "Tuple"]
