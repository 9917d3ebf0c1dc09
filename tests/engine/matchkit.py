"""Helpers for the match-semantics tests: rules through the real parser,
compiled as the engine compiles them, a fake Env and host, and Packets made
from scapy packets."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from pyfw.engine.api import PACKET_BROADCAST, PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, Hotdrop
from pyfw.engine.packet import Packet
from pyfw.engine.tables import compile_ip
from pyfw.ext import find_match
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.commands import check_rule
from pyfw.ruleset.model import Rule

# RTN_* (rtnetlink route types)
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST = 1, 2, 3, 5

HOOK_OF = {"PREROUTING": "PREROUTING", "INPUT": "INPUT", "FORWARD": "FORWARD",
           "OUTPUT": "OUTPUT", "POSTROUTING": "POSTROUTING"}


def ip4(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


class FakeHost:
    """inet_dev_addr_type over a local routing table given as
    (type, prefix, length, dev), as `ip route show table local` lists it."""

    def __init__(self, local: list[tuple[str, str, int, str]]) -> None:
        kinds = {"local": RTN_LOCAL, "broadcast": RTN_BROADCAST, "unicast": RTN_UNICAST,
                 "multicast": RTN_MULTICAST}
        self.routes = sorted(
            ((ip4(p), plen, kinds.get(k, RTN_UNICAST), dev) for k, p, plen, dev in local),
            key=lambda r: -r[1])

    def addr_type(self, addr: int, dev: str | None = None) -> int:
        if addr >> 24 == 0 or addr == 0xFFFFFFFF:
            return RTN_BROADCAST
        if addr >> 28 == 0xE:
            return RTN_MULTICAST
        for prefix, plen, kind, rdev in self.routes:
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
            if addr & mask == prefix & mask:
                if dev is None or dev == rdev:
                    return kind
                return RTN_UNICAST
        return RTN_UNICAST


#: a host with 192.168.1.1/24 on eth0 and 127.0.0.1/8 on lo
DEFAULT_HOST = FakeHost([
    ("local", "192.168.1.1", 32, "eth0"), ("broadcast", "192.168.1.255", 32, "eth0"),
    ("local", "127.0.0.0", 8, "lo"), ("local", "127.0.0.1", 32, "lo"),
    ("broadcast", "127.255.255.255", 32, "lo"),
])


class FakeEnv:
    def __init__(self, host: Any = DEFAULT_HOST) -> None:
        self.host = host
        self.objects: dict[tuple[str, str], Any] = {}
        self.lines: list[str] = []

    def shared(self, kind: str, name: str, factory: Callable[[], Any]) -> Any:
        key = (kind, name)
        if key not in self.objects:
            self.objects[key] = factory()
        return self.objects[key]

    def log(self, text: str) -> None:
        self.lines.append(text)

    def send_local(self, data: bytearray, pkt: Packet) -> None:  # pragma: no cover
        raise AssertionError("a match sent a packet")

    def nat(self) -> Any:  # pragma: no cover
        raise AssertionError("a match asked for NAT")


def parse_rule(spec: str, table: str = "filter", chain: str = "INPUT") -> Rule:
    """One rule through the real parser and the kernel's checkentry."""
    cmd = parse_command(["pyfw", "-t", table, "-A", chain, *shlex.split(spec)], table=table)
    rule = cmd.rules()[0]
    check_rule(table, chain, frozenset({HOOK_OF.get(chain, chain)}), rule)
    return rule


HOTDROP = "hotdrop"


def compile_rule(spec: str, env: Any | None = None, table: str = "filter",
                 chain: str = "INPUT") -> Callable[[Packet], bool | str]:
    """The rule's test (IP part, then its matches in order, as ipt_do_table
    runs them): True, False, or HOTDROP."""
    rule = parse_rule(spec, table, chain)
    env = env if env is not None else FakeEnv()
    tests = compile_ip(rule)
    for m in rule.matches:
        ext = find_match(m.name)
        assert ext is not None
        tests.append(ext.compile(m.data, env))  # type: ignore[attr-defined]

    def run(pkt: Packet) -> bool | str:
        try:
            for t in tests:
                if not t(pkt):
                    return False
        except Hotdrop:
            return HOTDROP
        return True

    return run


def pkttype_of(eth: bytes, own_mac: bytes) -> int:
    """eth_type_trans's skb->pkt_type."""
    dst = eth[:6]
    if dst[0] & 1:
        return PACKET_BROADCAST if dst == b"\xff" * 6 else PACKET_MULTICAST
    return PACKET_HOST if dst == own_mac else PACKET_OTHERHOST


def make_packet(ip: Any, *, indev: str = "eth0", outdev: str = "", time: float = 0.0,
                eth: bytes | None = None, own_mac: bytes | None = None,
                hook: str = "PREROUTING") -> Packet:
    """A Packet from a scapy IP packet (or raw IPv4 bytes)."""
    data = ip if isinstance(ip, (bytes, bytearray)) else bytes(ip)
    pkt = Packet(bytearray(data), indev=indev, outdev=outdev, time=time, eth=eth)
    pkt.hook = hook
    if eth is not None and own_mac is not None:
        pkt.pkttype = pkttype_of(eth, own_mac)
    return pkt
