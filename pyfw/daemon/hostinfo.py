"""The machine's own interfaces, addresses and routes as a pyfw Host.

Read once at start from `ip -j` (iproute2's JSON), so the engine's routing
answers agree with the kernel's, which forwards what the engine accepts.
Connected and local routes are left out: Host derives them from the
addresses exactly as the kernel does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pyfw.engine.host import Host, host_from_dict

# sysctls the engine consults that a live machine may have changed
_SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
            "net.ipv4.icmp_echo_ignore_all", "net.ipv4.icmp_echo_ignore_broadcasts",
            "net.netfilter.nf_conntrack_max")


def _ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def _read_sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys", *name.split(".")).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def host_dict(links: list[dict[str, Any]], routes: list[dict[str, Any]],
              sysctls: dict[str, int]) -> dict[str, Any]:
    """The HOST.toml-shaped description of `ip -j -4 addr` and `ip -j -4 route` output."""
    ifaces = []
    names = set()
    for link in links:
        name = link.get("ifname")
        if not name:
            continue
        names.add(name)
        entry: dict[str, Any] = {"name": name}
        mac = link.get("address")
        if link.get("link_type") == "ether" and isinstance(mac, str) and len(mac) == 17:
            entry["mac"] = mac
        if name == "lo":
            entry["mac"] = "00:00:00:00:00:00"
        entry["addresses"] = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                              if a.get("family") == "inet" and "local" in a]
        if "mtu" in link:
            entry["mtu"] = int(link["mtu"])
        ifaces.append(entry)
    out_routes = []
    for r in routes:
        if r.get("type", "unicast") != "unicast" or r.get("dev") not in names:
            continue
        if r.get("protocol") == "kernel" and r.get("scope") == "link":
            continue  # the connected route of an address: derived
        dst = r.get("dst", "default")
        if dst != "default" and "/" not in dst:
            dst += "/32"
        route: dict[str, Any] = {"to": dst, "dev": r["dev"]}
        if r.get("gateway"):
            route["via"] = r["gateway"]
        if r.get("metric"):
            route["metric"] = int(r["metric"])
        out_routes.append(route)
    return {"host": {"name": "live"}, "interface": ifaces, "route": out_routes, "sysctl": dict(sysctls)}


def read_host(overrides: dict[str, int] | None = None) -> Host:
    """This machine (its network namespace) as a Host; `overrides` are
    sysctl values the engine uses instead of the kernel's (the engine's
    connection table is its own, e.g. its own nf_conntrack_max)."""
    links = _ip_json("addr", "show")
    routes = _ip_json("-4", "route", "show", "table", "main")
    sysctls = {name: v for name in _SYSCTLS if (v := _read_sysctl(name)) is not None}
    sysctls.update(overrides or {})
    return host_from_dict(host_dict(links, routes, sysctls), source="live host")
