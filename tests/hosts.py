"""The two-interface gateway host most engine tests run on (host.toml text):
eth0 the LAN 192.168.1.1/24, eth1 the WAN 203.0.113.1/24 with the default
route via 203.0.113.254, forwarding on.  `extra` adds sections (more
neighbours, services), `sysctl` more sysctl lines."""

from __future__ import annotations

LAN_MAC = "02:00:00:00:00:01"
WAN_MAC = "02:00:00:00:00:02"


def neighbor(ip: str, mac: str, dev: str) -> str:
    return f'[[neighbor]]\nip = "{ip}"\nmac = "{mac}"\ndev = "{dev}"\n'


def gateway_host(extra: str = "", sysctl: dict[str, int] | None = None) -> str:
    lines = "".join(f'"{k}" = {v}\n' for k, v in (sysctl or {}).items())
    return f"""
[host]
name = "gw"
[[interface]]
name = "eth0"
mac = "{LAN_MAC}"
addresses = ["192.168.1.1/24"]
[[interface]]
name = "eth1"
mac = "{WAN_MAC}"
addresses = ["203.0.113.1/24"]
[[route]]
to = "default"
via = "203.0.113.254"
dev = "eth1"
{neighbor("203.0.113.254", "02:00:00:00:00:fe", "eth1")}{extra}[sysctl]
"net.ipv4.ip_forward" = 1
{lines}"""
