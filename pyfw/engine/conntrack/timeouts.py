"""Conntrack settings: the per-protocol timeouts and switches that the
net.netfilter.nf_conntrack_* sysctls hold, with the values a fresh network
namespace has on Linux 6.18 (nf_conntrack_proto_*.c init_net functions,
nf_conntrack_standalone.c), checked with `sysctl -a | grep conntrack` in a
new namespace on this machine's kernel.

Timeouts are in seconds (the sysctls are proc_dointvec_jiffies: seconds in,
jiffies inside; the engine clock is seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# enum tcp_conntrack (uapi nf_conntrack_tcp.h) and the two extra timeout slots
TCP_CONNTRACK_NONE = 0
TCP_CONNTRACK_SYN_SENT = 1
TCP_CONNTRACK_SYN_RECV = 2
TCP_CONNTRACK_ESTABLISHED = 3
TCP_CONNTRACK_FIN_WAIT = 4
TCP_CONNTRACK_CLOSE_WAIT = 5
TCP_CONNTRACK_LAST_ACK = 6
TCP_CONNTRACK_TIME_WAIT = 7
TCP_CONNTRACK_CLOSE = 8
TCP_CONNTRACK_SYN_SENT2 = 9
TCP_CONNTRACK_MAX = 10
TCP_CONNTRACK_IGNORE = 11
TCP_CONNTRACK_RETRANS = 12
TCP_CONNTRACK_UNACK = 13
TCP_CONNTRACK_TIMEOUT_MAX = 14

P = "net.netfilter."

#: sysctl name -> value in a new network namespace (Linux 6.18, 64-bit, more
#: than 4 GiB of RAM: 262144 buckets and nf_conntrack_max = 1 * buckets).
SYSCTL_DEFAULTS: dict[str, int] = {
    P + "nf_conntrack_max": 262144,
    P + "nf_conntrack_buckets": 262144,
    P + "nf_conntrack_checksum": 1,
    P + "nf_conntrack_log_invalid": 0,
    P + "nf_conntrack_acct": 0,
    P + "nf_conntrack_timestamp": 0,
    P + "nf_conntrack_events": 2,
    P + "nf_conntrack_expect_max": 4096,
    P + "nf_conntrack_generic_timeout": 600,
    P + "nf_conntrack_tcp_timeout_syn_sent": 120,
    P + "nf_conntrack_tcp_timeout_syn_recv": 60,
    P + "nf_conntrack_tcp_timeout_established": 432000,
    P + "nf_conntrack_tcp_timeout_fin_wait": 120,
    P + "nf_conntrack_tcp_timeout_close_wait": 60,
    P + "nf_conntrack_tcp_timeout_last_ack": 30,
    P + "nf_conntrack_tcp_timeout_time_wait": 120,
    P + "nf_conntrack_tcp_timeout_close": 10,
    P + "nf_conntrack_tcp_timeout_max_retrans": 300,
    P + "nf_conntrack_tcp_timeout_unacknowledged": 300,
    P + "nf_conntrack_tcp_loose": 1,
    P + "nf_conntrack_tcp_be_liberal": 0,
    P + "nf_conntrack_tcp_ignore_invalid_rst": 0,
    P + "nf_conntrack_tcp_max_retrans": 3,
    P + "nf_conntrack_udp_timeout": 30,
    P + "nf_conntrack_udp_timeout_stream": 120,
    P + "nf_conntrack_icmp_timeout": 30,
    P + "nf_conntrack_icmpv6_timeout": 30,
    P + "nf_conntrack_gre_timeout": 30,
    P + "nf_conntrack_gre_timeout_stream": 180,
    P + "nf_conntrack_sctp_timeout_closed": 10,
    P + "nf_conntrack_sctp_timeout_cookie_wait": 3,
    P + "nf_conntrack_sctp_timeout_cookie_echoed": 3,
    P + "nf_conntrack_sctp_timeout_established": 210,
    P + "nf_conntrack_sctp_timeout_shutdown_sent": 3,
    P + "nf_conntrack_sctp_timeout_shutdown_recd": 3,
    P + "nf_conntrack_sctp_timeout_shutdown_ack_sent": 3,
    P + "nf_conntrack_sctp_timeout_heartbeat_sent": 30,
}

# tcp_timeouts[] slot -> sysctl suffix (slot 0 is SYN_SENT's, as init_net sets it)
_TCP_SLOTS: tuple[tuple[int, str], ...] = (
    (TCP_CONNTRACK_NONE, "syn_sent"),
    (TCP_CONNTRACK_SYN_SENT, "syn_sent"),
    (TCP_CONNTRACK_SYN_RECV, "syn_recv"),
    (TCP_CONNTRACK_ESTABLISHED, "established"),
    (TCP_CONNTRACK_FIN_WAIT, "fin_wait"),
    (TCP_CONNTRACK_CLOSE_WAIT, "close_wait"),
    (TCP_CONNTRACK_LAST_ACK, "last_ack"),
    (TCP_CONNTRACK_TIME_WAIT, "time_wait"),
    (TCP_CONNTRACK_CLOSE, "close"),
    (TCP_CONNTRACK_SYN_SENT2, "syn_sent"),
    (TCP_CONNTRACK_RETRANS, "max_retrans"),
    (TCP_CONNTRACK_UNACK, "unacknowledged"),
)


def _tcp_defaults() -> list[float]:
    t = [0.0] * TCP_CONNTRACK_TIMEOUT_MAX
    for slot, name in _TCP_SLOTS:
        t[slot] = float(SYSCTL_DEFAULTS[P + "nf_conntrack_tcp_timeout_" + name])
    t[TCP_CONNTRACK_SYN_SENT2] = 120.0  # no sysctl: tcp_timeouts[] value
    return t


@dataclass
class CtConfig:
    """What the trackers read at packet time (a plain object: attribute reads)."""

    max: int = 262144
    buckets: int = 262144
    checksum: bool = True
    acct: bool = False
    timestamp: bool = False
    log_invalid: int = 0
    generic_timeout: float = 600.0
    tcp_timeouts: list[float] = field(default_factory=_tcp_defaults)
    tcp_loose: bool = True
    tcp_be_liberal: bool = False
    tcp_ignore_invalid_rst: bool = False
    tcp_max_retrans: int = 3
    udp_timeout: float = 30.0
    udp_timeout_stream: float = 120.0
    icmp_timeout: float = 30.0
    gre_timeout: float = 30.0
    gre_timeout_stream: float = 180.0

    @classmethod
    def from_sysctls(cls, get: Callable[[str], Any] | Mapping[str, Any] | None = None) -> CtConfig:
        """Settings from sysctl values: a mapping of Linux names or a
        function name -> value (a missing name, None, or a lookup error keeps
        the fresh-namespace default)."""
        values = dict(SYSCTL_DEFAULTS)
        if get is not None:
            lookup: Callable[[str], Any]
            if isinstance(get, Mapping):
                lookup = get.get
            else:
                lookup = get
            for name in SYSCTL_DEFAULTS:
                try:
                    v = lookup(name)
                except Exception:  # an unset key on the host: the default
                    v = None
                if v is not None:
                    try:
                        values[name] = int(str(v).split()[0])
                    except (ValueError, IndexError):
                        pass
        cfg = cls()
        cfg.set_all(values)
        return cfg

    def set_all(self, values: Mapping[str, int]) -> None:
        for name, v in values.items():
            self.set(name, v)

    def set(self, name: str, value: int) -> bool:
        """Apply one sysctl; False for a name conntrack does not use."""
        key = name[len(P):] if name.startswith(P) else name
        if key.startswith("nf_conntrack_tcp_timeout_"):
            suffix = key[len("nf_conntrack_tcp_timeout_"):]
            hit = False
            for slot, sname in _TCP_SLOTS:
                if sname == suffix and slot != TCP_CONNTRACK_SYN_SENT2:
                    self.tcp_timeouts[slot] = float(value)
                    hit = True
            return hit
        simple: dict[str, tuple[str, Callable[[int], Any]]] = {
            "nf_conntrack_max": ("max", int),
            "nf_conntrack_buckets": ("buckets", int),
            "nf_conntrack_checksum": ("checksum", bool),
            "nf_conntrack_acct": ("acct", bool),
            "nf_conntrack_timestamp": ("timestamp", bool),
            "nf_conntrack_log_invalid": ("log_invalid", int),
            "nf_conntrack_generic_timeout": ("generic_timeout", float),
            "nf_conntrack_tcp_loose": ("tcp_loose", bool),
            "nf_conntrack_tcp_be_liberal": ("tcp_be_liberal", bool),
            "nf_conntrack_tcp_ignore_invalid_rst": ("tcp_ignore_invalid_rst", bool),
            "nf_conntrack_tcp_max_retrans": ("tcp_max_retrans", int),
            "nf_conntrack_udp_timeout": ("udp_timeout", float),
            "nf_conntrack_udp_timeout_stream": ("udp_timeout_stream", float),
            "nf_conntrack_icmp_timeout": ("icmp_timeout", float),
            "nf_conntrack_gre_timeout": ("gre_timeout", float),
            "nf_conntrack_gre_timeout_stream": ("gre_timeout_stream", float),
        }
        if key not in simple:
            return False
        attr, conv = simple[key]
        setattr(self, attr, conv(value))
        return True
