"""rulesets/web-server.rules: the web for everyone, SSH for the admin
network, ping rate-limited, a reset for every other TCP port."""

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

RULES = Path(__file__).parents[2] / "rulesets" / "web-server.rules"
HOST = "web-server.toml"

NET = Ether(src="02:00:00:00:0a:fe")       # everything arrives through the provider's router
VISITOR, ADMIN, SERVER = "192.0.2.44", "203.0.113.5", "198.51.100.10"


@pytest.fixture
def web(firewall):
    return firewall(RULES, host=HOST)


def test_an_http_visit(web):
    outcomes = web.replay("fixtures/web-server-http.pcapng")
    syn, synack, ack, get, page, ack2, junk, https = outcomes
    assert syn.trace[-1] == "filter:INPUT:4" and syn.verdict == "ACCEPT"
    assert not syn.emitted                                   # sshd/nginx are listening: no reset
    assert [o.trace for o in (ack, get, ack2)] == [["filter:INPUT:2"]] * 3
    assert synack.out == page.out == "eth0"
    assert junk.verdict == "DROP" and junk.trace == ["filter:INPUT:3"]   # out of window: INVALID
    assert https.verdict == "ACCEPT" and https.trace[-1] == "filter:INPUT:4"


@pytest.mark.parametrize("port", [80, 443])
def test_the_web_is_open(web, port):
    web.assert_allowed(NET / IP(src=VISITOR, dst=SERVER) / TCP(sport=50000, dport=port, flags="S"), "eth0")


def test_ssh_only_from_the_admin_network(web):
    web.assert_allowed(NET / IP(src=ADMIN, dst=SERVER) / TCP(sport=50022, dport=22, flags="S"), "eth0")
    o = web.assert_rejected(NET / IP(src=VISITOR, dst=SERVER) / TCP(sport=50023, dport=22, flags="S"), "eth0")
    assert o.trace[-1] == "filter:INPUT:7"


def test_the_admin_fixture(web):
    outcomes = web.replay("fixtures/web-server-admin.pcapng")
    assert [o.verdict for o in outcomes] == ["ACCEPT", "ACCEPT", "ACCEPT", "REJECT", "REJECT", "DROP", "ACCEPT",
                                            "ACCEPT"]
    assert outcomes[0].trace[-1] == "filter:INPUT:5"
    assert outcomes[4].packets()[0][TCP].flags == "RA"       # SMTP: reset
    assert outcomes[5].trace == ["filter:INPUT:policy"]      # UDP: nothing answers
    assert outcomes[6].packets()[0][ICMP].type == 0          # echo reply
    assert "filter:INPUT:1" in outcomes[7].trace             # its own address goes through lo


def test_udp_is_dropped_silently(web):
    o = web.assert_dropped(NET / IP(src=VISITOR, dst=SERVER) / UDP(sport=5000, dport=161), "eth0")
    assert not o.emitted


def test_ping_is_limited_to_10_a_second(web):
    answered = [web.send(NET / IP(src=VISITOR, dst=SERVER) / ICMP(id=i), "eth0").verdict for i in range(25)]
    assert answered == ["ACCEPT"] * 20 + ["DROP"] * 5       # the burst of 20, then the policy
    web.advance(0.5)
    assert [web.send(NET / IP(src=VISITOR, dst=SERVER) / ICMP(id=100 + i), "eth0").verdict
            for i in range(6)] == ["ACCEPT"] * 5 + ["DROP"]


def test_a_stray_ack_is_new_and_reaches_the_web_server(web):
    # nf_conntrack_tcp_loose (on by default) picks up mid-stream connections
    o = web.assert_allowed(NET / IP(src=VISITOR, dst=SERVER) / TCP(sport=50100, dport=80, flags="A", seq=5, ack=7),
                           "eth0")
    assert o.trace[-1] == "filter:INPUT:4"
