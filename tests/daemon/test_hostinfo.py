"""hostinfo: `ip -j` output as a HOST.toml-shaped description (no root needed)."""

from __future__ import annotations

from typing import Any


def test_host_dict_from_ip_json() -> None:
    from pyfw.daemon.hostinfo import host_dict
    from pyfw.engine.host import host_from_dict, ip_int

    links: list[dict[str, Any]] = [{"ifname": "lo", "link_type": "loopback", "address": "00:00:00:00:00:00", "mtu": 65536,
              "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
             {"ifname": "eth0", "link_type": "ether", "address": "02:00:00:00:00:01", "mtu": 1500,
              "addr_info": [{"family": "inet", "local": "192.168.1.1", "prefixlen": 24},
                            {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
             {"ifname": "eth1", "link_type": "ether", "address": "02:00:00:00:00:02", "mtu": 1400,
              "addr_info": [{"family": "inet", "local": "203.0.113.1", "prefixlen": 24}]}]
    routes: list[dict[str, Any]] = [{"dst": "default", "gateway": "203.0.113.254", "dev": "eth1"},
              {"dst": "192.168.1.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link"},
              {"dst": "10.9.9.9", "gateway": "192.168.1.7", "dev": "eth0", "metric": 5}]
    d = host_dict(links, routes, {"net.ipv4.ip_forward": 1})
    assert d["route"] == [{"to": "default", "dev": "eth1", "via": "203.0.113.254"},
                          {"to": "10.9.9.9/32", "dev": "eth0", "via": "192.168.1.7", "metric": 5}]
    host = host_from_dict(d)
    assert host.mtu("eth1") == 1400
    assert host.is_local(ip_int("192.168.1.1"))
