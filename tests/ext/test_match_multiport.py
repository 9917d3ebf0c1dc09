"""multiport (revision 1, as 1.8.9 picks on this kernel): libxt_multiport.t,
the parse-time `-p` check, 15 slots with ranges counting two, the
exclusion group with its id names, and the -S / -L texts (service names per
protocol), checked against iptables-legacy 1.8.9."""

from __future__ import annotations

import pytest
from harness import T_DIR, _run, judge, outcome, t_lines, texts  # noqa: E402,F401

from pyfw.errors import KernelError
from pyfw.ruleset.argparse import parse_command

# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("chains,table,line", t_lines("libxt_multiport.t"))
def test_t_file(chains: list[str], table: str, line: str) -> None:
    judge(chains, table, line)


TEXTS = [
    ('-p tcp -m multiport --dports 22,80,1000:2000', '-A INPUT -p tcp -m multiport --dports 22,80,1000:2000', ' multiport dports ssh,http,1000:cisco-sccp', ' multiport dports 22,80,1000:2000'),
    ('-p tcp -m multiport ! --sports ssh,http', '-A INPUT -p tcp -m multiport ! --sports 22,80', ' multiport sports  !ssh,http', ' multiport sports  !22,80'),
    ('-p udp -m multiport --ports 53,domain:100', '-A INPUT -p udp -m multiport --ports 53,53:100', ' multiport ports domain,domain:100', ' multiport ports 53,53:100'),
    ('-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15', '-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15', ' multiport dports tcpmux,2,3,4,5,6,echo,8,discard,10,systat,12,daytime,14:netstat', ' multiport dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15'),
    ('-p 6 -m multiport --dports 1,ssh', '-A INPUT -p tcp -m multiport --dports 1,22', ' multiport dports tcpmux,ssh', ' multiport dports 1,22'),
    ('-p sctp -m multiport --dports 5672,1', '-A INPUT -p sctp -m multiport --dports 5672,1', ' multiport dports amqp,1', ' multiport dports 5672,1'),
    ('-p sctp -m multiport --dports amqp', '-A INPUT -p sctp -m multiport --dports 5672', ' multiport dports amqp', ' multiport dports 5672'),
    ('-p dccp -m multiport --dports 1:100', '-A INPUT -p dccp -m multiport --dports 1:100', ' multiport dports 1:100', ' multiport dports 1:100'),
    ('-p udplite -m multiport ! --ports 1:100,7', '-A INPUT -p udplite -m multiport ! --ports 1:100,7', ' multiport ports  !1:100,7', ' multiport ports  !1:100,7'),
    ('-p udp -m multiport --dports 010,0x10', '-A INPUT -p udp -m multiport --dports 8,16', ' multiport dports 8,16', ' multiport dports 8,16'),
]


@pytest.mark.parametrize("case", TEXTS, ids=[c[0] for c in TEXTS])
def test_texts(case: tuple[str, str, str, str]) -> None:
    assert texts(case[0]) == case


REFUSED = [
    ('-p tcp -m multiport --dports 5:5', 2, 'invalid portrange specified'),
    ('-p tcp -m multiport --dports 6:5', 2, 'invalid portrange specified'),
    ('-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16', 2, 'too many ports specified'),
    ('-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:16', 2, 'too many ports specified'),
    ('-p tcp -m multiport --dports 1:2:3', 2, "invalid port/service `2:3' specified"),
    ('-p tcp -m multiport --dports ,', 2, "invalid port/service `' specified"),
    ('-p tcp -m multiport --dports :5', 2, "invalid port/service `' specified"),
    ('-p tcp -m multiport --dports 5:', 2, "invalid port/service `' specified"),
    ('-p udp -m multiport --dports ssh', 2, "invalid port/service `ssh' specified"),
    ('-p udp -m multiport --dports 65536', 2, "invalid port/service `65536' specified"),
    ('-p tcp -m multiport --dports 1 --sports 2', 2, 'multiport: option "--source-ports" cannot be used together with "--destination-ports".\n'),
    ('-p tcp -m multiport --sports 1 --dports 2', 2, 'multiport: option "--source-ports" cannot be used together with "--destination-ports".\n'),
    ('-p tcp -m multiport --dports 1 --ports 2', 2, 'multiport: option "--destination-ports" cannot be used together with "--ports".\n'),
    ('-p tcp -m multiport --ports 1 --dports 2 --sports 3', 2, 'multiport: option "--source-ports" cannot be used together with "--destination-ports".\n'),
    ('-p tcp -m multiport --dports 1 --dports 2', 2, 'multiport: option "--destination-ports" can only be used once.\n'),
    ('-p tcp -m multiport --destination-ports 1 --dports 2', 2, 'multiport: option "--destination-ports" can only be used once.\n'),
    ('-p tcp -m multiport --sports 1 --source-ports 2', 2, 'multiport: option "--source-ports" can only be used once.\n'),
    ('-m multiport --dports 1', 2, "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"),
    ('-p icmp -m multiport --dports 1', 2, 'multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP'),
    ('! -p tcp -m multiport --dports 1', 2, 'multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP'),
    ('-p tcp -m multiport', 2, 'multiport expection an option'),
    ('-p all -m multiport --dports 1', 2, "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"),
    ('-m multiport --dports 1 -p tcp', 2, "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: tuple[str, int, str]) -> None:
    assert outcome(case[0]) == case


def test_data_is_numeric() -> None:
    p = parse_command(["iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport",
                       "!", "--dports", "22,1000:2000"])
    data = p.matches[0].data
    assert (data.flags, data.count, data.ports, data.pflags, data.invert) == (
        1, 3, (22, 1000, 2000), (0, 1, 0), True)


def test_kernel_check() -> None:
    from pyfw.ext.base import CheckContext, RuleIp
    from pyfw.ext.match_multiport import EXTENSIONS, MultiportData

    ext = EXTENSIONS[0]
    good = MultiportData(flags=1, count=1, ports=(22,), pflags=(0,))
    ext.check(good, CheckContext("filter", "INPUT", frozenset({"INPUT"}), RuleIp(136, 0)))
    for ip in (RuleIp(1, 0), RuleIp(6, 0x40), RuleIp(0, 0)):
        with pytest.raises(KernelError):
            ext.check(good, CheckContext("filter", "INPUT", frozenset({"INPUT"}), ip))
