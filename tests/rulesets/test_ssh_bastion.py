"""rulesets/ssh-bastion.rules: SSH only, and a source that opens more than
4 new SSH connections in 60 seconds is logged and refused until it slows
down (the `recent` list "ssh")."""

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

RULES = Path(__file__).parents[2] / "rulesets" / "ssh-bastion.rules"
HOST = "ssh-bastion.toml"

NET = Ether(src="02:00:00:00:16:fe")
BASTION, ADMIN, ATTACKER = "198.51.100.22", "203.0.113.5", "192.0.2.66"


def syn(src, sport):
    return NET / IP(src=src, dst=BASTION) / TCP(sport=sport, dport=22, flags="S")


@pytest.fixture
def bastion(firewall):
    return firewall(RULES, host=HOST)


def test_an_ssh_login(bastion):
    outcomes = bastion.replay("fixtures/ssh-bastion-login.pcapng")
    assert all(o.verdict == "ACCEPT" for o in outcomes[:7])
    assert not outcomes[7].emitted and not outcomes[7].trace   # not for the bastion: it does not forward
    first = outcomes[0]
    assert first.trace == ["filter:INPUT:3", "filter:SSH_GUARD:1", "filter:SSH_GUARD:4"]
    assert outcomes[2].trace == ["filter:INPUT:2"]            # the rest of the session: ESTABLISHED
    assert outcomes[5].packets()[0][ICMP].type == 0           # ping answered
    assert outcomes[6].trace[-1] == "filter:INPUT:1"          # loopback


def test_the_fifth_connection_in_a_minute_is_logged_and_dropped(bastion):
    outcomes = bastion.replay("fixtures/ssh-bastion-bruteforce.pcapng")
    attacker = [o for o in outcomes if o.frame[26:30] == bytes([192, 0, 2, 66])]
    assert [o.verdict for o in attacker] == ["ACCEPT"] * 4 + ["DROP"] * 2
    assert attacker[4].trace == ["filter:INPUT:3", "filter:SSH_GUARD:1", "filter:SSH_GUARD:2", "filter:SSH_GUARD:3"]
    assert attacker[4].logs[0].startswith("ssh-bruteforce: IN=eth0 OUT= ")
    assert "SRC=192.0.2.66" in attacker[4].logs[0] and "SPT=40005 DPT=22" in attacker[4].logs[0]
    admin = [o for o in outcomes if o not in attacker]
    assert [o.verdict for o in admin] == ["ACCEPT"]           # the list is per source address


def test_the_attacker_gets_back_in_after_slowing_down(bastion):
    for port in range(40001, 40005):
        bastion.assert_allowed(syn(ATTACKER, port), "eth0")
        bastion.advance(1)
    bastion.assert_dropped(syn(ATTACKER, 40005), "eth0")
    bastion.advance(30)
    bastion.assert_dropped(syn(ATTACKER, 40006), "eth0")     # each attempt is recorded: still 5 in 60 s
    bastion.advance(61)
    bastion.assert_allowed(syn(ATTACKER, 40007), "eth0")     # a minute of quiet


def test_retransmitted_syn_of_an_accepted_connection_counts_again(bastion):
    # a SYN that is sent again is still NEW (no reply seen): it hits SSH_GUARD again
    for _ in range(4):
        bastion.assert_allowed(syn(ADMIN, 50000), "eth0")
    bastion.assert_dropped(syn(ADMIN, 50000), "eth0")


def test_nothing_but_ssh_and_ping(bastion):
    bastion.assert_dropped(NET / IP(src=ADMIN, dst=BASTION) / TCP(sport=50001, dport=80, flags="S"), "eth0")
    bastion.assert_dropped(NET / IP(src=ADMIN, dst=BASTION) / UDP(sport=50002, dport=53), "eth0")
    o = bastion.assert_allowed(NET / IP(src=ADMIN, dst=BASTION) / ICMP(), "eth0")
    assert o.packets()[0][ICMP].type == 0


def test_the_bastion_forwards_nothing(bastion):
    # ip_forward is 0: Linux drops it at the routing decision, without an ICMP error
    o = bastion.send(NET / IP(src=ADMIN, dst="10.0.0.9") / TCP(sport=50003, dport=22, flags="S"), "eth0")
    assert (o.verdict, o.path, o.emitted) == ("DROP", "no-route", [])
