"""multiport (revision 1, as 1.8.9 picks on this kernel): libxt_multiport.t,
the parse-time `-p` check, 15 slots with ranges counting two, the
exclusion group with its id names, and the -S / -L texts (service names per
protocol), checked against iptables-legacy 1.8.9."""

from __future__ import annotations

from paths import SHARED

import copy
import shlex
from pathlib import Path
from typing import Any

import pytest

from pyfw.errors import EINVAL, KernelError, PyfwError
from pyfw.ruleset import commands as ops
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.execute import execute
from pyfw.ruleset.model import Ruleset

# ---------------------------------------------------------------- harness
# (the same few helpers head each tests/ext/test_match_*.py of this group)

T_DIR = (SHARED / "conformance/iptables-t")


def _run(rs: Ruleset, args: list[str]) -> str:
    """One iptables command on `rs`, kept only when the kernel accepts it."""
    p = parse_command(["iptables", *args])
    work = copy.deepcopy(rs)
    out = execute(work, p)
    if out.changed:
        ops.commit_check(work.table(p.table))
    rs.tables = work.tables
    return out.output


def outcome(args: str, chain: str = "INPUT") -> tuple[Any, ...]:
    """Like the oracle: (args, -S line) when added, else (args, rc, message);
    a kernel refusal's message is "EINVAL"."""
    rs = Ruleset()
    try:
        _run(rs, ["-A", chain, *shlex.split(args)])
    except KernelError as e:
        return (args, 1, "EINVAL" if e.message == EINVAL else e.message)
    except PyfwError as e:
        return (args, e.exit_code, e.message)
    return (args, _run(rs, ["-S", chain]).rstrip("\n").split("\n")[-1])


def texts(args: str, chain: str = "INPUT") -> tuple[str, str, str, str]:
    """(args, -S line, -L text, -L -n text) of the rule's last match."""
    p = parse_command(["iptables", "-A", chain, *shlex.split(args)])
    m = p.matches[-1]
    ip = p.base.ip
    line = outcome(args, chain)
    return (args, line[1], m.ext.print(m.data, ip, False), m.ext.print(m.data, ip, True))


def t_lines(name: str) -> list[Any]:
    """The lines of a .t file that iptables-legacy 1.8.9 passes."""
    passed = set()
    for row in (T_DIR / "legacy-1.8.9-results.txt").read_text().splitlines():
        words = row.split()
        if len(words) >= 2 and words[1] == "PASS" and words[0].startswith(name + ":"):
            passed.add(int(words[0].split(":")[1]))
    out = []
    chains: list[str] = []
    table = "filter"
    for no, line in enumerate((T_DIR / name).read_text().split("\n"), 1):
        if not line or line[0] == "#":
            continue
        if line[0] == ":":
            chains = line[1:].split(",")
        elif line[0] == "*":
            table = line[1:]
        elif line[0] not in "@%" and no in passed:
            out.append(pytest.param(chains, table, line, id=f"{name}:{no}"))
    return out


def judge(chains: list[str], table: str, line: str) -> None:
    """iptables-test.py's verdict on one line, for every chain."""
    fields = line.split(";")
    rule, expected, result = fields[0], fields[1], fields[2].rstrip()
    tflag = ["-t", table] if table != "filter" else []
    for chain in chains:
        rs = Ruleset()
        args = ["-A", chain, *shlex.split(rule), *tflag]
        if result == "FAIL":
            with pytest.raises(PyfwError):
                _run(rs, args)
            continue
        _run(rs, args)
        want = f"-A {chain} " + (rule if expected == "=" else expected)
        assert want in _run(rs, ["-S", chain, *tflag]).split("\n")
        _run(rs, ["-D", chain, *shlex.split(rule), *tflag])
        assert _run(rs, ["-S", chain, *tflag]).count("\n-A ") == 0


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
