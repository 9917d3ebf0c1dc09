"""rulesets/home-gateway.rules, tested the way its owner would: the LAN
gets out with MASQUERADE, the port forward reaches the LAN web server, the
gateway answers ping (not a flood) and says "no" quickly to the rest."""

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.l2 import Ether

RULES = Path(__file__).parents[2] / "rulesets" / "home-gateway.rules"
HOST = "home-gateway.toml"

LAPTOP = Ether(src="02:00:00:00:01:05")    # the destination MAC is filled in: the gateway's
ISP = Ether(src="02:00:00:00:02:fe")       # frames from the internet come from the ISP's router


@pytest.fixture
def gw(firewall):
    return firewall(RULES, host=HOST)


def test_lan_browsing_is_masqueraded(gw):
    syn, synack, *rest = gw.replay("fixtures/home-gateway-lan-browsing.pcapng")
    assert [o.verdict for o in (syn, synack, *rest)] == ["ACCEPT"] * 7
    assert syn.trace == ["nat:PREROUTING:policy", "filter:FORWARD:2", "nat:POSTROUTING:1"]
    assert syn.packets("eth1")[0][IP].src == "203.0.113.2"
    assert synack.packets("eth0")[0][IP].dst == "192.168.1.5"      # de-NATed on the way back
    assert synack.trace == ["filter:FORWARD:1"]                       # the ESTABLISHED rule


def test_a_new_lan_connection_leaves_with_the_wan_address(gw):
    o = gw.assert_nat(LAPTOP / IP(src="192.168.1.5", dst="198.51.100.7") / TCP(sport=40100, dport=80, flags="S"),
                      "eth0", src="203.0.113.2", sport=40100)
    gw.assert_nat(o.reply(), "eth1", dst="192.168.1.5", dport=40100)


def test_port_forward_reaches_the_lan_web_server(gw):
    outcomes = gw.replay("fixtures/home-gateway-port-forward.pcapng")
    syn, synack = outcomes[0], outcomes[1]
    assert syn.out == "eth0" and syn.packets()[0][IP].dst == "192.168.1.10" and syn.packets()[0][TCP].dport == 80
    assert synack.packets("eth1")[0][IP].src == "203.0.113.2" and synack.packets("eth1")[0][TCP].sport == 8080
    assert all(o.verdict == "ACCEPT" for o in outcomes[:5])
    direct = outcomes[5]                      # straight to 192.168.1.10, bypassing the forward
    assert direct.verdict == "DROP" and direct.trace[-1] == "filter:FORWARD:policy"
    assert direct.logs and direct.logs[0].startswith("fw-forward-drop: IN=eth1 OUT=eth0")


def test_port_forward_with_the_helpers(gw):
    o = gw.assert_nat(ISP / IP(src="192.0.2.99", dst="203.0.113.2") / TCP(sport=51500, dport=8080, flags="S"),
                      "eth1", dst="192.168.1.10", dport=80)
    assert o.conn.nat_dst is not None
    assert "src=192.168.1.10 dst=192.0.2.99 sport=80 dport=51500" in gw.conn_text(o.conn)
    gw.assert_nat(o.reply(), "eth0", src="203.0.113.2", sport=8080)


def test_only_8080_is_forwarded(gw):
    o = gw.assert_rejected(ISP / IP(src="192.0.2.99", dst="203.0.113.2") / TCP(sport=51501, dport=8081, flags="S"),
                           "eth1")
    assert o.packets("eth1")[0][TCP].flags == "RA"


def test_the_gateway_itself(gw):
    outcomes = gw.replay("fixtures/home-gateway-gateway-itself.pcapng")
    verdicts = [o.verdict for o in outcomes]
    assert verdicts == ["ACCEPT"] * 8 + ["REJECT", "REJECT", "DROP"]
    lo_ping, ping, ssh_wan, snmp, scan = outcomes[0], outcomes[7], outcomes[8], outcomes[9], outcomes[10]
    assert "filter:INPUT:1" in lo_ping.trace                         # -i lo
    assert ping.packets("eth1")[0][ICMP].type == 0                   # echo reply
    assert ssh_wan.packets("eth1")[0][TCP].flags == "RA"             # tcp-reset
    icmp = snmp.packets("eth1")[0][ICMP]
    assert (icmp.type, icmp.code) == (3, 3) and icmp[UDPerror].dport == 161
    assert scan.trace == ["filter:INPUT:3"] and not scan.emitted     # INVALID: dropped quietly


def test_ssh_from_the_lan_only(gw):
    gw.assert_allowed(LAPTOP / IP(src="192.168.1.5", dst="192.168.1.1") / TCP(sport=40200, dport=22, flags="S"),
                      "eth0")
    gw.assert_rejected(ISP / IP(src="192.0.2.99", dst="192.168.1.1") / TCP(sport=40201, dport=22, flags="S"),
                       "eth1")


def test_dns_on_the_wan_side_is_refused(gw):
    o = gw.assert_rejected(ISP / IP(src="192.0.2.99", dst="203.0.113.2") / UDP(sport=40300, dport=53), "eth1")
    assert o.trace[-1] == "filter:INPUT:7"


def test_ping_flood_is_limited_then_recovers(gw):
    outcomes = gw.replay("fixtures/home-gateway-ping-flood.pcapng")
    assert [o.verdict for o in outcomes] == ["ACCEPT"] * 10 + ["DROP"] * 2
    gw.advance(1.0)                                                  # 5/sec: the bucket refills
    for i in range(5):
        gw.assert_allowed(ISP / IP(src="192.0.2.99", dst="203.0.113.2") / ICMP(id=0x0400 + i), "eth1")
    gw.assert_dropped(ISP / IP(src="192.0.2.99", dst="203.0.113.2") / ICMP(id=0x0410), "eth1")


def test_forward_drops_are_logged_at_most_3_a_minute(gw):
    for i in range(8):
        gw.assert_dropped(ISP / IP(src="192.0.2.99", dst="192.168.1.10") / TCP(sport=41000 + i, dport=80, flags="S"),
                          "eth1")
    assert len(gw.logs) == 5                                         # the burst
    gw.advance(20)
    gw.send(ISP / IP(src="192.0.2.99", dst="192.168.1.10") / TCP(sport=41010, dport=80, flags="S"), "eth1")
    assert len(gw.logs) == 6                                         # one more every 20 s
