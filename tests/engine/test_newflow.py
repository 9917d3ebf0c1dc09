"""The straight-line new-flow path (pyfw.engine.newflow) changes nothing but
speed: random rulesets (NAT of every kind, REJECT, LOG, ctstate, user
chains, goto/RETURN, empty raw/mangle/security tables, and a rule in one
of those that switches it off)
and random first packets -- with some answers, follow-ups and odd frames
mixed in -- through an engine with it and one without give the same
verdicts, emitted frames, counters, connection table, conntrack statistics,
LOG lines and engine statistics, frame by frame; with the established-flow
fast path on and off.
"""

from __future__ import annotations

import random

import pytest
from test_fastpath import frame

from pyfw.engine.conntrack import format_event
from pyfw.engine.engine import Engine
from pyfw.engine.host import parse_host
from pyfw.ruleset.format import save_table
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

HOST = """
[host]
name = "gw"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:01"
addresses = ["192.168.1.1/24"]
[[interface]]
name = "eth1"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
mtu = 1400
[[route]]
to = "default"
via = "203.0.113.254"
dev = "eth1"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:00:00:00:00:fe"
dev = "eth1"
[[neighbor]]
ip = "192.168.1.50"
mac = "02:00:00:00:00:50"
dev = "eth0"
[sysctl]
"net.ipv4.ip_forward" = 1
"net.netfilter.nf_conntrack_tcp_be_liberal" = 0
"""

LAN = 0xC0A80100
WAN_ADDR = 0xCB007101
SERVER = 0xC0A80132

FILTER_POOL = [
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -m state --state INVALID -j DROP",
    "-A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset",
    "-A FORWARD -p udp -m udp --dport 7 -j REJECT",
    "-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with icmp-host-prohibited",
    "-A FORWARD -p udp -m udp --dport 53 -j LOG --log-prefix \"dns \"",
    "-A FORWARD -p tcp -m tcp --dport 443 -m limit --limit 20/sec --limit-burst 5 -j ACCEPT",
    "-A FORWARD -p tcp -m multiport --dports 80,443,8080 -j web",
    "-A FORWARD -m iprange --src-range 192.168.1.10-192.168.1.20 -j DROP",
    "-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -j ACCEPT",
    "-A FORWARD -p udp -j udp_in",
    "-A FORWARD -m conntrack --ctstate NEW -j LOG --log-prefix \"new \"",
    "-A FORWARD -d 192.168.1.50/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT",
    "-A FORWARD -m conntrack --ctstate SNAT -j ACCEPT",
    "-A FORWARD -p tcp -m tcp --dport 22 -g web",
    "-A FORWARD -m conntrack --ctstate NEW -j DROP",
    "-A FORWARD -s 192.168.1.0/24 -i eth0 -o eth1 -j ACCEPT",
    "-A FORWARD -i eth1 -o eth0 -j ACCEPT",
    "-A FORWARD -p tcp -j NFQUEUE --queue-num 3 --queue-bypass",
    "-A FORWARD -p udp -m udp --dport 9 -j MARK --set-mark 0x9",
    "-A FORWARD -m mark --mark 0x9 -j CONNMARK --save-mark",
]
WEB_POOL = [
    "-A web -s 192.168.1.7/32 -j RETURN",
    "-A web -p tcp -m tcp --sport 1024:65535",
    "-A web -m conntrack --ctstate NEW -j ACCEPT",
    "-A web -p tcp -m tcp --dport 8080 -j DROP",
]
UDP_POOL = [
    "-A udp_in -p udp -m udp --dport 5000:6000 -j DROP",
    "-A udp_in -p udp -m udp --sport 53 -j RETURN",
    "-A udp_in -s 192.168.1.0/24 -j ACCEPT",
]
NAT_PRE_POOL = [
    "-A PREROUTING -d 203.0.113.1/32 -i eth1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.1.50:80",
    "-A PREROUTING -i eth0 -p tcp -m tcp --dport 3128 -j REDIRECT --to-ports 8000",
    "-A PREROUTING -i eth0 -p udp -m udp --dport 5353 -j DNAT --to-destination 8.8.4.4",
    "-A PREROUTING -p udp -m udp --dport 6000 -j RETURN",
    "-A PREROUTING -d 9.9.9.9/32 -j DNAT --to-destination 192.168.1.50",
]
NAT_POST_POOL = [
    "-A POSTROUTING -s 192.168.1.0/24 -o eth1 -j MASQUERADE",
    "-A POSTROUTING -o eth1 -p udp -j MASQUERADE --to-ports 20000-20010",
    "-A POSTROUTING -o eth1 -j SNAT --to-source 203.0.113.1",
    "-A POSTROUTING -s 192.168.1.7/32 -o eth1 -p tcp -j SNAT --to-source 203.0.113.1:1000-1003",
    "-A POSTROUTING -p tcp -m tcp --dport 25 -j RETURN",
    "-A POSTROUTING -o eth0 -j ACCEPT",
]


def pick(rng: random.Random, pool: list[str], lo: int) -> list[str]:
    rules = [r for r in pool if rng.random() < 0.5]
    rng.shuffle(rules)
    return rules if len(rules) >= lo else pool[:lo]


def ruleset_text(rng: random.Random) -> str:
    lines: list[str] = []
    # empty raw/mangle/security tables (the path counts their policies), or
    # one with a rule (the general path only)
    if rng.random() < 0.3:
        lines += ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        if rng.random() < 0.2:
            lines.append("-A PREROUTING -p udp -m udp --dport 9999 -j NOTRACK")
        lines.append("COMMIT")
    if rng.random() < 0.3:
        lines += ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                  ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
        if rng.random() < 0.2:
            lines.append(rng.choice(["-A FORWARD -p udp -m udp --dport 9 -j MARK --set-mark 0x9",
                                     "-A POSTROUTING -o eth1", "-A PREROUTING -j CONNMARK --restore-mark"]))
        lines.append("COMMIT")
    if rng.random() < 0.15:
        lines += ["*security", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT"]
    if rng.random() < 0.9:
        lines += ["*nat", f":PREROUTING {rng.choice(['ACCEPT', 'ACCEPT', 'DROP'])} [0:0]", ":INPUT ACCEPT [0:0]",
                  ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
        if rng.random() < 0.6:
            lines += pick(rng, NAT_PRE_POOL, 0)
        lines += pick(rng, NAT_POST_POOL, 1)
        lines.append("COMMIT")
    lines += ["*filter", ":INPUT ACCEPT [0:0]", f":FORWARD {rng.choice(['ACCEPT', 'ACCEPT', 'DROP'])} [0:0]",
              ":OUTPUT ACCEPT [0:0]", ":web - [0:0]", ":udp_in - [0:0]"]
    filt = pick(rng, FILTER_POOL, 3)
    if rng.random() < 0.5:  # most new flows dropped there: fewer
        filt = [r for r in filt if r != "-A FORWARD -m conntrack --ctstate NEW -j DROP"]
    lines += filt + pick(rng, WEB_POOL, 1) + pick(rng, UDP_POOL, 1)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def load(text: str) -> Ruleset:
    return restore(Ruleset(), text, RestoreOptions(counters=True)).ruleset


def first_packet(rng: random.Random, n: int) -> tuple[bytes, str, tuple[str, int, int, int, int, int]]:
    """A random first packet (and the flow it opens, for an answer)."""
    r = rng.random()
    proto = 6 if rng.random() < 0.6 else 17
    if r < 0.6:
        iface, src = "eth0", LAN + rng.choice((2, 3, 7, 12, 15, 30))
        dst = rng.choice((0x08080000 + rng.randrange(1, 40), 0x09090909, LAN + 50, 0xCB0071FE))
    elif r < 0.8:
        iface, src, dst = "eth1", 0x0A000000 + rng.randrange(1, 50), rng.choice((WAN_ADDR, SERVER, 0x08080808))
    elif r < 0.9:
        iface, src, dst = "eth0", LAN + rng.randrange(2, 9), rng.choice((0xC0A801FF, 0xC0A80101, 0xFFFFFFFF,
                                                                           0x7F000001, 0xE0000001))
    else:
        iface, src, dst = "eth0", rng.choice((0, 0xC0A80101, 0x0A000001)), 0x08080808
    sport = rng.choice((1000 + n % 7, 20000 + n, 20000 + n % 5))
    dport = rng.choice((22, 23, 25, 53, 80, 443, 3128, 5353, 5500, 6000, 7, 9, 8080, 12345))
    kw: dict[str, object] = {}
    if proto == 6:
        kw["flags"] = rng.choice((0x02, 0x02, 0x02, 0x02, 0x10, 0x12, 0x04, 0x03, 0x18))
        kw["seq"] = rng.randrange(1 << 32)
    odd = rng.random()
    if odd < 0.04:
        kw["ttl"] = rng.choice((0, 1, 2))
    elif odd < 0.07:
        kw["bad_csum"] = True
    elif odd < 0.10:
        kw["frag"] = rng.choice((0x2000, 0x0010))
    elif odd < 0.13:
        kw["options"] = b"\x01\x01\x01\x00"
    elif odd < 0.18:
        kw["payload"] = bytes(rng.randrange(1380, 1480))
    elif odd < 0.22:
        kw["frag"] = 0  # no DF
        kw["payload"] = bytes(1450)
    elif odd < 0.3:
        kw["payload"] = bytes(rng.randrange(60))
    fr = frame(iface, src, dst, proto, sport, dport, **kw)  # type: ignore[arg-type]
    if rng.random() < 0.03:
        fr = b"\xff" * 6 + fr[6:]  # a broadcast frame
    elif rng.random() < 0.03:
        fr = fr[:rng.randrange(14, len(fr))]  # cut short
    return fr, iface, (iface, src, dst, proto, sport, dport)


def answer(rng: random.Random, flow: tuple[str, int, int, int, int, int]) -> tuple[bytes, str]:
    """A packet the other way (as if NAT had not happened, or to the
    masquerading address), or the flow's next packet."""
    iface, src, dst, proto, sport, dport = flow
    if rng.random() < 0.5:
        back = "eth1" if iface == "eth0" else "eth0"
        to = WAN_ADDR if rng.random() < 0.6 else src
        kw: dict[str, object] = {"flags": 0x12} if proto == 6 else {}
        return frame(back, dst, to, proto, dport, sport, **kw), back  # type: ignore[arg-type]
    kw = {"flags": 0x10} if proto == 6 else {"payload": b"again"}
    return frame(iface, src, dst, proto, sport, dport, **kw), iface  # type: ignore[arg-type]


def traffic(rng: random.Random, packets: int) -> list[tuple[float, bytes | str, str]]:
    out: list[tuple[float, bytes | str, str]] = []
    flows: list[tuple[str, int, int, int, int, int]] = []
    now = 10.0
    reload_at = rng.randrange(packets // 3, 2 * packets // 3)
    for n in range(packets):
        if n == reload_at:
            out.append((now, "reload", ruleset_text(rng)))
        if flows and rng.random() < 0.25:
            fr, iface = answer(rng, rng.choice(flows))
        else:
            fr, iface, flow = first_packet(rng, n)
            flows.append(flow)
        out.append((now, fr, iface))
        now += rng.choice((0.0001, 0.001, 0.05, 0.5)) if rng.random() < 0.99 else 150.0
    return out


def run(text: str, events: list[tuple[float, bytes | str, str]], newflow: bool, fastpath: bool,
        listen: bool) -> tuple:  # type: ignore[type-arg]
    ruleset = load(text)
    eng = Engine(ruleset, parse_host(HOST, "gw.toml"), fastpath=fastpath, newflow=newflow)
    seen = []
    ct_events: list[str] = []
    if listen:
        eng.ct.listeners.append(lambda kind, conn, _portid: ct_events.append(format_event(kind, conn, eng.now)))
    now = 0.0
    for now, fr, iface in events:
        if isinstance(fr, str):
            ruleset = load(iface)
            eng.load(ruleset)
            continue
        r = eng.receive(fr, iface, now)
        seen.append((r.verdict, r.path, r.out, r.reason, [(e.iface, e.frame) for e in r.emitted]))
    counters = "".join(save_table(t, counters=True, program="pyfw-save") for t in ruleset.ordered_tables())
    counters = "".join(line for line in counters.splitlines(True) if not line.startswith("#"))
    return (seen, counters, eng.ct.format(now), eng.ct.format_stats(), list(eng.logs), ct_events,
            dict(eng.stats), eng.nat.stats if hasattr(eng.nat, "stats") else None, eng)


TAKEN: dict[tuple[int, bool], int] = {}


@pytest.mark.parametrize("fastpath", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_same_as_general_path(seed: int, fastpath: bool) -> None:
    rng = random.Random(seed)
    text = ruleset_text(rng)
    events = traffic(rng, 500)
    listen = bool(seed % 3 == 1)
    general = run(text, events, newflow=False, fastpath=fastpath, listen=listen)
    straight = run(text, events, newflow=True, fastpath=fastpath, listen=listen)
    for k, (a, b) in enumerate(zip(general[0], straight[0], strict=True)):
        assert a == b, f"frame {k}: {a} != {b}"
    assert general[1] == straight[1]  # counters, as pyfw-save -c prints them
    assert general[2] == straight[2]  # conntrack -L
    assert general[3] == straight[3]  # conntrack -S
    assert general[4] == straight[4]  # LOG lines
    assert general[5] == straight[5]  # conntrack -E
    assert general[6] == straight[6]  # the engine's drop reasons
    assert general[7] == straight[7]
    assert general[8].newflow is None
    TAKEN[(seed, fastpath)] = straight[8].newflow.taken


def test_the_path_was_taken() -> None:
    """(after the equivalence runs) most runs took it for many packets."""
    if len(TAKEN) < 20:
        pytest.skip("needs the equivalence runs")
    assert sum(1 for t in TAKEN.values() if t > 30) >= 12, TAKEN


def test_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    rs = load("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    host = parse_host(HOST, "gw.toml")
    monkeypatch.setenv("PYFW_NEWFLOW", "0")
    assert Engine(rs, host).newflow is None
    monkeypatch.setenv("PYFW_NEWFLOW", "1")
    assert Engine(rs, host).newflow is not None
    assert Engine(rs, host, newflow=False).newflow is None

    class Other(Engine):
        def _forward(self, *a, **kw):  # type: ignore[no-untyped-def]
            return super()._forward(*a, **kw)

    assert Other(rs, host).newflow is None
