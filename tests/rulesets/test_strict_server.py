"""rulesets/strict-server.rules: default drop in and out; SSH in, DNS and
web out; every dropped packet logged, at most 10 at once and then 6 a
minute."""

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

RULES = Path(__file__).parents[2] / "rulesets" / "strict-server.rules"
HOST = "strict-server.toml"

NET = Ether(src="02:00:00:00:28:fe")
SERVER, ADMIN, SCANNER = "198.51.100.40", "203.0.113.5", "192.0.2.66"


@pytest.fixture
def server(firewall):
    return firewall(RULES, host=HOST)


def test_an_ssh_session(server):
    syn, synack, ack, banner, client = server.replay("fixtures/strict-server-ssh.pcapng")
    assert syn.trace == ["filter:INPUT:3"]
    assert synack.trace == ["filter:OUTPUT:2"] and synack.out == "eth0"     # replies may leave
    assert ack.trace == client.trace == ["filter:INPUT:2"]
    assert banner.trace == ["filter:OUTPUT:2"]
    assert server.logs == []


def test_updates_and_name_lookups(server):
    dns, answer, syn, synack, ack, lo_ping, ntp = server.replay("fixtures/strict-server-updates.pcapng")
    assert dns.trace == ["filter:OUTPUT:3"] and dns.out == "eth0"
    assert answer.trace == ["filter:INPUT:2"] and not answer.emitted        # the resolver socket takes it
    assert syn.trace == ["filter:OUTPUT:4"] and synack.trace == ["filter:INPUT:2"] and ack.trace == ["filter:OUTPUT:2"]
    assert lo_ping.trace == ["filter:OUTPUT:1", "filter:INPUT:1"]
    assert ntp.verdict == "DROP"
    assert ntp.trace == ["filter:OUTPUT:5", "filter:LOG_DROP:1", "filter:LOG_DROP:2"]
    assert ntp.logs == [server.logs[0]] and "OUT=eth0" in ntp.logs[0] and "DPT=123" in ntp.logs[0]


@pytest.mark.parametrize("port", [53, 80, 443])
def test_the_server_may_fetch(server, port):
    server.assert_allowed(IP(src=SERVER, dst="192.0.2.80") / TCP(sport=42000, dport=port, flags="S"), "local",
                          out="eth0")


def test_the_server_may_not_send_mail(server):
    o = server.assert_dropped(IP(src=SERVER, dst="192.0.2.25") / TCP(sport=42001, dport=25, flags="S"), "local")
    assert o.trace[-1] == "filter:LOG_DROP:2" and o.logs


def test_a_scan_is_logged_but_not_flooded(server):
    outcomes = server.replay("fixtures/strict-server-scan.pcapng")
    assert all(o.verdict == "DROP" and not o.emitted for o in outcomes)
    assert [bool(o.logs) for o in outcomes] == [True] * 10 + [False] * 2      # --limit-burst 10
    assert server.packets("19") == 10 and server.packets("20") == 12         # LOG and DROP rule counters
    server.advance(10)                                                      # 6/min: one more after 10 s
    server.assert_dropped(NET / IP(src=SCANNER, dst=SERVER) / TCP(sport=33100, dport=13, flags="S"), "eth0")
    assert len(server.logs) == 11


def test_ping_is_not_answered(server):
    o = server.assert_dropped(NET / IP(src=ADMIN, dst=SERVER) / ICMP(), "eth0")
    assert o.trace == ["filter:INPUT:4", "filter:LOG_DROP:1", "filter:LOG_DROP:2"] and not o.emitted


def test_new_ssh_only_not_stray_packets(server):
    # a stray ACK to port 22 is NEW for conntrack (loose pickup) and port 22 accepts NEW
    server.assert_allowed(NET / IP(src=ADMIN, dst=SERVER) / TCP(sport=50100, dport=22, flags="A"), "eth0")
    server.assert_dropped(NET / IP(src=ADMIN, dst=SERVER) / UDP(sport=50101, dport=22), "eth0")
