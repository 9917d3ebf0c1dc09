"""Shared pieces of the target tests: a fake Env and host shaped like the
lab in kernel_lab.py, and compiling a target from an iptables command line."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfw.engine.packet import Packet
from pyfw.ext import find_target
from pyfw.ruleset.argparse import parse_command


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


@dataclass
class Route:
    dev: str
    gateway: int | None = None


@dataclass
class FakeHost:
    """fw of the lab: b0 10.77.0.2/24 (peer side), b1 10.77.1.1/24."""

    mtus: dict[str, int] = field(default_factory=lambda: {"b0": 1500, "b1": 1500, "lo": 65536})
    sysctls: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=lambda: {"b0": "b0", "b1": "b1"})

    def addr(self, dev: str) -> int:
        return ip("10.77.0.2") if dev == self.names["b0"] else ip("10.77.1.1")

    def is_local(self, a: int) -> bool:
        return a in (ip("10.77.0.2"), ip("10.77.1.1")) or a >> 24 == 127

    def is_broadcast(self, a: int, dev: str) -> bool:
        return a in (ip("10.77.0.255"), ip("10.77.1.255"))

    def route(self, dst: int) -> Route | None:
        if dst >> 8 == ip("10.77.1.0") >> 8:
            return Route(self.names["b1"])
        if dst >> 8 == ip("10.77.0.0") >> 8:
            return Route(self.names["b0"])
        return Route(self.names["b0"], ip("10.77.0.1"))

    def mtu(self, dev: str) -> int:
        for key, name in self.names.items():
            if name == dev:
                return self.mtus[key]
        return self.mtus.get(dev, 1500)

    def primary_address(self, dev: str) -> int:
        return self.addr(dev)

    def sysctl_int(self, name: str) -> int | None:
        return self.sysctls.get(name)


class FakeEnv:
    def __init__(self, host: Any = None) -> None:
        self.host = host if host is not None else FakeHost()
        self.logs: list[str] = []
        self.sent: list[tuple[bytearray, Packet]] = []
        self.nflogs: list[tuple[int, str, Packet]] = []
        self.rejected = 0
        self.closing: list[Packet] = []
        self._shared: dict[tuple[str, str], Any] = {}

    def log(self, text: str) -> None:
        self.logs.append(text)

    def send_local(self, data: bytearray, pkt: Packet) -> None:
        self.sent.append((data, pkt))

    def shared(self, kind: str, name: str, factory: Callable[[], Any]) -> Any:
        key = (kind, name)
        if key not in self._shared:
            self._shared[key] = factory()
        return self._shared[key]

    def nat(self) -> Any:
        raise NotImplementedError

    def nflog(self, group: int, prefix: str, pkt: Packet) -> None:
        self.nflogs.append((group, prefix, pkt))

    def reject_sent(self) -> None:
        self.rejected += 1

    def ct_set_closing(self, pkt: Packet) -> None:
        self.closing.append(pkt)


def target_data(words: list[str], table: str = "filter", chain: str = "INPUT") -> tuple[Any, Any]:
    """(extension, data) of the target of `iptables -t table -A chain WORDS`."""
    cmd = parse_command(["pyfw", "-t", table, "-A", chain, *words])
    t = cmd.rules()[0].target
    return find_target(t.name), t.data


def compile_target(words: list[str], env: FakeEnv | None = None, table: str = "filter",
                   chain: str = "INPUT") -> Callable[[Packet], int]:
    ext, data = target_data(words, table, chain)
    fn: Callable[[Packet], int] = ext.compile(data, env if env is not None else FakeEnv())
    return fn


def mkpkt(raw: bytes, indev: str = "", outdev: str = "", eth: bytes | None = None,
          hook: str = "INPUT", local: bool = False, time: float = 0.0) -> Packet:
    p = Packet(bytearray(raw), indev=indev, outdev=outdev, eth=eth, time=time)
    p.hook = hook
    p.local = local
    return p


def decrease_ttl(raw: bytes) -> bytes:
    """ip_decrease_ttl as the kernel does it before FORWARD (its own
    checksum carry rule)."""
    d = bytearray(raw)
    c = (d[10] << 8 | d[11]) + 0x0100
    c = (c & 0xFFFF) + (c >> 16)
    if c == 0xFFFF:
        c = 0
    d[10], d[11] = c >> 8, c & 0xFF
    d[8] -= 1
    return bytes(d)
