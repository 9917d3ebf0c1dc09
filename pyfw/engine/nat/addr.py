"""Which local address MASQUERADE and REDIRECT use (inet_select_addr and
the head of an interface's ifa_list), from the host description.

Linux keeps an interface's addresses in `ifa_list`: primaries in the order
they were added (a primary goes behind the last primary of the same or a
wider scope), then secondaries (an address inside the subnet of an earlier
primary with the same prefix length).  127.0.0.0/8 addresses have host
scope, the others universe scope, as `ip addr add` gives them.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from pyfw.engine.host import Host

RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_HOST: Final = 254


class Ifa(NamedTuple):
    local: int
    prefixlen: int
    scope: int
    secondary: bool


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


def _to_int(addr: Any) -> int:
    if isinstance(addr, int):
        return addr
    parts = str(addr).split(".")
    return int(parts[0]) << 24 | int(parts[1]) << 16 | int(parts[2]) << 8 | int(parts[3])


def _parse(entry: Any) -> tuple[int, int]:
    """(addr, prefixlen) from a host description entry: a pair, an
    "a.b.c.d/len" text, or an object with address/prefixlen fields."""
    if isinstance(entry, (tuple, list)):
        return _to_int(entry[0]), int(entry[1])
    if isinstance(entry, str):
        addr, _, plen = entry.partition("/")
        return _to_int(addr), int(plen or 32)
    for a, p in (("addr", "prefixlen"), ("address", "prefixlen"), ("ip", "plen")):
        if hasattr(entry, a) and hasattr(entry, p):
            return _to_int(getattr(entry, a)), int(getattr(entry, p))
    raise TypeError(f"cannot read an address from {entry!r}")


def _interfaces(host: Any) -> dict[str, Any]:
    ifaces = getattr(host, "interfaces", None) or {}
    if isinstance(ifaces, dict):
        return ifaces
    return {i.name: i for i in ifaces}


def configured(host: Any, name: str) -> list[tuple[int, int]]:
    """The interface's addresses in the order the host description gives."""
    iface = _interfaces(host).get(name)
    if iface is None:
        return []
    addrs = iface.get("addresses", []) if isinstance(iface, dict) else getattr(iface, "addresses", [])
    out = [_parse(a) for a in addrs or ()]
    if name == "lo" and not any(a == 0x7F000001 for a, _ in out):
        out.insert(0, (0x7F000001, 8))  # "127.0.0.1/8 is always local"
    return out


def ifa_list(addrs: list[tuple[int, int]]) -> list[Ifa]:
    """__inet_insert_ifa applied in order: the kernel's list order."""
    lst: list[Ifa] = []
    for local, plen in addrs:
        scope = RT_SCOPE_HOST if local >> 24 == 127 else RT_SCOPE_UNIVERSE
        mask = _mask(plen)
        secondary = False
        last_primary = 0
        for i, ifa in enumerate(lst):
            if not ifa.secondary and ifa.scope <= scope:
                last_primary = i + 1
            if ifa.prefixlen == plen and (ifa.local & mask) == (local & mask):
                if ifa.local == local:
                    break  # the same address twice: the kernel refuses it
                secondary = True
        else:
            new = Ifa(local, plen, scope, secondary)
            if secondary:
                lst.append(new)
            else:
                lst.insert(last_primary, new)
    return lst


def first_address(host: Any, name: str) -> int:
    """ifa_list's head (REDIRECT in PREROUTING); 0 when none."""
    iface = _interfaces(host).get(name)
    kernel_order = getattr(iface, "ifaddrs", None)
    if kernel_order is not None:  # pyfw.engine.host keeps the kernel's list
        return int(kernel_order[0].local) if kernel_order else 0
    lst = ifa_list(configured(host, name))
    return lst[0].local if lst else 0


def _select_on(lst: list[Ifa], scope: int) -> int:
    for ifa in lst:
        if not ifa.secondary and min(ifa.scope, RT_SCOPE_HOST) <= scope:
            return ifa.local
    return 0


def select_address(host: Any, dev: str, dst: int, scope: int = RT_SCOPE_UNIVERSE) -> int:
    """inet_select_addr(dev, dst, scope): the first primary of `dev` on
    dst's subnet, else its first primary, else the first usable primary of
    any interface (lo first, then in order); 0 when there is none."""
    own = getattr(host, "select_addr", None)
    if own is not None:  # pyfw.engine.host's inet_select_addr (route_localnet too)
        return int(own(dev, dst, scope))
    addr = 0
    for ifa in ifa_list(configured(host, dev)):
        if ifa.secondary or min(ifa.scope, RT_SCOPE_HOST) > scope:
            continue
        if not dst or (dst & _mask(ifa.prefixlen)) == (ifa.local & _mask(ifa.prefixlen)):
            return ifa.local
        if not addr:
            addr = ifa.local
    if addr:
        return addr
    names = list(_interfaces(host))
    if "lo" in names:
        names.remove("lo")
    for name in ["lo", *names]:
        addr = _select_on(ifa_list(configured(host, name)), scope)
        if addr:
            return addr
    return 0


def nexthop(host: Any, dst: int) -> int:
    """rt_nexthop: the route's gateway for dst, else dst itself."""
    if type(host) is Host:
        r = host.route(dst)
        return dst if r is None else r.next_hop(dst)
    route_fn = getattr(host, "route", None)
    if route_fn is None:
        return dst
    try:
        route = route_fn(dst)
    except Exception:  # a host without routes for it: on-link
        return dst
    if route is None:
        return dst
    next_hop = getattr(route, "next_hop", None)
    if callable(next_hop):
        return int(next_hop(dst))
    for attr in ("via", "gateway", "gw"):
        gw = getattr(route, attr, None)
        if gw:
            return _to_int(gw)
    return dst
