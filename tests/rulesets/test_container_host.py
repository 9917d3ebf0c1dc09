"""rulesets/container-host.rules: port 8080 of the host is published to the
web container 172.17.0.2:80 -- from the internet, from other containers
(hairpin NAT) and from the host itself -- and containers reach the internet
with the host's address."""

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

RULES = Path(__file__).parents[2] / "rulesets" / "container-host.rules"
HOST = "container-host.toml"

NET = Ether(src="02:00:00:00:14:fe")               # the internet, through the router on eth0
OTHER = Ether(src="02:42:ac:11:00:03")             # the container 172.17.0.3 on docker0
PUBLIC, WEB = "198.51.100.20", "172.17.0.2"


@pytest.fixture
def host(firewall):
    return firewall(RULES, host=HOST)


def test_the_published_port_from_the_internet(host):
    syn, synack, *rest = host.replay("fixtures/container-host-published.pcapng")
    assert syn.trace[:2] == ["nat:PREROUTING:1", "nat:PUBLISH:1"] and "filter:FORWARD:2" in syn.trace
    sent = syn.packets("docker0")[0]
    assert (sent[IP].src, sent[IP].dst, sent[TCP].dport) == ("192.0.2.77", WEB, 80)   # the client's own address
    back = synack.packets("eth0")[0]
    assert (back[IP].src, back[TCP].sport) == (PUBLIC, 8080)
    assert all(o.verdict == "ACCEPT" for o in rest)


def test_published_with_the_helpers(host):
    o = host.assert_nat(NET / IP(src="192.0.2.77", dst=PUBLIC) / TCP(sport=50100, dport=8080, flags="S"), "eth0",
                        dst=WEB, dport=80, src="192.0.2.77")
    host.assert_nat(o.reply(), "docker0", src=PUBLIC, sport=8080, dst="192.0.2.77")


def test_the_host_itself_is_not_filtered(host):
    o = host.assert_allowed(NET / IP(src="192.0.2.77", dst=PUBLIC) / TCP(sport=50101, dport=22, flags="S"), "eth0")
    assert o.trace[-1] == "nat:INPUT:policy"         # INPUT's policy is ACCEPT
    assert o.packets()[0][TCP].flags == "RA"         # nothing listens on 22: the stack resets


def test_the_bridge_is_closed_from_outside(host):
    o = host.assert_dropped(NET / IP(src="192.0.2.77", dst=WEB) / TCP(sport=50102, dport=80, flags="S"), "eth0")
    assert o.trace[-1] == "filter:FORWARD:policy"    # not through the DNAT: no way in


def test_containers_go_out_with_the_host_address(host):
    outcomes = host.replay("fixtures/container-host-outbound.pcapng")
    syn, synack = outcomes[0], outcomes[1]
    assert syn.trace == ["nat:PREROUTING:policy", "filter:FORWARD:3", "nat:POSTROUTING:1"]
    assert syn.packets("eth0")[0][IP].src == PUBLIC
    assert synack.packets("docker0")[0][IP].dst == "172.17.0.3"
    assert all(o.verdict == "ACCEPT" for o in outcomes)


def test_hairpin(host):
    outcomes = host.replay("fixtures/container-host-hairpin.pcapng")
    syn, synack = outcomes[0], outcomes[1]
    # a container reaching the public address: DNAT to the web container, and
    # MASQUERADE so that the reply comes back through the host
    assert "nat:POSTROUTING:2" in syn.trace and "filter:FORWARD:2" in syn.trace
    sent = syn.packets("docker0")[0]
    assert (sent[IP].src, sent[IP].dst, sent[TCP].dport) == ("172.17.0.1", WEB, 80)
    answer = synack.packets("docker0")[0]
    assert (answer[IP].src, answer[TCP].sport, answer[IP].dst) == (PUBLIC, 8080, "172.17.0.3")
    c2c = outcomes[5]
    assert c2c.trace[-2:] == ["filter:FORWARD:4", "nat:POSTROUTING:policy"]
    own = outcomes[6]                                # the host itself -> its public address:8080
    assert own.trace[:2] == ["nat:OUTPUT:1", "nat:PUBLISH:1"] and own.out == "docker0"
    assert own.packets()[0][IP].dst == WEB
    assert all(o.verdict == "ACCEPT" for o in outcomes)


def test_localhost_is_not_published(host):
    o = host.send(IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=47001, dport=8080, flags="S"), "local")
    assert "nat:PUBLISH:1" not in o.trace and o.out == "lo"


def test_container_to_container_udp(host):
    o = host.assert_allowed(OTHER / IP(src="172.17.0.3", dst=WEB) / UDP(sport=5000, dport=53), "docker0",
                            out="docker0")
    assert o.trace[-2] == "filter:FORWARD:4"
