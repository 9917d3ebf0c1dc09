"""The simulated host: interfaces, addresses, routes, neighbours, local
services and sysctls, loaded from HOST.toml (contract: shared/contracts/host.toml).

Everything the kernel derives from `ip addr add` and `ip route add` is derived
here the same way, so that routing answers match `ip route get` on a Linux
6.x host with the same configuration:

- addresses are kept in the kernel's per-device order (primaries by scope,
  then secondaries: an address in the subnet of an earlier one with the same
  prefix length is secondary); 127/8 addresses have host scope;
- each address adds a `local` /32 route (table local, prefsrc the primary of
  its subnet); a primary address adds its connected route (main table, scope
  link; on `lo` a `local` route in table local) and, for prefixes shorter
  than /31, the subnet's `broadcast` route (Linux 6.x no longer adds one for
  the network address);
- the local and main tables share one trie as long as there are no policy
  rules, so a lookup is longest prefix over both, table local first among
  routes of equal length, then lowest metric (`fib_lookup`);
- the source address of a route is its prefsrc, else `inet_select_addr` on
  its device (the primary address whose subnet holds the gateway, else the
  first primary address in the route's scope, else any device's).

MAC addresses absent from the file are derived from the interface name:
02:xx:xx:xx:xx:xx where xx are the first five bytes of SHA-256 of
``b"pyfw-mac:" + name`` -- locally administered, unicast, stable across runs
and machines.  `lo` has 00:00:00:00:00:00 as on Linux.

Only 0.0.0.0 counts as the "zero network" (ipv4_is_zeronet since Linux
5.3): 0.1.2.3 is an ordinary unicast address, as the kernel now treats it.

Sysctls: every name is accepted (the table is a dict), the ones pyfw knows
are type- and range-checked, and unset ones have the values of a new network
namespace on Linux 6.x (read from a fresh namespace on 6.18 and the kernel
sources).  nf_conntrack_max and nf_conntrack_buckets are sized as the kernel
sizes them for this machine's memory (`conntrack_max_for_memory`: 262144
on any 64-bit machine with more than 4 GiB, which is what a fresh namespace
shows on the 25 GB machine the tests were written on; 65536 above 1 GiB).
Writing ip_forward sets forwarding on every device, as the kernel does;
conf.default.* reaches every device except lo (which has its address
before sysctls are applied); `Host.conf` combines conf.all with the device's
value as the kernel's IN_DEV_* macros do.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import ipaddress
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "RTN_UNSPEC", "RTN_UNICAST", "RTN_LOCAL", "RTN_BROADCAST", "RTN_ANYCAST", "RTN_MULTICAST",
    "RTN_BLACKHOLE", "RTN_UNREACHABLE", "RTN_PROHIBIT", "RTN_THROW", "RTN_NAT", "RTN_XRESOLVE",
    "RT_SCOPE_UNIVERSE", "RT_SCOPE_LINK", "RT_SCOPE_HOST", "RTN_NAMES",
    "Host", "HostError", "Interface", "IfAddr", "Route", "RouteResult", "Neighbor", "Service",
    "load_host", "parse_host", "host_from_dict", "derive_mac", "conntrack_max_for_memory",
    "SYSCTL_DEFAULTS", "DEVCONF_DEFAULTS", "ip_str", "ip_int",
]

# enum rtn_type (linux/rtnetlink.h), the values xt_addrtype tests.
RTN_UNSPEC: Final = 0
RTN_UNICAST: Final = 1
RTN_LOCAL: Final = 2
RTN_BROADCAST: Final = 3
RTN_ANYCAST: Final = 4
RTN_MULTICAST: Final = 5
RTN_BLACKHOLE: Final = 6
RTN_UNREACHABLE: Final = 7
RTN_PROHIBIT: Final = 8
RTN_THROW: Final = 9
RTN_NAT: Final = 10
RTN_XRESOLVE: Final = 11
RTN_NAMES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast",
             "blackhole", "unreachable", "prohibit", "throw", "nat", "xresolve")

# enum rt_scope_t
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_SITE: Final = 200
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
RT_SCOPE_NOWHERE: Final = 255

RT_TABLE_MAIN: Final = 254
RT_TABLE_LOCAL: Final = 255

LOOPBACK = "lo"
INADDR_LOOPBACK: Final = 0x7F000001
INADDR_BROADCAST: Final = 0xFFFFFFFF
IGMP_ALL_HOSTS: Final = 0xE0000001  # every interface joins 224.0.0.1 (ip_mc_up)
IPPROTO_IGMP: Final = 2
IFNAMSIZ: Final = 16

_MASKS = tuple(((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF) for n in range(33))


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def ip_str(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


def _is_zeronet(a: int) -> bool:
    """ipv4_is_zeronet: only 0.0.0.0 since Linux 5.3 (0/8 became unicast)."""
    return a == 0


def _is_multicast(a: int) -> bool:
    return a >> 28 == 0xE


def _is_local_multicast(a: int) -> bool:
    return a >> 8 == 0xE00000


def _is_loopback(a: int) -> bool:
    return a >> 24 == 127


class HostError(ValueError):
    """A host description that does not load: the message
    (``SOURCE: WHERE: problem``) names the file, where in it
    (``interface[2] (eth1)``) and the key; `source` and `problem` hold the
    parts, for callers that print the file name themselves."""

    def __init__(self, message: str, source: str = "", problem: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.problem = problem or message


# ---------------------------------------------------------------- model
@dataclass(frozen=True)
class IfAddr:
    """One IPv4 address on a device (struct in_ifaddr)."""

    local: int
    prefixlen: int
    dev: str
    scope: int = RT_SCOPE_UNIVERSE
    secondary: bool = False

    @property
    def mask(self) -> int:
        return _MASKS[self.prefixlen]

    @property
    def network(self) -> int:
        return self.local & _MASKS[self.prefixlen]

    @property
    def broadcast(self) -> int | None:
        """The subnet broadcast address, where Linux adds one (prefix < 31)."""
        if self.prefixlen >= 31:
            return None
        return self.network | (~_MASKS[self.prefixlen] & 0xFFFFFFFF)

    def contains(self, addr: int) -> bool:
        m = _MASKS[self.prefixlen]
        return addr & m == self.local & m

    def __str__(self) -> str:
        return f"{ip_str(self.local)}/{self.prefixlen}"


@dataclass
class Interface:
    name: str
    mac: bytes                                  # 6 bytes
    addresses: list[tuple[int, int]] = field(default_factory=list)  # as configured: (addr, prefixlen)
    mtu: int = 1500
    bridge: str | None = None
    tap: str | None = None                      # TAP device name for --tap (default: name)
    index: int = 0                              # ifindex: lo is 1, then file order
    ifaddrs: list[IfAddr] = field(default_factory=list)  # kernel order, primary/secondary

    @property
    def mac_text(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)

    @property
    def tap_name(self) -> str:
        return self.tap or self.name

    @property
    def primary(self) -> int | None:
        """The first primary address (what `inet_select_addr(dev, 0, ...)` starts from)."""
        for ifa in self.ifaddrs:
            if not ifa.secondary:
                return ifa.local
        return None


@dataclass(frozen=True)
class Route:
    """A FIB entry.  `prefsrc` is the source address the kernel uses with
    the route (fib_result_prefsrc): the configured one for kernel routes,
    else the one `inet_select_addr` picks; 0 when the host has no address."""

    dev: str
    gateway: int | None
    prefsrc: int
    dst: int = 0
    prefixlen: int = 0
    metric: int = 0
    type: int = RTN_UNICAST
    scope: int = RT_SCOPE_UNIVERSE
    proto: str = "boot"          # "kernel" for routes the addresses imply
    table: int = RT_TABLE_MAIN
    nh_scope: int = RT_SCOPE_HOST  # RT_SCOPE_LINK when the gateway is a neighbour
    fib_prefsrc: int = 0         # the configured prefsrc (kernel routes)

    @property
    def uses_gateway(self) -> bool:
        """The kernel sends to the gateway (rt_uses_gateway); a gateway that
        is a local address is not used."""
        return self.gateway is not None and self.nh_scope == RT_SCOPE_LINK

    def contains(self, addr: int) -> bool:
        m = _MASKS[self.prefixlen]
        return addr & m == self.dst

    def next_hop(self, dst: int) -> int:
        """Where a frame to `dst` goes: the gateway when the kernel uses it."""
        return self.gateway if self.gateway is not None and self.nh_scope == RT_SCOPE_LINK else dst

    def __str__(self) -> str:
        dst = "default" if self.prefixlen == 0 else (
            ip_str(self.dst) if self.prefixlen == 32 else f"{ip_str(self.dst)}/{self.prefixlen}")
        words = [dst] if self.type == RTN_UNICAST else [RTN_NAMES[self.type], dst]
        if self.gateway is not None:
            words += ["via", ip_str(self.gateway)]
        words += ["dev", self.dev]
        if self.proto == "kernel":
            words += ["proto", "kernel"]
        if self.scope == RT_SCOPE_LINK:
            words += ["scope", "link"]
        elif self.scope == RT_SCOPE_HOST:
            words += ["scope", "host"]
        if self.fib_prefsrc:
            words += ["src", ip_str(self.fib_prefsrc)]
        if self.metric:
            words += ["metric", str(self.metric)]
        return " ".join(words)


@dataclass(init=False, unsafe_hash=True)
class RouteResult:
    """A routing decision (struct rtable), as `ip route get` shows it.

    Output: `dev` is the egress device (`lo` for local destinations), `src`
    the source address.  Input: `type` RTN_LOCAL / RTN_BROADCAST /
    RTN_MULTICAST for local delivery, RTN_UNICAST for forwarding through
    `dev`, RTN_UNREACHABLE when there is no route (the kernel's ip_error then
    answers ICMP unreachable only when forwarding is on).  `error` is the
    errno `ip route get` reports (0 when routed; EINVAL/EXDEV for martians
    and rp_filter, ENETUNREACH/EHOSTUNREACH for no route).

    Not changed once made (hashed by value, as a frozen dataclass is), but
    not frozen: a frozen dataclass's __init__ sets each field through
    object.__setattr__, and the input path makes one per new destination;
    the __init__ is written out so that mypyc compiles it (its defaults
    let copy make a compiled one through RouteResult.__new__).
    """

    type: int
    dev: str
    dst: int
    src: int
    gateway: int | None
    route: Route | None
    error: int
    reason: str
    redirect: bool       # input: would send an ICMP redirect (back out the same link)

    def __init__(self, type: int = 0, dev: str = "", dst: int = 0, src: int = 0, gateway: int | None = None,
                 route: Route | None = None, error: int = 0, reason: str = "", redirect: bool = False) -> None:
        self.type = type
        self.dev = dev
        self.dst = dst
        self.src = src
        self.gateway = gateway
        self.route = route
        self.error = error
        self.reason = reason
        self.redirect = redirect

    @property
    def ok(self) -> bool:
        return self.error == 0

    @property
    def next_hop(self) -> int:
        """The neighbour the frame is sent to."""
        return self.gateway if self.gateway is not None else self.dst

    @property
    def local(self) -> bool:
        """Delivered to the host itself (input) / looped back (output)."""
        return self.error == 0 and self.dev == LOOPBACK


@dataclass(frozen=True)
class Neighbor:
    ip: int
    mac: bytes
    dev: str


@dataclass(frozen=True)
class Service:
    proto: int               # 6 tcp, 17 udp
    port: int
    address: int | None      # None: every local address (INADDR_ANY)


# ---------------------------------------------------------------- sysctls
def conntrack_max_for_memory(total_bytes: int, page_size: int = 4096, bits: int = 64) -> int:
    """nf_conntrack_htable_size (and nf_conntrack_max: factor 1) as
    nf_conntrack_init_start sizes it from totalram_pages(): 1/16384 of the
    memory in hash heads, 262144 above 4 GiB on 64-bit, 65536 above 1 GiB,
    at least 1024."""
    pages = total_bytes // page_size
    size = (pages * page_size) // 16384 // (bits // 8)  # sizeof(struct hlist_head): one pointer
    if bits >= 64 and pages > 4 * ((1 << 30) // page_size):
        size = 262144
    elif pages > (1 << 30) // page_size:
        size = 65536
    return max(size, 1024)


def _machine_memory() -> tuple[int, int]:
    """(total RAM bytes, page size): what totalram_pages() counts."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, page
    except (ValueError, OSError, AttributeError):
        return 8 << 30, 4096


_CT_BUCKETS = conntrack_max_for_memory(*_machine_memory())

#: Global (non per-device) sysctls pyfw knows, with a new namespace's values.
SYSCTL_DEFAULTS: dict[str, int | tuple[int, int]] = {
    # net.ipv4: forwarding, TTL, fragments, ICMP
    "net.ipv4.ip_forward": 0,
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv4.ip_no_pmtu_disc": 0,
    "net.ipv4.ip_nonlocal_bind": 0,
    "net.ipv4.ip_forward_use_pmtu": 0,
    "net.ipv4.ip_forward_update_priority": 1,
    "net.ipv4.ip_early_demux": 1,
    "net.ipv4.ip_dynaddr": 0,
    "net.ipv4.ip_autobind_reuse": 0,
    "net.ipv4.ip_unprivileged_port_start": 1024,
    "net.ipv4.ip_local_port_range": (32768, 60999),
    "net.ipv4.ping_group_range": (1, 0),
    "net.ipv4.ipfrag_time": 30,
    "net.ipv4.ipfrag_high_thresh": 4194304,
    "net.ipv4.ipfrag_low_thresh": 3145728,
    "net.ipv4.ipfrag_max_dist": 64,
    "net.ipv4.icmp_echo_ignore_all": 0,
    "net.ipv4.icmp_echo_enable_probe": 0,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.icmp_ignore_bogus_error_responses": 1,
    "net.ipv4.icmp_errors_use_inbound_ifaddr": 0,
    "net.ipv4.icmp_ratelimit": 1000,
    "net.ipv4.icmp_ratemask": 6168,
    "net.ipv4.icmp_msgs_per_sec": 1000,
    "net.ipv4.icmp_msgs_burst": 50,
    "net.ipv4.fwmark_reflect": 0,
    "net.ipv4.route.min_pmtu": 552,
    "net.ipv4.route.mtu_expires": 600,
    "net.ipv4.route.min_adv_mss": 256,
    "net.ipv4.fib_multipath_hash_policy": 0,
    # net.ipv4: the host's own TCP/UDP (RST, SYN cookies, timestamps)
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv4.tcp_timestamps": 1,
    "net.ipv4.tcp_window_scaling": 1,
    "net.ipv4.tcp_sack": 1,
    "net.ipv4.tcp_ecn": 2,
    "net.ipv4.tcp_fin_timeout": 60,
    "net.ipv4.tcp_rfc1337": 0,
    "net.ipv4.tcp_syn_retries": 6,
    "net.ipv4.tcp_synack_retries": 5,
    "net.ipv4.tcp_invalid_ratelimit": 500,
    "net.ipv4.tcp_challenge_ack_limit": 2147483647,
    "net.ipv4.tcp_fwmark_accept": 0,
    "net.ipv4.tcp_early_demux": 1,
    "net.ipv4.udp_early_demux": 1,
    # net.netfilter: conntrack
    "net.netfilter.nf_conntrack_max": _CT_BUCKETS,
    "net.netfilter.nf_conntrack_buckets": _CT_BUCKETS,
    "net.netfilter.nf_conntrack_expect_max": max(_CT_BUCKETS // 256, 1) * 4,
    "net.netfilter.nf_conntrack_acct": 0,
    "net.netfilter.nf_conntrack_checksum": 1,
    "net.netfilter.nf_conntrack_events": 2,
    "net.netfilter.nf_conntrack_log_invalid": 0,
    "net.netfilter.nf_conntrack_timestamp": 0,
    "net.netfilter.nf_conntrack_generic_timeout": 600,
    "net.netfilter.nf_conntrack_icmp_timeout": 30,
    "net.netfilter.nf_conntrack_icmpv6_timeout": 30,
    "net.netfilter.nf_conntrack_udp_timeout": 30,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 120,
    "net.netfilter.nf_conntrack_tcp_loose": 1,
    "net.netfilter.nf_conntrack_tcp_be_liberal": 0,
    "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst": 0,
    "net.netfilter.nf_conntrack_tcp_max_retrans": 3,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv": 60,
    "net.netfilter.nf_conntrack_tcp_timeout_established": 432000,
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 60,
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": 30,
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 120,
    "net.netfilter.nf_conntrack_tcp_timeout_close": 10,
    "net.netfilter.nf_conntrack_tcp_timeout_max_retrans": 300,
    "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged": 300,
    "net.netfilter.nf_conntrack_sctp_timeout_closed": 10,
    "net.netfilter.nf_conntrack_sctp_timeout_cookie_wait": 3,
    "net.netfilter.nf_conntrack_sctp_timeout_cookie_echoed": 3,
    "net.netfilter.nf_conntrack_sctp_timeout_established": 210,
    "net.netfilter.nf_conntrack_sctp_timeout_shutdown_sent": 3,
    "net.netfilter.nf_conntrack_sctp_timeout_shutdown_recd": 3,
    "net.netfilter.nf_conntrack_sctp_timeout_shutdown_ack_sent": 3,
    "net.netfilter.nf_conntrack_sctp_timeout_heartbeat_sent": 30,
    "net.netfilter.nf_conntrack_gre_timeout": 30,
    "net.netfilter.nf_conntrack_gre_timeout_stream": 180,
    "net.netfilter.nf_conntrack_frag6_timeout": 60,
    "net.netfilter.nf_conntrack_frag6_low_thresh": 3145728,
    "net.netfilter.nf_conntrack_frag6_high_thresh": 4194304,
    "net.netfilter.nf_hooks_lwtunnel": 0,
}

# Kernel-enforced ranges (proc_dointvec_minmax and friends).
_SYSCTL_RANGES: dict[str, tuple[int, int]] = {
    "net.ipv4.ip_default_ttl": (1, 255),
    "net.ipv4.ip_no_pmtu_disc": (0, 3),
    "net.ipv4.icmp_msgs_per_sec": (0, 2**31 - 1),
    "net.ipv4.icmp_msgs_burst": (0, 2**31 - 1),
    "net.ipv4.ip_unprivileged_port_start": (0, 65535),
    "net.ipv4.tcp_ecn": (0, 5),
    "net.ipv4.tcp_syncookies": (0, 2),
    "net.ipv4.tcp_timestamps": (0, 2),
    "net.ipv4.route.min_pmtu": (68, 2**31 - 1),
    "net.netfilter.nf_conntrack_max": (0, 2**31 - 1),
    "net.netfilter.nf_conntrack_tcp_loose": (0, 1),
    "net.netfilter.nf_conntrack_tcp_be_liberal": (0, 1),
    "net.netfilter.nf_conntrack_tcp_ignore_invalid_rst": (0, 1),
    "net.netfilter.nf_conntrack_checksum": (0, 1),
    "net.netfilter.nf_conntrack_acct": (0, 1),
    "net.netfilter.nf_conntrack_timestamp": (0, 1),
    "net.netfilter.nf_conntrack_events": (0, 2),
    "net.netfilter.nf_conntrack_log_invalid": (0, 255),
}
_SYSCTL_READONLY = {"net.netfilter.nf_conntrack_count"}

#: net.ipv4.conf.{all,default}.KEY in a new namespace: (all, default).
DEVCONF_DEFAULTS: dict[str, tuple[int, int]] = {
    "accept_local": (0, 0),
    "accept_redirects": (1, 1),
    "accept_source_route": (0, 1),
    "arp_accept": (0, 0),
    "arp_announce": (0, 0),
    "arp_evict_nocarrier": (1, 1),
    "arp_filter": (0, 0),
    "arp_ignore": (0, 0),
    "arp_notify": (0, 0),
    "bc_forwarding": (0, 0),
    "bootp_relay": (0, 0),
    "disable_policy": (0, 0),
    "disable_xfrm": (0, 0),
    "drop_gratuitous_arp": (0, 0),
    "drop_unicast_in_l2_multicast": (0, 0),
    "force_igmp_version": (0, 0),
    "forwarding": (0, 0),
    "igmpv2_unsolicited_report_interval": (10000, 10000),
    "igmpv3_unsolicited_report_interval": (1000, 1000),
    "ignore_routes_with_linkdown": (0, 0),
    "log_martians": (0, 0),
    "mc_forwarding": (0, 0),
    "medium_id": (0, 0),
    "promote_secondaries": (0, 0),
    "proxy_arp": (0, 0),
    "proxy_arp_pvlan": (0, 0),
    "route_localnet": (0, 0),
    "rp_filter": (0, 0),
    "secure_redirects": (1, 1),
    "send_redirects": (1, 1),
    "shared_media": (1, 1),
    "src_valid_mark": (0, 0),
    "tag": (0, 0),
}
_DEVCONF_READONLY = {"mc_forwarding"}
_DEVCONF_RANGES = {"rp_filter": (0, 2), "arp_announce": (0, 2), "arp_ignore": (0, 8)}
# How the kernel combines conf.all.KEY with the device's value (IN_DEV_* macros).
_DEVCONF_COMBINE: dict[str, str] = {
    "forwarding": "dev", "mc_forwarding": "and", "bc_forwarding": "and", "rp_filter": "max",
    "src_valid_mark": "or", "accept_source_route": "and", "accept_local": "or", "bootp_relay": "and",
    "log_martians": "or", "proxy_arp": "or", "proxy_arp_pvlan": "dev", "shared_media": "or",
    "send_redirects": "or", "secure_redirects": "or", "promote_secondaries": "or",
    "route_localnet": "or", "arp_filter": "or", "arp_announce": "max", "arp_ignore": "max",
    "arp_accept": "max", "arp_notify": "max", "arp_evict_nocarrier": "and",
    "drop_unicast_in_l2_multicast": "or", "drop_gratuitous_arp": "or",
    "ignore_routes_with_linkdown": "or", "accept_redirects": "redirects",
}
_LO_DEVCONF = {"disable_policy": 1, "disable_xfrm": 1}


def derive_mac(name: str) -> bytes:
    """The MAC of an interface the file gives none for (see module doc)."""
    return b"\x02" + hashlib.sha256(b"pyfw-mac:" + name.encode()).digest()[:5]


# ---------------------------------------------------------------- the FIB
_MISS = object()


class _Fib:
    """Routes indexed by prefix length then network, each bucket in the
    kernel's alias order."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.buckets: dict[int, dict[int, list[Route]]] = {}
        for r in routes:
            self.buckets.setdefault(r.prefixlen, {}).setdefault(r.dst, []).append(r)
        for by_net in self.buckets.values():
            for lst in by_net.values():
                # local table before main (fib_insert_alias: higher tb_id first),
                # then metric; stable, so insertion order breaks ties (NLM_F_APPEND)
                lst.sort(key=lambda r: (-r.table, r.metric))
        self.lens = sorted(self.buckets, reverse=True)
        # (mask, networks of that prefix length), longest prefix first
        self._levels = [(_MASKS[plen], self.buckets[plen]) for plen in self.lens]
        # A plain lookup (any scope, any device) takes the first alias of the
        # longest matching prefix: host routes come from one dict, and the
        # rest depends only on the destination's first `L` bits, L the
        # longest shorter prefix, so the answers are cached per such block
        # (new destinations mostly fall in blocks already seen).
        self._exact: dict[int, list[Route]] = self.buckets.get(32, {})
        shorter = [plen for plen in self.lens if plen < 32]
        self._block = _MASKS[shorter[0]] if shorter else 0
        self._cache: dict[int, Route | None] = {}

    def lookup(self, dst: int, oif: str | None = None, scope: int = RT_SCOPE_UNIVERSE) -> Route | None:
        """fib_table_lookup: longest prefix, first alias in scope (and on
        `oif` when given)."""
        if oif is None and scope == RT_SCOPE_UNIVERSE:
            exact = self._exact.get(dst)
            if exact is not None:
                return exact[0]
            block = dst & self._block
            hit = self._cache.get(block, _MISS)
            if hit is not _MISS:
                return hit  # type: ignore[return-value]
            found = None
            for mask, by_net in self._levels:
                lst = by_net.get(dst & mask)
                if lst is not None:
                    found = lst[0]  # (no scope is below RT_SCOPE_UNIVERSE)
                    break
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[block] = found
            return found
        found = None
        for mask, by_net in self._levels:
            lst = by_net.get(dst & mask)
            if lst is None:
                continue
            for r in lst:
                if r.scope < scope:
                    continue
                if oif is not None and r.dev != oif:
                    continue
                found = r
                break
            if found is not None:
                break
        return found


def _forward_route(rtype: int, dev: str, dst: int, src: int, gateway: int | None, route: Route,
                   redirect: bool) -> RouteResult:
    """RouteResult(rtype, dev, dst, src, gateway, route, redirect=redirect)
    for the input path, which makes one per new flow."""
    return RouteResult(rtype, dev, dst, src, gateway, route, redirect=redirect)


# ---------------------------------------------------------------- Host
@dataclass
class Host:
    """The host pyfw simulates.  Build it with `load_host` / `parse_host`;
    the routing helpers assume the fields are not changed afterwards."""

    name: str
    interfaces: dict[str, Interface]          # lo first, then file order
    routes: list[Route]                       # the main table, kernel order
    neighbors: list[Neighbor] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    sysctl: dict[str, Any] = field(default_factory=dict)
    local_routes: list[Route] = field(default_factory=list)  # table local
    source: str = "HOST.toml"

    def __post_init__(self) -> None:
        self._reindex()

    def _reindex(self) -> None:
        self._main = _Fib(self.routes)
        self._merged = _Fib([*self.local_routes, *self.routes])
        self._neigh: dict[tuple[str, int], bytes] = {(n.dev, n.ip): n.mac for n in self.neighbors}
        self._neigh_any: dict[int, bytes] = {}
        for n in self.neighbors:
            self._neigh_any.setdefault(n.ip, n.mac)
        self._ifaddr_set = {ifa.local for i in self.interfaces.values() for ifa in i.ifaddrs}
        self._services: set[tuple[int, int, int | None]] = {(s.proto, s.port, s.address) for s in self.services}
        self._conf_cache: dict[tuple[str, str], int] = {}
        # input routing: (route_localnet, forwarding) per device, and
        # fib_validate_source's answers per (source, in device, out device)
        self._iif_flags: dict[str, tuple[bool, bool]] = {}
        self._valid_src: dict[tuple[int, str, str | None], int] = {}
        self._type_cache: dict[tuple[int, str | None], int] = {}

    # ------------------------------------------------------------ lookups
    def interface(self, name: str) -> Interface | None:
        return self.interfaces.get(name)

    def route(self, dst: int) -> Route | None:
        """Longest-prefix match over the main table, lowest metric among
        equal prefixes (what `ip route show` lists), or None."""
        return self._main.lookup(dst)

    def fib_lookup(self, dst: int, oif: str | None = None, scope: int = RT_SCOPE_UNIVERSE) -> Route | None:
        """The kernel's fib_lookup without policy rules: the local and main
        tables as one trie (local routes first among equal prefixes)."""
        return self._merged.lookup(dst, oif, scope)

    def is_local(self, addr: int) -> bool:
        """inet_addr_type(addr) == RTN_LOCAL: one of the host's addresses or
        inside a local route (all of 127/8)."""
        return self.addr_type(addr) == RTN_LOCAL

    def is_ifaddr(self, addr: int) -> bool:
        """An address configured on an interface (inet_lookup_ifaddr_rcu),
        which 127.0.0.5 is not."""
        return addr in self._ifaddr_set

    def addr_type(self, addr: int, dev: str | None = None) -> int:
        """inet_dev_addr_type as xt_addrtype calls it: 0.0.0.0 and
        255.255.255.255 are BROADCAST, 224/4 MULTICAST, else the type of the
        FIB entry for `addr` (UNICAST when none) -- and with `dev`, UNICAST
        unless that entry is on `dev`."""
        key = (addr, dev)
        cached = self._type_cache.get(key)
        if cached is not None:
            return cached
        if _is_zeronet(addr) or addr == INADDR_BROADCAST:
            t = RTN_BROADCAST
        elif _is_multicast(addr):
            t = RTN_MULTICAST
        else:
            r = self._merged.lookup(addr)
            t = RTN_UNICAST if r is None or (dev is not None and r.dev != dev) else r.type
        if len(self._type_cache) > 65536:
            self._type_cache.clear()
        self._type_cache[key] = t
        return t

    def neighbor(self, ip: int, dev: str | None = None) -> bytes | None:
        """The static neighbour entry's MAC for `ip` (on `dev`), or None."""
        if dev is None:
            return self._neigh_any.get(ip)
        return self._neigh.get((dev, ip))

    def service(self, proto: int | str, addr: int, port: int) -> bool:
        """A local socket listens on (proto, addr, port): bound to `addr` or
        to every address."""
        p = _proto_number(proto)
        if p is None:
            return False
        s = self._services
        return (p, port, None) in s or (p, port, addr) in s

    def neighbors_of(self, dev: str) -> list[Neighbor]:
        return [n for n in self.neighbors if n.dev == dev]

    # ------------------------------------------------------------ small facts
    def mtu(self, dev: str) -> int:
        """The device's MTU (1500 for a name the host does not have)."""
        iface = self.interfaces.get(dev)
        return iface.mtu if iface is not None else 1500

    def mac(self, dev: str) -> bytes:
        """The device's MAC (six zero bytes for an unknown name, as lo)."""
        iface = self.interfaces.get(dev)
        return iface.mac if iface is not None else b"\0" * 6

    def neighbor_mac(self, ip: int, dev: str | None = None) -> bytes | None:
        """Same as `neighbor`."""
        return self.neighbor(ip, dev or None)

    def primary_address(self, dev: str) -> int | None:
        """The first primary address of `dev`, or None."""
        iface = self.interfaces.get(dev)
        return iface.primary if iface is not None else None

    def is_broadcast(self, addr: int, dev: str | None = None) -> bool:
        """The route to `addr` is a broadcast one (RTCF_BROADCAST): the
        limited broadcast or a local subnet's broadcast address.  The kernel's
        route flags do not depend on the device; `dev` is accepted for
        callers that have one at hand."""
        if addr == INADDR_BROADCAST:
            return True
        r = self._merged.lookup(addr)
        return r is not None and r.type == RTN_BROADCAST

    def sysctl_int(self, name: str) -> int | None:
        """An integer sysctl (known or given), or None."""
        v = self.sysctl.get(name)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def icmp_source(self, orig_src: int, orig_dst: int, iif: str | None = None) -> int:
        """The source address icmp_send gives an ICMP error about a packet
        from `orig_src` to `orig_dst` that came in on `iif`: the original
        destination when that is local, else the inbound interface's address
        with icmp_errors_use_inbound_ifaddr, else the source of the route
        back to `orig_src`."""
        if self.is_local(orig_dst):
            return orig_dst
        if iif and self.sysctl.get("net.ipv4.icmp_errors_use_inbound_ifaddr") and iif in self.interfaces:
            a = self.select_addr(iif, orig_src, RT_SCOPE_LINK)
            if a:
                return a
        return self.output_route(orig_src).src

    # ------------------------------------------------------------ sysctls
    def conf(self, dev: str, key: str) -> int:
        """net.ipv4.conf.<dev>.<key> as the kernel uses it: combined with
        conf.all.<key> the way the IN_DEV_* macro for the key does (max for
        rp_filter, or for accept_local, route_localnet, log_martians...)."""
        ck = (dev, key)
        cached = self._conf_cache.get(ck)
        if cached is not None:
            return cached
        own = int(self.sysctl.get(f"net.ipv4.conf.{_sysctl_dev(dev)}.{key}", 0))
        allv = int(self.sysctl.get(f"net.ipv4.conf.all.{key}", 0))
        how = _DEVCONF_COMBINE.get(key, "dev")
        if how == "or":
            v = int(bool(allv or own))
        elif how == "and":
            v = int(bool(allv and own))
        elif how == "max":
            v = max(allv, own)
        elif how == "redirects":
            fwd = self.conf(dev, "forwarding")
            v = int(bool(allv and own)) if fwd else int(bool(allv or own))
        else:
            v = own
        self._conf_cache[ck] = v
        return v

    @property
    def ip_forward(self) -> bool:
        return bool(self.sysctl.get("net.ipv4.ip_forward", 0))

    # ------------------------------------------------------------ source address
    def select_addr(self, dev: str, dst: int = 0, scope: int = RT_SCOPE_LINK) -> int:
        """inet_select_addr: the first primary address of `dev` in `scope`
        whose subnet holds `dst` (else the first in scope), else a primary
        address of any device (lo first) in scope and not link-scoped; 0."""
        iface = self.interfaces.get(dev)
        addr = 0
        if iface is not None:
            localnet = RT_SCOPE_LINK if self.conf(dev, "route_localnet") else RT_SCOPE_HOST
            for ifa in iface.ifaddrs:
                if ifa.secondary or min(ifa.scope, localnet) > scope:
                    continue
                if not dst or ifa.contains(dst):
                    return ifa.local
                if not addr:
                    addr = ifa.local
            if addr:
                return addr
        for other in self.interfaces.values():
            for ifa in other.ifaddrs:
                if ifa.secondary:
                    continue
                if ifa.scope != RT_SCOPE_LINK and ifa.scope <= scope:
                    return ifa.local
        return 0

    def source_address(self, dst: int) -> int:
        """The source address of a packet the host sends to `dst` without
        binding (what `ip route get DST` shows as src); 0 when unroutable."""
        return self.output_route(dst).src

    # ------------------------------------------------------------ output routing
    def output_route(self, dst: int, src: int = 0, oif: str | None = None) -> RouteResult:
        """ip_route_output_key for a locally generated packet (`ip route get
        DST [from SRC] [oif DEV]`)."""
        if src:
            if _is_multicast(src) or src == INADDR_BROADCAST or _is_zeronet(src):
                return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.EINVAL, reason="bad source address")
            if oif is None and (_is_multicast(dst) or dst == INADDR_BROADCAST):
                dev = self._dev_of_local(src)
                if dev is None:
                    return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.EINVAL, reason="source not local")
                return self._mkroute_output(None, dst, src, dev)
            if not self.is_local(src):
                return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.ENETUNREACH, reason="source not local")
        if oif is not None:
            if oif not in self.interfaces:
                return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.ENODEV, reason=f"no device {oif}")
            if _is_local_multicast(dst) or dst == INADDR_BROADCAST:
                return self._mkroute_output(None, dst, src or self.select_addr(oif, 0, RT_SCOPE_LINK), oif)
            if not src:
                if _is_multicast(dst):
                    src = self.select_addr(oif, 0, RT_SCOPE_UNIVERSE)
                elif not dst:
                    src = self.select_addr(oif, 0, RT_SCOPE_HOST)
        if not dst:
            dst = src or INADDR_LOOPBACK
            src = src or INADDR_LOOPBACK
            return RouteResult(RTN_LOCAL, LOOPBACK, dst, src)
        res = self._merged.lookup(dst, oif)
        if res is None:
            if oif is not None:
                # "Assume that the destination is on link."
                return self._mkroute_output(None, dst, src or self.select_addr(oif, 0, RT_SCOPE_LINK), oif)
            return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.ENETUNREACH, reason="no route")
        if res.type == RTN_LOCAL:
            if not src:
                src = res.fib_prefsrc or dst
            return RouteResult(RTN_LOCAL, LOOPBACK, dst, src, route=res)
        if res.type in (RTN_UNREACHABLE, RTN_BLACKHOLE, RTN_PROHIBIT, RTN_THROW):
            err = {RTN_UNREACHABLE: errno.EHOSTUNREACH, RTN_BLACKHOLE: errno.EINVAL,
                   RTN_PROHIBIT: errno.EACCES, RTN_THROW: errno.EAGAIN}[res.type]
            return RouteResult(res.type, "", dst, src, route=res, error=err, reason=RTN_NAMES[res.type])
        if not src:
            src = res.prefsrc
        return self._mkroute_output(res, dst, src, res.dev)

    def _mkroute_output(self, res: Route | None, dst: int, src: int, dev: str) -> RouteResult:
        if _is_loopback(src) and dev != LOOPBACK and not self.conf(dev, "route_localnet"):
            return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.EINVAL, reason="loopback source")
        rtype = res.type if res is not None else RTN_UNICAST
        use_fi = res is not None
        if dst == INADDR_BROADCAST:
            rtype = RTN_BROADCAST
        elif _is_multicast(dst):
            rtype = RTN_MULTICAST
        if rtype == RTN_BROADCAST:
            use_fi = False
        elif rtype == RTN_MULTICAST and res is not None and res.prefixlen < 4:
            use_fi = False  # the default route does not lend its gateway to multicast
        gw = res.gateway if use_fi and res is not None and res.uses_gateway else None
        return RouteResult(rtype, dev, dst, src, gw, res)

    def _dev_of_local(self, addr: int) -> str | None:
        for iface in self.interfaces.values():
            for ifa in iface.ifaddrs:
                if ifa.local == addr:
                    return iface.name
        r = self._merged.lookup(addr)
        if r is not None and r.type == RTN_LOCAL:
            return r.dev
        return None

    # ------------------------------------------------------------ input routing
    def input_route(self, src: int, dst: int, iif: str, proto: int = 0) -> RouteResult:
        """ip_route_input for a packet arriving on `iif` (`ip route get DST
        from SRC iif IIF`): local delivery, forwarding, no route, or a
        martian (error EINVAL) / rp_filter drop (EXDEV)."""
        flags = self._iif_flags.get(iif)
        if flags is None:
            if iif not in self.interfaces:
                return RouteResult(RTN_UNSPEC, "", dst, src, error=errno.ENODEV, reason=f"no device {iif}")
            flags = self._iif_flags[iif] = (bool(self.conf(iif, "route_localnet")),
                                            bool(self.conf(iif, "forwarding")))
        # (the address-class tests written out: _is_multicast, _is_zeronet
        # and _is_loopback, in the kernel's order)
        if dst >> 28 == 0xE:
            return self._input_mc(src, dst, iif, proto)
        if src >> 28 == 0xE or src == INADDR_BROADCAST:
            return self._martian(dst, src, "martian source")
        if dst == INADDR_BROADCAST or (src == 0 and dst == 0):
            return self._brd_input(src, dst, iif)
        if src == 0:
            return self._martian(dst, src, "martian source")
        if dst == 0:
            return self._martian(dst, src, "martian destination")
        localnet, forwarding = flags
        if dst >> 24 == 127:
            if not localnet:
                return self._martian(dst, src, "martian destination")
        elif src >> 24 == 127 and not localnet:
            return self._martian(dst, src, "martian source")
        res = self._merged.lookup(dst)
        if res is None:
            err = errno.ENETUNREACH if forwarding else errno.EHOSTUNREACH
            return RouteResult(RTN_UNREACHABLE, LOOPBACK, dst, src, error=err, reason="no route")
        if res.type == RTN_BROADCAST:
            if self.conf(iif, "bc_forwarding"):
                return self._mkroute_input(res, src, dst, iif)
            return self._brd_input(src, dst, iif)
        if res.type == RTN_LOCAL:
            v = self.validate_source(src, dst, iif, oif=None)
            if v < 0:
                return self._martian(dst, src, "martian source" if v == -errno.EINVAL else "rp_filter", -v)
            return RouteResult(RTN_LOCAL, LOOPBACK, dst, src, route=res)
        if not forwarding:
            return RouteResult(RTN_UNREACHABLE, LOOPBACK, dst, src, route=res, error=errno.EHOSTUNREACH,
                               reason="forwarding disabled")
        if res.type != RTN_UNICAST:
            if res.type in (RTN_UNREACHABLE, RTN_PROHIBIT, RTN_BLACKHOLE):
                err = {RTN_UNREACHABLE: errno.EHOSTUNREACH, RTN_PROHIBIT: errno.EACCES,
                       RTN_BLACKHOLE: errno.EINVAL}[res.type]
                return RouteResult(res.type, LOOPBACK, dst, src, route=res, error=err, reason=RTN_NAMES[res.type])
            return self._martian(dst, src, "martian destination")
        return self._mkroute_input(res, src, dst, iif)

    def _martian(self, dst: int, src: int, reason: str, err: int = errno.EINVAL) -> RouteResult:
        return RouteResult(RTN_UNSPEC, "", dst, src, error=err, reason=reason)

    def _brd_input(self, src: int, dst: int, iif: str) -> RouteResult:
        if src:
            v = self.validate_source(src, 0, iif, oif=None)
            if v < 0:
                return self._martian(dst, src, "martian source" if v == -errno.EINVAL else "rp_filter", -v)
        return RouteResult(RTN_BROADCAST, LOOPBACK, dst, src)

    def _input_mc(self, src: int, dst: int, iif: str, proto: int) -> RouteResult:
        # Every interface is a member of 224.0.0.1 only; pyfw models no
        # multicast routing, so other groups are not for this host.
        if dst != IGMP_ALL_HOSTS:
            return self._martian(dst, src, "not a member of the group")
        if _is_multicast(src) or src == INADDR_BROADCAST:
            return self._martian(dst, src, "martian source")
        if _is_loopback(src) and not self.conf(iif, "route_localnet"):
            return self._martian(dst, src, "martian source")
        if _is_zeronet(src):
            if not _is_local_multicast(dst) and proto != IPPROTO_IGMP:
                return self._martian(dst, src, "martian source")
        else:
            v = self.validate_source(src, 0, iif, oif=None)
            if v < 0:
                return self._martian(dst, src, "martian source" if v == -errno.EINVAL else "rp_filter", -v)
        return RouteResult(RTN_MULTICAST, LOOPBACK, dst, src)

    def _mkroute_input(self, res: Route, src: int, dst: int, iif: str) -> RouteResult:
        key = (src, iif, res.dev)
        v = self._valid_src.get(key)
        if v is None:
            # (its answer does not depend on the destination)
            v = self.validate_source(src, dst, iif, oif=res.dev)
            if len(self._valid_src) > 65536:
                self._valid_src.clear()
            self._valid_src[key] = v
        if v < 0:
            return self._martian(dst, src, "martian source" if v == -errno.EINVAL else "rp_filter", -v)
        redirect = False
        if res.dev == iif and v and self.conf(iif, "send_redirects"):
            gw = (res.gateway or 0) if res.uses_gateway else 0
            redirect = bool(self.conf(iif, "shared_media")) or self._onlink(iif, src, gw)
        gw_used = res.gateway if res.uses_gateway and res.type == RTN_UNICAST else None
        return _forward_route(res.type, res.dev, dst, src, gw_used, res, redirect)

    def _onlink(self, dev: str, a: int, b: int) -> bool:
        """inet_addr_onlink: `a` (and `b` when set) in one subnet of `dev`."""
        iface = self.interfaces.get(dev)
        if iface is None:
            return False
        for ifa in iface.ifaddrs:
            if ifa.contains(a) and (not b or ifa.contains(b)):
                return True
        return False

    def validate_source(self, src: int, dst: int, iif: str, oif: str | None) -> int:
        """fib_validate_source: <0 (-EINVAL: a local or non-unicast source,
        -EXDEV: rp_filter) or 0/1 (1 when the reverse route is on-link,
        which makes a forward back out the same link worth a redirect)."""
        rpf = self.conf(iif, "rp_filter")
        accept_local = bool(self.conf(iif, "accept_local"))
        if not rpf and (oif != iif or not self.conf(iif, "send_redirects")):
            if accept_local:
                return 0
            if src in self._ifaddr_set:
                return -errno.EINVAL
            return 0
        res = self._merged.lookup(src)
        if res is None:
            return -errno.EXDEV if rpf else 0
        if res.type != RTN_UNICAST and (res.type != RTN_LOCAL or not accept_local):
            return -errno.EINVAL
        if res.dev == iif or (res.type == RTN_LOCAL and iif == LOOPBACK):
            return 1 if res.nh_scope >= RT_SCOPE_HOST else 0
        iface = self.interfaces[iif]
        if not iface.ifaddrs:
            return -errno.EXDEV if rpf else 0
        if rpf == 1:
            return -errno.EXDEV
        res2 = self._merged.lookup(src, oif=iif)
        if res2 is not None and res2.type == RTN_UNICAST:
            return 1 if res2.nh_scope >= RT_SCOPE_HOST else 0
        return 0

    # ------------------------------------------------------------ text
    def describe_routes(self, table: str = "main") -> list[str]:
        """`ip route show [table local]`-like lines (for messages and tests)."""
        routes = self.local_routes if table == "local" else self.routes
        return [str(r) for r in routes]


def _proto_number(proto: int | str) -> int | None:
    if isinstance(proto, int):
        return proto
    return {"tcp": 6, "udp": 17}.get(proto.lower())


def _sysctl_dev(dev: str) -> str:
    """Device names with dots are written with slashes in sysctl names."""
    return dev.replace(".", "/")


# ---------------------------------------------------------------- loading
_TOP_KEYS = ("host", "interface", "route", "neighbor", "service", "sysctl")
_HOST_KEYS = ("name",)
_IFACE_KEYS = ("name", "mac", "addresses", "mtu", "bridge", "tap")
_ROUTE_KEYS = ("to", "via", "dev", "metric")
_NEIGH_KEYS = ("ip", "mac", "dev")
_SERVICE_KEYS = ("proto", "port", "address")


class _Ctx:
    """Error wording: `SOURCE: WHERE: problem`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, where: str, problem: str) -> HostError:
        text = f"{where}: {problem}" if where else problem
        return HostError(f"{self.source}: {text}", self.source, text)

    def check_keys(self, where: str, table: Mapping[str, Any], allowed: tuple[str, ...],
                   required: tuple[str, ...] = ()) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known keys: {', '.join(allowed)})"
                raise self.err(where, f"unknown key '{key}'{extra}")
        for key in required:
            if key not in table:
                raise self.err(where, f"missing required key '{key}'")

    def string(self, where: str, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.err(where, f"'{key}' must be a string, not {_tname(value)}")
        return value

    def integer(self, where: str, key: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(where, f"'{key}' must be an integer, not {_tname(value)}")
        if not lo <= value <= hi:
            raise self.err(where, f"'{key}' = {value} is out of range ({lo}..{hi})")
        return value

    def address(self, where: str, key: str, value: Any) -> int:
        text = self.string(where, key, value)
        try:
            return ip_int(text)
        except ValueError:
            raise self.err(where, f"'{key}' = {text!r} is not an IPv4 address") from None

    def mac(self, where: str, key: str, value: Any) -> bytes:
        text = self.string(where, key, value)
        parts = text.replace("-", ":").split(":")
        try:
            if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
                raise ValueError
            return bytes(int(p, 16) for p in parts)
        except ValueError:
            raise self.err(where, f"'{key}' = {text!r} is not a MAC address (like 02:00:00:00:00:01)") from None


def _label(kind: str, index: int, name: Any) -> str:
    """`interface[2] (eth1)`: the table's position, and its name when it has one."""
    return f"{kind}[{index}] ({name})" if isinstance(name, (str, int)) and not isinstance(name, bool) else (
        f"{kind}[{index}]")


def _tname(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _valid_ifname(name: str) -> str | None:
    """dev_valid_name's rules, as a problem or None."""
    if not name:
        return "an interface name cannot be empty"
    if len(name) >= IFNAMSIZ:
        return f"interface name {name!r} is longer than {IFNAMSIZ - 1} characters"
    if name in (".", ".."):
        return f"{name!r} is not a valid interface name"
    for ch in name:
        if ch == "/" or ch == ":" or ch.isspace():
            return f"interface name {name!r} contains {ch!r}"
    return None


def load_host(path: str | os.PathLike[str]) -> Host:
    """Read and check HOST.toml."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise HostError(f"{source}: cannot read: {exc.strerror or exc}", source,
                        f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HostError(f"{source}: not UTF-8 text: {exc}", source, f"not UTF-8 text: {exc}") from exc
    return parse_host(text, source)


def parse_host(text: str, source: str = "HOST.toml") -> Host:
    """Parse HOST.toml text (`source` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HostError(f"{source}: TOML syntax error: {exc}", source, f"TOML syntax error: {exc}") from exc
    return host_from_dict(data, source)


def _tables(ctx: _Ctx, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, dict):
        raise ctx.err("", f"'{key}' must be an array of tables ([[{key}]]), not a single table ([{key}])")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ctx.err("", f"'{key}' must be an array of tables ([[{key}]])")
    return value


def _parse_prefix(ctx: _Ctx, where: str, key: str, value: Any, strict: bool) -> tuple[int, int]:
    text = ctx.string(where, key, value)
    addr_text, sep, len_text = text.partition("/")
    try:
        addr = ip_int(addr_text)
    except ValueError:
        raise ctx.err(where, f"'{key}' = {text!r} is not an IPv4 address with a prefix length") from None
    if sep:
        if not len_text.isdigit() or int(len_text) > 32:
            raise ctx.err(where, f"'{key}' = {text!r}: bad prefix length {len_text!r}")
        plen = int(len_text)
    else:
        plen = 32
    if strict and addr & ~_MASKS[plen] & 0xFFFFFFFF:
        raise ctx.err(where, f"'{key}' = {text!r}: invalid prefix for given prefix length (host bits set)")
    return addr, plen


def host_from_dict(data: Mapping[str, Any], source: str = "HOST.toml") -> Host:
    """Build a Host from parsed TOML (see the module doc for what is derived)."""
    ctx = _Ctx(source)
    ctx.check_keys("top level", data, _TOP_KEYS)

    # [host]
    host_table = data.get("host", {})
    if not isinstance(host_table, dict):
        raise ctx.err("", "'host' must be a table ([host])")
    ctx.check_keys("[host]", host_table, _HOST_KEYS)
    name = ctx.string("[host]", "name", host_table["name"]) if "name" in host_table else "localhost"

    # [[interface]]
    ifaces: dict[str, Interface] = {
        LOOPBACK: Interface(LOOPBACK, b"\0" * 6, [(INADDR_LOOPBACK, 8)], mtu=65536, index=1),
    }
    lo_given = False
    for i, t in enumerate(_tables(ctx, data, "interface"), 1):
        where = _label("interface", i, t.get("name"))
        ctx.check_keys(where, t, _IFACE_KEYS, ("name",))
        iname = ctx.string(where, "name", t["name"])
        problem = _valid_ifname(iname)
        if problem:
            raise ctx.err(where, problem)
        if iname == "local":
            raise ctx.err(where, "'local' is reserved: `pyfw simulate` reads frames on an interface of that "
                                 "name as sent by the host itself")
        is_lo = iname == LOOPBACK
        if iname in ifaces and not (is_lo and not lo_given):
            raise ctx.err(where, f"interface {iname!r} is described twice")
        if "mac" in t:
            mac = ctx.mac(where, "mac", t["mac"])
            if not is_lo and (mac[0] & 1 or mac == b"\0" * 6):
                raise ctx.err(where, f"'mac' = {t['mac']!r} is not a unicast address")
        else:
            mac = b"\0" * 6 if is_lo else derive_mac(iname)
        addrs_raw = t.get("addresses", [])
        if not isinstance(addrs_raw, list):
            raise ctx.err(where, f"'addresses' must be an array of strings, not {_tname(addrs_raw)}")
        addrs: list[tuple[int, int]] = []
        for a in addrs_raw:
            addr, plen = _parse_prefix(ctx, where, "addresses", a, strict=False)
            if _is_zeronet(addr) or _is_multicast(addr) or addr == INADDR_BROADCAST:
                raise ctx.err(where, f"'addresses': {a!r} cannot be an interface address")
            addrs.append((addr, plen))
        mtu = ctx.integer(where, "mtu", t["mtu"], 68, 65536 if is_lo else 65535) if "mtu" in t else (
            65536 if is_lo else 1500)
        bridge = ctx.string(where, "bridge", t["bridge"]) if "bridge" in t else None
        tap = ctx.string(where, "tap", t["tap"]) if "tap" in t else None
        if is_lo and (bridge is not None or tap is not None):
            raise ctx.err(where, "'lo' is the host's loopback: it has no TAP device or bridge")
        if tap is not None and (problem := _valid_ifname(tap)):
            raise ctx.err(where, f"'tap': {problem}")
        if bridge is not None and (problem := _valid_ifname(bridge)):
            raise ctx.err(where, f"'bridge': {problem}")
        if is_lo:
            lo_given = True
            lo = ifaces[LOOPBACK]
            lo.mac = mac
            lo.mtu = mtu
            lo.addresses = [(INADDR_LOOPBACK, 8)] + [a for a in addrs if a != (INADDR_LOOPBACK, 8)]
        else:
            ifaces[iname] = Interface(iname, mac, addrs, mtu, bridge, tap, index=len(ifaces) + 1)
    taps: dict[str, str] = {}
    for iface in ifaces.values():
        if iface.name != LOOPBACK:
            other = taps.setdefault(iface.tap_name, iface.name)
            if other != iface.name:
                raise ctx.err(f"interface {iface.name}", f"TAP name {iface.tap_name!r} is also {other}'s")

    # addresses in kernel order, with the routes they imply
    local_routes: list[Route] = []
    main: list[Route] = []
    for iface in ifaces.values():
        where = f"interface {iface.name}"
        scope_lo = iface.name == LOOPBACK
        for addr, plen in iface.addresses:
            scope = RT_SCOPE_HOST if _is_loopback(addr) else RT_SCOPE_UNIVERSE
            new = IfAddr(addr, plen, iface.name, scope)
            secondary = False
            last_primary = 0
            for k, old in enumerate(iface.ifaddrs):
                if not old.secondary and new.scope <= old.scope:
                    last_primary = k + 1
                if old.prefixlen == plen and new.contains(old.local):
                    if old.local == addr:
                        raise ctx.err(where, f"address {new} is given twice")
                    if old.scope != new.scope:
                        raise ctx.err(where, f"address {new} has another scope than {old} in its subnet")
                    secondary = True
            if secondary:
                iface.ifaddrs.append(IfAddr(addr, plen, iface.name, scope, True))
            else:
                iface.ifaddrs.insert(last_primary, new)
            prim = new if not secondary else next(
                o for o in iface.ifaddrs if not o.secondary and o.prefixlen == plen and o.contains(addr))
            # fib_add_ifaddr
            local_routes.append(Route(iface.name, None, prim.local, addr, 32, 0, RTN_LOCAL, RT_SCOPE_HOST,
                                      "kernel", RT_TABLE_LOCAL, RT_SCOPE_HOST, prim.local))
            prefix = addr & _MASKS[plen]
            if not secondary and not _is_zeronet(prefix) and (prefix != addr or plen < 32):
                if scope_lo:
                    local_routes.append(Route(iface.name, None, prim.local, prefix, plen, 0, RTN_LOCAL,
                                              RT_SCOPE_HOST, "kernel", RT_TABLE_LOCAL, RT_SCOPE_HOST, prim.local))
                else:
                    main.append(Route(iface.name, None, prim.local, prefix, plen, 0, RTN_UNICAST, RT_SCOPE_LINK,
                                      "kernel", RT_TABLE_MAIN, RT_SCOPE_HOST, prim.local))
                if plen < 31:
                    bcast = prefix | (~_MASKS[plen] & 0xFFFFFFFF)
                    local_routes.append(Route(iface.name, None, prim.local, bcast, 32, 0, RTN_BROADCAST,
                                              RT_SCOPE_LINK, "kernel", RT_TABLE_LOCAL, RT_SCOPE_HOST, prim.local))

    # [sysctl] before routes and services: route_localnet and
    # ip_nonlocal_bind change what they accept.
    sysctl = _build_sysctl(ctx, data.get("sysctl", {}), ifaces)

    host = Host(name, ifaces, main, [], [], sysctl, local_routes, source)

    # [[route]], added in file order as `ip route add` would
    for i, t in enumerate(_tables(ctx, data, "route"), 1):
        where = _label("route", i, t.get("to"))
        ctx.check_keys(where, t, _ROUTE_KEYS, ("to",))
        to = t["to"]
        if to == "default":
            dst, plen = 0, 0
        else:
            dst, plen = _parse_prefix(ctx, where, "to", to, strict=True)
        gw = ctx.address(where, "via", t["via"]) if "via" in t else None
        if gw is not None and (gw == 0 or _is_multicast(gw) or gw == INADDR_BROADCAST):
            raise ctx.err(where, f"'via' = {t['via']!r} cannot be a gateway")
        dev = ctx.string(where, "dev", t["dev"]) if "dev" in t else None
        if dev is not None and dev not in ifaces:
            raise ctx.err(where, f"'dev' = {dev!r}: no such interface (known: {', '.join(ifaces)})")
        if dev is None and gw is None:
            raise ctx.err(where, "missing required key 'dev' (a route without 'via' needs one)")
        metric = ctx.integer(where, "metric", t["metric"], 0, 0xFFFFFFFF) if "metric" in t else 0
        nh_scope = RT_SCOPE_HOST
        if gw is not None:
            # fib_check_nh: the gateway must be on link (a route in scope link)
            gres = host.fib_lookup(gw, dev, RT_SCOPE_LINK)
            if gres is None or gres.type not in (RTN_UNICAST, RTN_LOCAL):
                on = f" on {dev}" if dev else ""
                raise ctx.err(where, f"gateway {ip_str(gw)} is not reachable{on} (no connected or on-link "
                                     "route covers it: Nexthop has invalid gateway)")
            dev = gres.dev
            nh_scope = gres.scope
        assert dev is not None
        scope = RT_SCOPE_UNIVERSE if gw is not None else RT_SCOPE_LINK
        iface = ifaces[dev]
        prefsrc = host.select_addr(iface.name, gw or 0, scope)
        route = Route(dev, gw, prefsrc, dst, plen, metric, RTN_UNICAST, scope, "boot", RT_TABLE_MAIN, nh_scope)
        clash = next((r for r in main if r.dst == dst and r.prefixlen == plen and r.metric == metric), None)
        if clash is not None:
            if clash.proto == "kernel" and clash.dev == dev and gw is None:
                continue  # the connected route, spelled out
            raise ctx.err(where, f"a route to {'default' if not plen else f'{ip_str(dst)}/{plen}'} with metric "
                                 f"{metric} already exists ({clash}): RTNETLINK answers: File exists")
        main.append(route)
        host._reindex()

    # prefsrc of the kernel routes is configured; nothing more to resolve.
    # [[neighbor]]
    neighbors: list[Neighbor] = []
    seen: set[tuple[str, int]] = set()
    for i, t in enumerate(_tables(ctx, data, "neighbor"), 1):
        where = _label("neighbor", i, t.get("ip"))
        ctx.check_keys(where, t, _NEIGH_KEYS, ("ip", "mac"))
        ip = ctx.address(where, "ip", t["ip"])
        mac = ctx.mac(where, "mac", t["mac"])
        if "dev" in t:
            ndev = ctx.string(where, "dev", t["dev"])
            if ndev not in ifaces:
                raise ctx.err(where, f"'dev' = {ndev!r}: no such interface (known: {', '.join(ifaces)})")
        else:
            r = host.fib_lookup(ip, None, RT_SCOPE_LINK)
            if r is None or r.type != RTN_UNICAST:
                raise ctx.err(where, f"missing 'dev': {ip_str(ip)} is on no connected subnet")
            ndev = r.dev
        if (ndev, ip) in seen:
            raise ctx.err(where, f"neighbour {ip_str(ip)} on {ndev} is given twice")
        seen.add((ndev, ip))
        neighbors.append(Neighbor(ip, mac, ndev))

    # [[service]]
    services: list[Service] = []
    nonlocal_bind = bool(sysctl.get("net.ipv4.ip_nonlocal_bind", 0))
    for i, t in enumerate(_tables(ctx, data, "service"), 1):
        label = f"{t['proto']}/{t['port']}" if isinstance(t.get("proto"), str) and "port" in t else None
        where = _label("service", i, label)
        ctx.check_keys(where, t, _SERVICE_KEYS, ("proto", "port"))
        ptext = ctx.string(where, "proto", t["proto"])
        proto = _proto_number(ptext)
        if proto is None:
            raise ctx.err(where, f"'proto' = {ptext!r}: must be \"tcp\" or \"udp\"")
        port = ctx.integer(where, "port", t["port"], 1, 65535)
        address: int | None = None
        if "address" in t:
            address = ctx.address(where, "address", t["address"])
            if address == 0:
                address = None
            elif not nonlocal_bind and not host.is_local(address):
                raise ctx.err(where, f"'address' = {t['address']!r} is not an address of this host "
                                     "(bind would fail: Cannot assign requested address)")
        services.append(Service(proto, port, address))

    host.neighbors = neighbors
    host.services = services
    host._reindex()
    return host


# ---------------------------------------------------------------- [sysctl]
def _flatten(prefix: str, table: Mapping[str, Any], out: list[tuple[str, Any]]) -> None:
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(name, value, out)
        else:
            out.append((name, value))


def _normalize_sysctl_name(name: str) -> str:
    """`sysctl` accepts net/ipv4/ip_forward too: then dots are part of
    names (eth0.100) and slashes separate."""
    if "/" in name and ("." not in name or name.index("/") < name.index(".")):
        return name.replace(".", "\0").replace("/", ".").replace("\0", "/")
    return name


def _sysctl_value(ctx: _Ctx, name: str, value: Any, default: Any) -> Any:
    where = f"[sysctl] {name}"
    if isinstance(default, tuple):
        if isinstance(value, str):
            parts = value.split()
        elif isinstance(value, list):
            parts = value
        else:
            raise ctx.err(where, f"must be two integers (\"{default[0]} {default[1]}\" or [{default[0]}, "
                                 f"{default[1]}]), not {_tname(value)}")
        try:
            if len(parts) != 2 or any(isinstance(p, bool) for p in parts):
                raise ValueError
            pair = (int(parts[0]), int(parts[1]))
        except (ValueError, TypeError):
            raise ctx.err(where, f"must be two integers, not {value!r}") from None
        if name == "net.ipv4.ip_local_port_range" and not (1 <= pair[0] <= pair[1] <= 65535):
            raise ctx.err(where, f"{pair[0]} {pair[1]} is not a port range (low <= high, 1..65535)")
        return pair
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise ctx.err(where, f"must be an integer, not {_tname(value)} ({value!r})")
    lo, hi = _SYSCTL_RANGES.get(name, (-(2**31), 2**31 - 1))
    if not lo <= value <= hi:
        raise ctx.err(where, f"{value} is out of range ({lo}..{hi})")
    return value


def _build_sysctl(ctx: _Ctx, table: Any, ifaces: Mapping[str, Interface]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ctx.err("", "'sysctl' must be a table ([sysctl])")
    items: list[tuple[str, Any]] = []
    _flatten("", table, items)
    result: dict[str, Any] = dict(SYSCTL_DEFAULTS)
    conf_all = {k: v[0] for k, v in DEVCONF_DEFAULTS.items()}
    conf_dflt = {k: v[1] for k, v in DEVCONF_DEFAULTS.items()}
    explicit: dict[str, dict[str, int]] = {name: {} for name in ifaces}
    explicit[LOOPBACK].update(_LO_DEVCONF)
    by_sysctl_name = {_sysctl_dev(n): n for n in ifaces}
    others: dict[str, Any] = {}
    for raw_name, value in items:
        name = _normalize_sysctl_name(raw_name)
        where = f"[sysctl] {name}"
        if name in _SYSCTL_READONLY:
            raise ctx.err(where, "is read-only")
        if name.startswith("net.ipv4.conf."):
            rest = name[len("net.ipv4.conf."):]
            devpart, dot, key = rest.rpartition(".")
            if not dot or not devpart:
                others[name] = value
                continue
            if key in DEVCONF_DEFAULTS:
                if key in _DEVCONF_READONLY:
                    raise ctx.err(where, "is read-only")
                v = _sysctl_value(ctx, name, value, 0)
                lo, hi = _DEVCONF_RANGES.get(key, (-(2**31), 2**31 - 1))
                if not lo <= v <= hi:
                    raise ctx.err(where, f"{v} is out of range ({lo}..{hi})")
                if devpart == "all":
                    if key == "forwarding":
                        _set_forwarding(v, conf_all, conf_dflt, explicit)
                    else:
                        conf_all[key] = v
                elif devpart == "default":
                    conf_dflt[key] = v
                elif devpart in by_sysctl_name:
                    explicit[by_sysctl_name[devpart]][key] = v
                else:
                    raise ctx.err(where, f"no interface {devpart.replace('/', '.')!r} on this host "
                                         f"(known: {', '.join(ifaces)})")
                continue
            others[name] = value
            continue
        if name == "net.ipv4.ip_forward":
            v = _sysctl_value(ctx, name, value, 0)
            _set_forwarding(v, conf_all, conf_dflt, explicit)
            continue
        if name in SYSCTL_DEFAULTS:
            result[name] = _sysctl_value(ctx, name, value, SYSCTL_DEFAULTS[name])
            continue
        others[name] = value
    for key, v in conf_all.items():
        result[f"net.ipv4.conf.all.{key}"] = v
    for key, v in conf_dflt.items():
        result[f"net.ipv4.conf.default.{key}"] = v
    for dev, own in explicit.items():
        # conf.default.* reaches a device only while it has no address
        # (adding one marks every value as set); lo has 127.0.0.1 before any
        # sysctl is applied, so it keeps the namespace's defaults.
        base = {k: v[1] for k, v in DEVCONF_DEFAULTS.items()} if dev == LOOPBACK else conf_dflt
        for key in DEVCONF_DEFAULTS:
            result[f"net.ipv4.conf.{_sysctl_dev(dev)}.{key}"] = own.get(key, base[key])
    result["net.ipv4.ip_forward"] = conf_all["forwarding"]
    result.update(others)
    return result


def _set_forwarding(v: int, conf_all: dict[str, int], conf_dflt: dict[str, int],
                    explicit: dict[str, dict[str, int]]) -> None:
    """Writing ip_forward (= conf.all.forwarding) sets it on the default and
    on every device, and turns conf.all.accept_redirects the other way
    (inet_forward_change)."""
    conf_all["forwarding"] = v
    conf_all["accept_redirects"] = int(not v)
    conf_dflt["forwarding"] = v
    for own in explicit.values():
        own["forwarding"] = v
