"""End to end against Linux: the same ruleset, host and frames through a
gateway in network namespaces and through `pyfw simulate` (issue 3).

Each scenario builds a fresh gateway (tests/gateway_lab.py: lan, wan and
dmz interfaces, peers that only inject and capture), loads the ruleset with
iptables-legacy-restore, sends its frames one by one and after each frame
compares with pyfw's engine: the frames sent out of every interface (from
the IP header on, in order; the IP ID of packets the host makes aside),
every rule and policy counter, the connection table and the new LOG lines.
At the end `pyfw simulate` itself runs over a pcapng of the same frames and
its --out-dir, --counters, --conntrack and --log outputs are compared with
the kernel's final state.

The scenarios together use every match and target pyfw implements, each in
the tables and hooks it belongs to; NAT with replies (SNAT, DNAT,
MASQUERADE, REDIRECT, a port clash); every conntrack state; fragments
forwarded and to the host; OUTPUT from the host; the host's own answers
(echo and timestamp replies, TCP RST, port/protocol/net unreachable, TTL
exceeded, fragmentation needed, parameter problem, redirects, ARP replies,
and the kernel's ICMP rate limits); IP options; martians; REJECT; LOG and
TRACE.  Rate-based matches are kept far from their boundaries.

Needs root (namespaces, iptables-legacy, raw sockets); skipped otherwise.
The last test prints how many cases (frames x checks) were compared.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_lab import (  # noqa: E402
    Frame,
    Outcome,
    Pause,
    Scenario,
    default_spec,
    lab_problem,
    run_scenario,
)
from scapy.all import (  # type: ignore[attr-defined]  # noqa: E402
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    IPerror,
    Raw,
    fragment,
    raw,
)

pytestmark = pytest.mark.skipif(lab_problem() is not None, reason=str(lab_problem()))

SPEC = default_spec()
GL, GWA, GD = "192.168.10.1", "203.0.113.1", "10.20.0.1"      # the gateway's addresses
L2, L3, L4 = "192.168.10.2", "192.168.10.3", "192.168.10.4"    # lan hosts
W2, W3 = "203.0.113.2", "203.0.113.3"                          # wan neighbours
X, Y = "198.51.100.7", "198.51.100.8"                          # behind W2
D2, D3 = "10.20.0.2", "10.20.0.3"                              # dmz hosts
NOWHERE = "100.64.0.1"                                         # no route
LAN_BCAST = "192.168.10.255"

_ids = itertools.count(0x2101)
RESULTS: dict[str, Outcome] = {}
TAG = f"gw{__import__('os').getpid() % 100000}:"


def ip(src: str, dst: str, **kw: Any) -> IP:
    """An IPv4 header with an ID unique to this module (host-made packets
    are told apart by their IDs)."""
    kw.setdefault("id", next(_ids))
    return IP(src=src, dst=dst, **kw)


def on(iface: str, pkt: Any, note: str = "", src_mac: str | None = None, dst_mac: str | None = None) -> Frame:
    i = SPEC.iface(iface)
    return Frame(iface, raw(Ether(dst=dst_mac or i.mac, src=src_mac or i.peer_mac) / pkt), note)


def local(pkt: Any, note: str = "") -> Frame:
    """A datagram the gateway itself sends (a raw IP_HDRINCL socket)."""
    return Frame("local", b"\x00" * 12 + b"\x08\x00" + raw(pkt), note)


def frags(iface: str, pkt: Any, size: int, note: str = "", order: list[int] | None = None) -> list[Frame]:
    pieces = fragment(pkt, fragsize=size)
    if order is not None:
        pieces = [pieces[k] for k in order]
    return [on(iface, p, f"{note} frag {k + 1}/{len(pieces)}") for k, p in enumerate(pieces)]


class Conv:
    """A scripted TCP conversation: the client's segments on `c_if` (from
    c to `to`), the server's on `s_if` (from s to `s_to`: the client as the
    server sees it after NAT)."""

    def __init__(self, c_if: str, c: tuple[str, int], to: tuple[str, int], s_if: str,
                 s: tuple[str, int] | None = None, s_to: tuple[str, int] | None = None) -> None:
        self.c_if, self.c, self.to, self.s_if = c_if, c, to, s_if
        self.s = s or to
        self.s_to = s_to or c
        self.cseq, self.sseq = 1000, 5000

    def cli(self, flags: str, data: bytes = b"", note: str = "", **kw: Any) -> Frame:
        """The client's next segment (an explicit seq= or ack= is a one-off
        that does not move the conversation on)."""
        pkt, nxt = self._seg(self.c, self.to, self.cseq, self.sseq, flags, data, kw)
        if nxt is not None:
            self.cseq = nxt
        return on(self.c_if, pkt, note or f"client {flags}")

    def srv(self, flags: str, data: bytes = b"", note: str = "", **kw: Any) -> Frame:
        pkt, nxt = self._seg(self.s, self.s_to, self.sseq, self.cseq, flags, data, kw)
        if nxt is not None:
            self.sseq = nxt
        return on(self.s_if, pkt, note or f"server {flags}")

    @staticmethod
    def _seg(a: tuple[str, int], b: tuple[str, int], seq: int, ack: int, flags: str, data: bytes,
             kw: dict[str, Any]) -> tuple[Any, int | None]:
        one_off = "seq" in kw or "ack" in kw
        seq = kw.pop("seq", seq) & 0xFFFFFFFF
        ack = kw.pop("ack", ack if "A" in flags else 0) & 0xFFFFFFFF
        kw.setdefault("window", 64240)
        pkt = ip(a[0], b[0], **kw.pop("ipkw", {})) / TCP(sport=a[1], dport=b[1], flags=flags, seq=seq,
                                                        ack=ack, **kw) / data
        nxt = seq + len(data) + ("S" in flags) + ("F" in flags)
        return pkt, None if one_off else nxt

    def handshake(self, mss: int | None = None) -> list[Frame]:
        opts = [("MSS", mss)] if mss else []
        return [self.cli("S", options=opts), self.srv("SA", options=opts), self.cli("A")]


def icmp_bytes(icmp_type: int, code: int, rest: int, data: bytes) -> Raw:
    """An ICMP message exactly as given (scapy pads some types)."""
    b = bytearray(bytes((icmp_type, code, 0, 0)) + rest.to_bytes(4, "big") + data)
    c = sum((b[k] << 8) | (b[k + 1] if k + 1 < len(b) else 0) for k in range(0, len(b), 2))
    while c >> 16:
        c = (c & 0xFFFF) + (c >> 16)
    b[2:4] = (~c & 0xFFFF).to_bytes(2, "big")
    return Raw(bytes(b))


def tables(**bodies: str) -> str:
    """iptables-restore text: the named tables with all their built-in
    chains (policy ACCEPT unless the body redeclares it) and the body."""
    chains = {"raw": "PREROUTING OUTPUT", "mangle": "PREROUTING INPUT FORWARD OUTPUT POSTROUTING",
              "nat": "PREROUTING INPUT OUTPUT POSTROUTING", "filter": "INPUT FORWARD OUTPUT"}
    out = ""
    for name in ("raw", "mangle", "nat", "filter"):
        if name not in bodies:
            continue
        body = bodies[name].strip("\n") + "\n"
        out += f"*{name}\n"
        declared = {line.split()[0][1:] for line in body.splitlines() if line.startswith(":")}
        out += "".join(f":{c} ACCEPT [0:0]\n" for c in chains[name].split() if c not in declared)
        out += body + "COMMIT\n"
    return out


# ====================================================================== scenarios
def sc_stateless_input() -> Scenario:
    """No conntrack anywhere: the filter table alone, the host's answers,
    header matches, fragments reassembled for local delivery."""
    rules = tables(filter=f"""
:tcpin - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m mac --mac-source 02:00:de:ad:be:ef -j DROP
-A INPUT -m pkttype --pkt-type broadcast -j LOG --log-prefix "{{T}}bcast "
-A INPUT -m addrtype --dst-type BROADCAST -j DROP
-A INPUT -p icmp -m icmp --icmp-type echo-request -m length --length 0:100 -m comment --comment "small pings" -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -j LOG --log-prefix "{{T}}bigping " --log-level 6
-A INPUT -p tcp -j tcpin
-A INPUT -p udp -m multiport --dports 53,67:68,123 -j ACCEPT
-A INPUT -p udp -m udp --sport 1000:2000 --dport 9 -j DROP
-A INPUT -p udp -m iprange --src-range {L3}-{L4} -j LOG --log-prefix "{{T}}range " --log-ip-options
-A INPUT -m ttl --ttl-lt 10 -j DROP
-A INPUT -m tos --tos Minimize-Delay -j ACCEPT
-A INPUT -m dscp --dscp-class EF -j ACCEPT
-A INPUT -p 253 -j ACCEPT
-A INPUT -s {L2} -d {GL} -i lan -p udp ! --dport 5000 -j ACCEPT
-A INPUT -f -j LOG --log-prefix "{{T}}frag "
-A tcpin -p tcp --tcp-flags SYN,ACK,FIN,RST SYN --dport 22 -j ACCEPT
-A tcpin -p tcp --syn --dport 23 -j REJECT --reject-with tcp-reset
-A tcpin -p tcp -m tcp --tcp-option 8 -j LOG --log-prefix "{{T}}tsopt " --log-tcp-options --log-tcp-sequence
-A tcpin -p tcp --dport 25 -j REJECT
-A tcpin -j RETURN
""")
    big = ip(L2, GL) / ICMP(id=9, seq=1) / (b"B" * 1572)
    fr = [
        on("lan", ip(L2, GL) / ICMP(id=7, seq=1) / b"hello", "small ping"),
        on("lan", ip(L2, GL) / ICMP(id=7, seq=2) / (b"x" * 200), "big ping"),
        on("lan", ip(L2, GL) / TCP(sport=40001, dport=22, flags="S", seq=11), "SYN to closed 22"),
        on("lan", ip(L2, GL) / TCP(sport=40002, dport=23, flags="S", seq=12), "SYN 23 rejected"),
        on("lan", ip(L2, GL) / TCP(sport=40003, dport=80, flags="A", seq=13, ack=99,
                                   options=[("NOP", None), ("NOP", None), ("Timestamp", (7, 8))]),
           "ACK with timestamps"),
        on("lan", ip(L2, GL) / TCP(sport=40004, dport=25, flags="S", seq=14), "SYN 25 REJECT"),
        on("lan", ip(L2, GL) / UDP(sport=5353, dport=53) / b"query", "udp 53 closed"),
        on("lan", ip(L2, GL) / UDP(sport=1500, dport=9) / b"discard", "udp 9 dropped"),
        on("lan", ip(L3, GL, options=b"\x01\x01\x01\x00") / UDP(sport=7, dport=5000) / b"r", "range"),
        on("lan", ip(L4, GL, ttl=5) / UDP(sport=7, dport=5000), "low ttl"),
        on("lan", ip(L2, GL, tos=0x10) / UDP(sport=7, dport=5000), "tos 0x10"),
        on("lan", ip(L2, GL, tos=0xB8) / UDP(sport=7, dport=5000), "dscp EF"),
        on("lan", ip(L2, GL, proto=253) / b"proto253", "unknown protocol"),
        on("lan", ip(L2, GL) / UDP(sport=7, dport=5000) / b"policy", "policy"),
        on("lan", ip(L2, LAN_BCAST) / UDP(sport=68, dport=67), "bcast", dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, LAN_BCAST) / ICMP(id=3), "bcast ping", dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, GL) / ICMP(id=8), "mac", src_mac="02:00:de:ad:be:ef"),
        *frags("lan", big, 800, "big fragmented ping"),
        on("lan", ip(L2, GL) / TCP(sport=40005, dport=81, flags="R", seq=15), "RST to closed"),
        on("lan", ip(L2, GL) / TCP(sport=40006, dport=82, flags="S", seq=16, chksum=0x1234), "bad tcp csum"),
    ]
    return Scenario("stateless-input", rules, fr)


def sc_forward_states() -> Scenario:
    """Every conntrack state, seen in FORWARD: NEW, ESTABLISHED (both
    directions), RELATED (an ICMP error about a flow), INVALID (a stray
    RST, an ICMP error about nothing, a bad checksum, a segment out of the
    window), UNTRACKED (NOTRACK and CT --notrack)."""
    rules = tables(raw="""
-A PREROUTING -p udp --dport 7777 -j NOTRACK
-A PREROUTING -p udp --dport 7778 -j CT --notrack
""", mangle="""
-A FORWARD -m conntrack --ctstate NEW -m conntrack --ctdir ORIGINAL
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY
-A FORWARD -m conntrack --ctstate RELATED --ctproto icmp
-A FORWARD -m conntrack --ctorigsrc 192.168.10.0/24 --ctorigdstport 80 --ctstatus SEEN_REPLY
-A FORWARD -m conntrack --ctstatus ASSURED
-A FORWARD -m conntrack --ctexpire 100:200
""", filter="""
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -m state --state RELATED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}invalid "
-A FORWARD -m state --state INVALID -j DROP
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
-A FORWARD -i lan -o wan -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -j LOG --log-prefix "{T}fwd-drop "
""")
    web = Conv("lan", (L2, 40010), (X, 80), "wan")
    fr = [
        *web.handshake(),
        web.cli("PA", b"GET / HTTP/1.0\r\n\r\n"),
        web.srv("PA", b"HTTP/1.0 200 OK\r\n\r\nhi"),
        web.cli("A"),
        web.srv("A", b"way out of the window", seq=web.sseq + 3_000_000_000, note="out of window"),
        web.cli("FA"),
        web.srv("FA"),
        web.cli("A"),
        on("lan", ip(L2, X) / UDP(sport=5300, dport=53) / b"q", "udp query"),
        on("wan", ip(X, L2) / UDP(sport=53, dport=5300) / b"answer", "udp answer"),
        on("lan", ip(L2, X) / ICMP(id=77, seq=1), "ping out"),
        on("wan", ip(X, L2) / ICMP(type=0, id=77, seq=1), "pong"),
        on("lan", ip(L2, Y) / UDP(sport=5301, dport=9) / b"to closed", "udp to closed"),
        on("wan", ip(Y, L2) / ICMP(type=3, code=3) / IPerror(raw(ip(L2, Y, id=0x2000) / UDP(sport=5301, dport=9)
                                                                   / b"to closed")), "port unreachable"),
        on("wan", ip(X, L2) / ICMP(type=3, code=1) / IPerror(raw(ip(L2, X, id=0x2001) / UDP(sport=1, dport=2))),
           "error about nothing"),
        on("wan", ip(X, L2) / TCP(sport=80, dport=40999, flags="R", seq=1), "stray RST"),
        on("wan", ip(X, L2) / TCP(sport=80, dport=40998, flags="S"), "NEW from wan"),
        on("lan", ip(L2, X) / TCP(sport=40011, dport=80, flags="S", chksum=0x4321), "bad checksum"),
        on("lan", ip(L2, X) / UDP(sport=5302, dport=7777) / b"untracked", "NOTRACK"),
        on("lan", ip(L2, X) / UDP(sport=5303, dport=7778) / b"untracked", "CT --notrack"),
        on("wan", ip(X, L2) / UDP(sport=7777, dport=5302) / b"untracked back", "NOTRACK back"),
        on("lan", ip(L3, L4) / UDP(sport=1, dport=1), "same link: redirect, RELATED in OUTPUT"),
    ]
    return Scenario("forward-states", rules, fr)


def sc_masquerade() -> Scenario:
    """MASQUERADE with replies, a port clash settled in a two-port range,
    ICMP echo through NAT, an ICMP error about a NATed flow (inner header
    translated back), a null binding's conntrack entry."""
    rules = tables(nat="""
-A POSTROUTING -o wan -p tcp -j MASQUERADE --to-ports 40000-40001
-A POSTROUTING -o wan -p udp --dport 53 -j SNAT --to-source 203.0.113.9
-A POSTROUTING -o wan -j MASQUERADE
""", filter="""
-A FORWARD -m conntrack --ctstate DNAT -j LOG --log-prefix "{T}dnat? "
-A FORWARD -m conntrack --ctstate SNAT -o lan
-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
""")
    a = Conv("lan", (L2, 40000), (X, 80), "wan", s_to=(GWA, 40000))
    b = Conv("lan", (L3, 40000), (X, 80), "wan", s_to=(GWA, 40001))
    fr = [
        a.cli("S"), a.srv("SA"), a.cli("A"),
        b.cli("S", note="clash: 40000 taken"), b.srv("SA"), b.cli("A"),
        a.cli("PA", b"data a"), b.cli("PA", b"data b"),
        a.srv("PA", b"reply a"), b.srv("PA", b"reply b"),
        on("lan", ip(L2, X) / UDP(sport=3333, dport=53) / b"dns", "snat udp"),
        on("wan", ip(X, "203.0.113.9") / UDP(sport=53, dport=3333) / b"dns answer", "snat reply"),
        on("lan", ip(L4, Y) / ICMP(id=0x4242, seq=1) / b"ping", "ping masq"),
        on("wan", ip(Y, GWA) / ICMP(type=0, id=0x4242, seq=1) / b"ping", "pong masq"),
        on("lan", ip(L4, Y) / UDP(sport=4444, dport=4444) / b"closed", "udp masq"),
        on("wan", ip(Y, GWA) / ICMP(type=3, code=3) / IPerror(raw(ip(GWA, Y, id=0x2002) / UDP(sport=4444, dport=4444)
                                                                    / b"closed")), "port unreachable masq"),
        on("wan", ip(X, GWA) / UDP(sport=1, dport=2), "to the gateway, null binding"),
    ]
    return Scenario("masquerade", rules, fr)


def sc_dnat_redirect() -> Scenario:
    """DNAT to the dmz (a port range: the first free port), REDIRECT to the
    gateway (a closed port: the port unreachable's inner header is
    translated back; an open UDP service swallows), OUTPUT DNAT, SNAT for
    hairpin."""
    spec = default_spec()
    spec.services.append(("udp", 5353, None))
    rules = tables(nat=f"""
-A PREROUTING -i wan -d {GWA} -p tcp --dport 8080 -j DNAT --to-destination {D2}:80
-A PREROUTING -i wan -d {GWA} -p tcp --dport 8081 -j DNAT --to-destination {D2}:81-82
-A PREROUTING -i lan -p udp --dport 53 -j REDIRECT --to-ports 5353
-A PREROUTING -i lan -p udp --dport 54 -j REDIRECT --to-ports 5354
-A PREROUTING -i lan -d {GWA} -p tcp --dport 8080 -j DNAT --to-destination {D2}:80
-A POSTROUTING -o dmz -s 192.168.10.0/24 -d {D2} -j SNAT --to-source {GD}
-A OUTPUT -d 203.0.113.77 -p udp -j DNAT --to-destination {D3}
""", filter=f"""
-A INPUT -p udp -j LOG --log-prefix "{{T}}in-udp "
-A FORWARD -o dmz -m conntrack --ctstate DNAT --ctorigdst {GWA} --ctrepldst 10.20.0.0/24
-A OUTPUT -p icmp -j LOG --log-prefix "{{T}}out-icmp "
""")
    web = Conv("wan", (X, 33000), (GWA, 8080), "dmz", s=(D2, 80))
    web2 = Conv("wan", (Y, 33001), (GWA, 8081), "dmz", s=(D2, 81))
    web3 = Conv("wan", (Y, 33002), (GWA, 8081), "dmz", s=(D2, 82), s_to=(Y, 33002))
    hair = Conv("lan", (L2, 33003), (GWA, 8080), "dmz", s=(D2, 80), s_to=(GD, 33003))
    fr = [
        web.cli("S"), web.srv("SA"), web.cli("A"), web.cli("PA", b"get"), web.srv("PA", b"page"),
        web2.cli("S"), web2.srv("SA"),
        web3.cli("S", note="same client, other port: 81 again (another tuple)"), web3.srv("SA"),
        hair.cli("S", note="hairpin"), hair.srv("SA"), hair.cli("A"),
        on("lan", ip(L2, "8.8.8.8") / UDP(sport=6000, dport=53) / b"dns", "redirect to open 5353"),
        on("lan", ip(L2, "8.8.8.8") / UDP(sport=6001, dport=54) / b"dns", "redirect to closed 5354"),
        local(ip(GWA, "203.0.113.77") / UDP(sport=7000, dport=7001) / b"local dnat", "OUTPUT DNAT"),
    ]
    return Scenario("dnat-redirect", rules, fr, spec)


def sc_fragments() -> Scenario:
    """Fragments with conntrack (defragmented in PREROUTING, sent on as the
    pieces came, or refragmented to the dmz MTU), out of order, to the host
    (a fragmented echo and its fragmented reply), DF over the MTU
    (fragmentation needed), TTL exceeded, net unreachable."""
    rules = tables(raw="""
-A PREROUTING -p udp -j LOG --log-prefix "{T}raw "
""", filter="""
-A FORWARD -p udp -m length --length 2000:65535 -j LOG --log-prefix "{T}whole "
-A FORWARD -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -m length --length 1000:65535 -j LOG --log-prefix "{T}in-big "
""")
    u1 = ip(L2, X) / UDP(sport=9000, dport=9001) / (b"u" * 2400)
    u2 = ip(L2, D2) / UDP(sport=9002, dport=9003) / (b"d" * 1400)
    u3 = ip(L3, X) / UDP(sport=9004, dport=9005) / (b"o" * 1800)
    ping = ip(L2, GL) / ICMP(id=5, seq=5) / (b"p" * 3000)
    fr = [
        *frags("lan", u1, 1000, "udp to wan"),
        *frags("lan", u2, 1000, "udp to dmz (refragmented)"),
        *frags("lan", u3, 600, "out of order", order=[2, 0, 1]),
        *frags("lan", ping, 1480, "ping the host"),
        on("lan", ip(L2, D2, flags="DF") / UDP(sport=9006, dport=9007) / (b"f" * 1300), "DF over mtu"),
        on("lan", ip(L2, X, ttl=1) / UDP(sport=9008, dport=9009), "ttl 1"),
        on("lan", ip(L2, NOWHERE) / UDP(sport=9010, dport=9011), "no route"),
        on("lan", ip(L2, D2) / UDP(sport=9012, dport=9013) / (b"n" * 1400), "not DF over mtu"),
        # DF on every piece: conntrack's defrag lets the whole through (ignore_df)
        # when no piece exceeds the egress MTU, else fragmentation needed
        *frags("lan", ip(L2, X, flags="DF") / UDP(sport=9014, dport=9015) / (b"k" * 2400), 1000, "DF pieces"),
        *frags("lan", ip(L2, D2, flags="DF") / UDP(sport=9016, dport=9017) / (b"K" * 2400), 1400,
               "DF pieces over the dmz mtu"),
    ]
    return Scenario("fragments", rules, fr)


def sc_fragments_stateless() -> Scenario:
    """Without conntrack: every fragment forwarded on its own (and a
    fragment too big for the dmz fragmented again); errors without NAT."""
    rules = tables(filter="""
-A FORWARD -f -j LOG --log-prefix "{T}later-frag "
-A FORWARD -p udp -m udp --dport 9101
""")
    u = ip(L2, D2) / UDP(sport=9100, dport=9101) / (b"s" * 2800)
    fr = [
        *frags("lan", u, 1400, "udp to dmz"),
        *frags("lan", ip(L2, GL) / ICMP(id=6, seq=6) / (b"q" * 2000), 1000, "ping the host"),
        on("wan", ip(X, D2, ttl=1) / TCP(sport=1, dport=2, flags="S"), "ttl 1 tcp"),
        *frags("lan", ip(L2, X, ttl=1) / UDP(sport=9102, dport=9103) / (b"t" * 1200), 600, "ttl 1 pieces",
               order=[1, 0]),
    ]
    return Scenario("fragments-stateless", rules, fr)


def sc_reject() -> Scenario:
    """REJECT with every reply type, in INPUT, FORWARD and OUTPUT."""
    rules = tables(filter="""
-A INPUT -p udp --dport 1 -j REJECT --reject-with icmp-net-unreachable
-A INPUT -p udp --dport 2 -j REJECT --reject-with icmp-host-unreachable
-A INPUT -p udp --dport 3 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p udp --dport 4 -j REJECT --reject-with icmp-proto-unreachable
-A INPUT -p udp --dport 5 -j REJECT --reject-with icmp-net-prohibited
-A INPUT -p udp --dport 6 -j REJECT --reject-with icmp-host-prohibited
-A INPUT -p udp --dport 7 -j REJECT --reject-with icmp-admin-prohibited
-A INPUT -p tcp --dport 8 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -p icmp -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -p udp -j REJECT
-A OUTPUT -p udp --dport 9 -j REJECT
-A OUTPUT -p icmp --icmp-type port-unreachable -j LOG --log-prefix "{T}out-unreach "
""")
    fr = [on("lan", ip(L2, GL) / UDP(sport=100 + n, dport=n) / b"rej", f"udp {n}") for n in range(1, 8)]
    fr += [
        on("lan", ip(L2, GL) / TCP(sport=2000, dport=8, flags="S", seq=77), "tcp 8"),
        on("lan", ip(L2, GL) / TCP(sport=2001, dport=8, flags="PA", seq=78, ack=5) / b"data", "tcp 8 data"),
        on("lan", ip(L2, X) / TCP(sport=2002, dport=25, flags="S", seq=79), "fwd smtp"),
        on("wan", ip(X, L2) / ICMP(id=1, seq=1), "fwd ping"),
        on("dmz", ip(D2, L2) / UDP(sport=53, dport=53) / b"x", "fwd udp"),
        on("lan", ip(L2, GL) / ICMP(type=3, code=3) / IPerror(raw(ip(GL, L2, id=0x2003) / UDP(sport=1, dport=3))),
           "icmp error to host"),
        local(ip(GL, L2) / UDP(sport=8000, dport=9) / b"local", "OUTPUT reject"),
    ]
    return Scenario("reject", rules, fr)


def sc_mangle() -> Scenario:
    """MARK, CONNMARK (set, save, restore; connmark and mark matches), TOS,
    DSCP, TTL, TCPMSS on forwarded traffic; LOG shows MARK=."""
    rules = tables(mangle="""
-A PREROUTING -i lan -p tcp -j MARK --set-xmark 0x11/0xff
-A PREROUTING -i lan -p udp -j MARK --set-mark 0x22
-A PREROUTING -m mark --mark 0x22 -j CONNMARK --save-mark
-A PREROUTING -i wan -j CONNMARK --restore-mark
-A PREROUTING -i wan -p udp --sport 5000 -j TTL --ttl-set 1
-A FORWARD -p tcp -j CONNMARK --set-xmark 0x100/0xf00
-A FORWARD -m mark --mark 0x11 -j MARK --or-mark 0x1000
-A FORWARD -m connmark --mark 0x100/0xf00 -j TOS --set-tos 0x10
-A FORWARD -o dmz -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
-A FORWARD -o wan -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1000
-A FORWARD -p udp --dport 6000 -j DSCP --set-dscp-class AF41
-A FORWARD -p udp --dport 6001 -j TTL --ttl-inc 10
-A FORWARD -p udp --dport 6002 -j TTL --ttl-dec 3
-A POSTROUTING -p udp --dport 6003 -j TOS --and-tos 0x0f
-A POSTROUTING -m mark ! --mark 0 -j LOG --log-prefix "{T}marked "
""", filter="""
-A FORWARD -m connmark --mark 0x22 -j LOG --log-prefix "{T}connmark22 "
-A FORWARD -m mark --mark 0x1011
""")
    to_dmz = Conv("lan", (L2, 41000), (D2, 22), "dmz")
    to_wan = Conv("lan", (L2, 41001), (X, 443), "wan")
    fr = [
        *to_dmz.handshake(mss=1460),
        to_dmz.cli("PA", b"ssh"),
        *to_wan.handshake(mss=1460),
        on("lan", ip(L2, X, tos=0x0C) / UDP(sport=6100, dport=6000) / b"d", "dscp"),
        on("lan", ip(L2, X) / UDP(sport=6101, dport=6001) / b"d", "ttl inc"),
        on("lan", ip(L2, X, ttl=3) / UDP(sport=6102, dport=6002) / b"d", "ttl dec to 0"),
        on("lan", ip(L2, X, tos=0xFC) / UDP(sport=6103, dport=6003) / b"d", "and-tos"),
        on("wan", ip(X, L2) / UDP(sport=6003, dport=6103) / b"r", "reply: restore mark"),
        on("wan", ip(X, L2) / UDP(sport=5000, dport=6104) / b"t", "ttl set 1 in PREROUTING"),
    ]
    return Scenario("mangle", rules, fr)


def sc_raw_ct() -> Scenario:
    """CT zones and event masks in raw, a zoned connection next to an
    unzoned one with the same tuple, untracked traffic to the host."""
    rules = tables(raw="""
-A PREROUTING -i dmz -j CT --zone 7
-A PREROUTING -i lan -p udp --dport 4000 -j CT --ctevents new,destroy
-A PREROUTING -p udp --dport 4001 -j NOTRACK
-A OUTPUT -p udp --sport 4001 -j NOTRACK
""", filter="""
-A INPUT -m conntrack --ctstate UNTRACKED -j LOG --log-prefix "{T}untracked "
-A INPUT -m conntrack --ctstate NEW -p udp --dport 4000
-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -m state --state UNTRACKED
""")
    fr = [
        on("lan", ip(L2, X) / UDP(sport=4000, dport=4000) / b"z0", "zone 0"),
        on("dmz", ip(D2, X) / UDP(sport=4000, dport=4000) / b"z7", "zone 7"),
        on("wan", ip(X, D2) / UDP(sport=4000, dport=4000) / b"z7?", "reply in zone 0? a new flow"),
        on("lan", ip(L2, GL) / UDP(sport=4001, dport=4001) / b"untracked", "untracked to host"),
        on("lan", ip(L2, GL) / UDP(sport=4002, dport=4000) / b"events", "ctevents to host"),
        on("lan", ip(L3, GL) / ICMP(id=11) / b"ping", "ping, reply tracked"),
    ]
    return Scenario("raw-ct", rules, fr)


def sc_rates() -> Scenario:
    """limit, hashlimit and recent, far from their boundaries."""
    rules = tables(filter=f"""
:ssh - [0:0]
-A INPUT -p icmp -m limit --limit 1/sec --limit-burst 2 -j ACCEPT
-A INPUT -p icmp -j LOG --log-prefix "{{T}}over-limit "
-A INPUT -p icmp -j DROP
-A INPUT -p udp -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip \
--hashlimit-name gwl{{T_}} -j ACCEPT
-A INPUT -p udp -m hashlimit --hashlimit-above 100/sec --hashlimit-mode dstport --hashlimit-name gwm{{T_}}
-A INPUT -p udp -j DROP
-A INPUT -p tcp --dport 22 --syn -j ssh
-A ssh -m recent --name gws{{T_}} --rcheck --seconds 60 --hitcount 3 -j LOG --log-prefix "{{T}}ssh-flood "
-A ssh -m recent --name gws{{T_}} --rcheck --seconds 60 --hitcount 3 -j DROP
-A ssh -m recent --name gws{{T_}} --set
-A ssh -s {L3} -m recent --name gws{{T_}} --remove
-A ssh -m recent --name gwd{{T_}} --rdest --update --seconds 60
-A ssh -m recent --name gwd{{T_}} --rdest --set
""")
    fr: list[Frame | Pause] = [on("lan", ip(L2, GL) / ICMP(id=20, seq=n), f"ping {n}") for n in range(4)]
    fr += [on("lan", ip(L2 if n % 2 else L3, GL) / UDP(sport=100, dport=200 + n), f"udp {n}") for n in range(6)]
    fr += [on("lan", ip(L2, GL) / TCP(sport=50000 + n, dport=22, flags="S"), f"ssh {n}") for n in range(5)]
    fr += [on("lan", ip(L3, GL) / TCP(sport=50100, dport=22, flags="S"), "ssh from L3 (removed)")]
    fr += [Pause(1.3), on("lan", ip(L2, GL) / ICMP(id=20, seq=9), "ping after a pause: one token back")]
    return Scenario("rates", rules, fr)


def sc_output() -> Scenario:
    """Frames the gateway sends itself: owner, addrtype, mark in OUTPUT,
    nat OUTPUT, REJECT in OUTPUT, the host's own replies through OUTPUT
    (a kernel socket: --socket-exists without uid), LOG --log-uid."""
    rules = tables(mangle="""
-A OUTPUT -p udp --dport 7100 -j MARK --set-mark 0x7
-A OUTPUT -m owner --uid-owner 0 -j CONNMARK --set-mark 0x9
""", nat=f"""
-A POSTROUTING -o wan -s {GL} -j SNAT --to-source {GWA}
""", filter="""
-A OUTPUT -m owner --uid-owner 0 --gid-owner 0 -j LOG --log-prefix "{T}root " --log-uid
-A OUTPUT -m owner --socket-exists ! --uid-owner 0 -j LOG --log-prefix "{T}kernel-sk " --log-uid
-A OUTPUT -m owner ! --socket-exists -j LOG --log-prefix "{T}no-sk "
-A OUTPUT -m addrtype --src-type LOCAL --dst-type UNICAST -p udp --dport 7101 -j REJECT
-A OUTPUT -m mark --mark 0x7 -j LOG --log-prefix "{T}mark7 "
-A OUTPUT -m connmark --mark 0x9 -p tcp
-A INPUT -p tcp --dport 9999 -j REJECT --reject-with tcp-reset
""")
    fr = [
        local(ip(GL, L2) / UDP(sport=7000, dport=7100) / b"marked", "mark"),
        local(ip(GL, L2) / UDP(sport=7000, dport=7101) / b"rejected", "REJECT in OUTPUT"),
        local(ip(GL, X) / TCP(sport=7002, dport=80, flags="S", seq=1), "SNAT from OUTPUT"),
        on("wan", ip(X, GWA) / TCP(sport=80, dport=7002, flags="SA", seq=9, ack=2), "reply to the local SYN"),
        local(ip(GWA, D2) / ICMP(id=31, seq=1) / b"local ping", "local ping"),
        on("dmz", ip(D2, GWA) / ICMP(type=0, id=31, seq=1) / b"local ping", "reply"),
        on("lan", ip(L2, GL) / ICMP(id=32) / b"ping me", "echo reply from a kernel socket"),
        on("lan", ip(L2, GL) / TCP(sport=3000, dport=9999, flags="S"), "REJECT tcp-reset: no socket"),
        on("lan", ip(L2, GL) / TCP(sport=3001, dport=9998, flags="S"), "closed port: ctl socket"),
    ]
    return Scenario("output", rules, fr)


def sc_queues_trace() -> Scenario:
    """NFLOG (goes on), NFQUEUE with nobody listening (drop; with
    --queue-bypass: accept), TRACE from raw through every table."""
    rules = tables(raw="""
-A PREROUTING -p udp --dport 4444 -j TRACE
""", mangle="""
-A FORWARD -p udp --dport 4444 -j NFLOG --nflog-group 3 --nflog-prefix nflog-test
""", filter="""
:chk - [0:0]
-A FORWARD -p udp --dport 6000 -j NFQUEUE --queue-num 3
-A FORWARD -p udp --dport 6001 -j NFQUEUE --queue-num 4 --queue-bypass
-A FORWARD -p udp --dport 6001 -j LOG --log-prefix "{T}bypassed "
-A FORWARD -p udp --dport 4444 -j chk
-A chk -p udp --sport 1 -j RETURN
-A chk -j LOG --log-prefix "{T}chk "
""")
    fr = [
        on("lan", ip(L2, X) / UDP(sport=1, dport=6000) / b"queued", "queue 3"),
        on("lan", ip(L2, X) / UDP(sport=1, dport=6001) / b"bypass", "queue 4 bypass"),
        on("lan", ip(L2, X) / UDP(sport=1, dport=4444) / b"traced", "trace"),
        on("lan", ip(L2, X) / UDP(sport=2, dport=4444) / b"traced", "trace, chk logs"),
    ]
    return Scenario("queues-trace", rules, fr)


def sc_arp() -> Scenario:
    """ARP: requests for each of the gateway's addresses (Linux answers for
    any of them on any interface), for another address, a gratuitous one;
    IPv4 still flows after."""
    rules = tables(filter="""
-A INPUT -p icmp
""")
    lan = SPEC.iface("lan")

    def who_has(target: str, sender: str = L2, dst: str = "ff:ff:ff:ff:ff:ff") -> Frame:
        return Frame("lan", raw(Ether(dst=dst, src=lan.peer_mac)
                                / ARP(op=1, hwsrc=lan.peer_mac, psrc=sender, pdst=target)), f"who-has {target}")

    fr = [
        who_has(GL),
        who_has(GWA),
        who_has(L3),
        who_has(GL, dst=lan.mac),
        who_has(L2, sender=L2),
        on("lan", ip(L2, GL) / ICMP(id=1), "ping after ARP"),
    ]
    return Scenario("arp", rules, fr)


def sc_tcp_lifecycle() -> Scenario:
    """The TCP tracker through a whole life and its odd turns: SYN
    retransmission, data, half close, TIME_WAIT and a reopen on the same
    tuple; a refused connection; a reset one; mid-stream pickup (loose);
    a SYN-ACK that acknowledges the wrong sequence; a window violation."""
    rules = tables(mangle="""
-A FORWARD -m conntrack --ctstate NEW
-A FORWARD -m conntrack --ctstate ESTABLISHED
-A FORWARD -m conntrack --ctstate INVALID
-A FORWARD -m conntrack --ctstatus ASSURED
""", filter="""
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}invalid " --log-tcp-sequence
-A FORWARD -m conntrack --ctstate INVALID -j DROP
""")
    a = Conv("lan", (L2, 42000), (X, 80), "wan")
    b = Conv("lan", (L2, 42001), (X, 81), "wan")
    c = Conv("lan", (L2, 42002), (X, 82), "wan")
    d = Conv("lan", (L2, 42003), (X, 83), "wan")
    e = Conv("lan", (L2, 42004), (X, 84), "wan")
    fr: list[Frame | Pause] = [
        a.cli("S", options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b"")]),
        a.cli("S", options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b"")], seq=a.cseq - 1,
              note="SYN retransmitted"),
        a.srv("SA", options=[("MSS", 1400), ("WScale", 5)]),
        a.cli("A"),
        a.cli("PA", b"request"),
        a.srv("A"),
        a.srv("PA", b"response " * 10),
        a.cli("FA", note="client closes"),
        a.srv("A", note="server acks the FIN"),
        a.srv("PA", b"late data", note="half-closed data"),
        a.cli("A"),
        a.srv("FA", note="server closes"),
        a.cli("A", note="into TIME_WAIT"),
    ]
    a2 = Conv("lan", (L2, 42000), (X, 80), "wan")
    a2.cseq, a2.sseq = 900000, 700000
    fr += [a2.cli("S", note="reopen from TIME_WAIT"), a2.srv("SA"), a2.cli("A")]
    fr += [b.cli("S"), b.srv("RA", seq=0, note="refused")]
    fr += [*c.handshake(), c.cli("RA", note="client resets"), c.srv("PA", b"after reset")]
    fr += [d.cli("A", b"mid-stream", note="pickup"), d.srv("A", b"answer")]
    fr += [e.cli("S"), e.srv("SA", ack=12345, note="SYN-ACK with the wrong ack"), e.srv("SA", note="the right one"),
           e.cli("A"), e.cli("PA", b"x" * 100, seq=e.cseq + 400000, note="beyond the window")]
    return Scenario("tcp-lifecycle", rules, fr)


def sc_udp_icmp_tracking() -> Scenario:
    """UDP: unreplied, replied, a stream assured after two seconds; ICMP:
    an echo reply nobody asked for, a repeated id, a timestamp query."""
    rules = tables(filter="""
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstatus ASSURED
""")
    fr: list[Frame | Pause] = [
        on("lan", ip(L2, X) / UDP(sport=7000, dport=7000) / b"one", "udp out"),
        on("wan", ip(X, L2) / UDP(sport=7000, dport=7000) / b"back", "udp reply"),
        on("lan", ip(L2, X) / UDP(sport=7001, dport=7001) / b"lonely", "unreplied"),
        on("wan", ip(X, L2) / ICMP(type=0, id=99, seq=1), "unsolicited echo reply"),
        on("lan", ip(L2, X) / ICMP(id=98, seq=1), "echo"),
        on("lan", ip(L2, X) / ICMP(id=98, seq=2), "echo again, same id"),
        on("wan", ip(X, L2) / ICMP(type=0, id=98, seq=2), "reply"),
        on("lan", ip(L2, X) / ICMP(type=13, id=97, seq=1) / (b"\x00" * 12), "timestamp query"),
        on("wan", ip(X, L2) / ICMP(type=14, id=97, seq=1) / (b"\x00" * 12), "timestamp reply"),
        Pause(2.4),
        on("lan", ip(L2, X) / UDP(sport=7000, dport=7000) / b"still here", "stream: assured"),
        on("lan", ip(L2, X) / UDP(sport=7002, dport=7002, chksum=0x1111) / b"bad", "bad udp checksum"),
        on("lan", ip(L2, X) / UDP(sport=7003, dport=7003, chksum=0) / b"no checksum", "udp without checksum"),
    ]
    return Scenario("udp-icmp-tracking", rules, fr)


def sc_nat_more() -> Scenario:
    """SNAT to an address range (the kernel's unkeyed jhash) and
    --persistent, DNAT to an address range, fragments through MASQUERADE
    (reassembled, translated, fragmented again), an ICMP error about a
    DNATed flow coming back from the far side, REDIRECT in OUTPUT."""
    rules = tables(nat=f"""
-A PREROUTING -i wan -d {GWA} -p udp --dport 5000 -j DNAT --to-destination {D2}-{D3}
-A PREROUTING -i wan -d {GWA} -p tcp --dport 8080 -j DNAT --to-destination {D2}:80
-A POSTROUTING -o wan -s {L2} -p udp -j SNAT --to-source 203.0.113.3-203.0.113.9
-A POSTROUTING -o wan -s {L3} -p udp -j SNAT --to-source 203.0.113.3-203.0.113.9 --persistent
-A POSTROUTING -o wan -j MASQUERADE
-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports 5353
""", filter="""
-A INPUT -p udp --dport 5353 -j LOG --log-prefix "{T}redirected "
""")
    big = ip(L4, X) / UDP(sport=8000, dport=8001) / (b"F" * 3000)
    web = Conv("wan", (X, 34000), (GWA, 8080), "dmz", s=(D2, 80))
    inner = raw(ip(GWA, X, id=0x2004) / TCP(sport=8080, dport=34000, flags="SA", seq=5000, ack=1001))
    fr: list[Frame | Pause] = [
        on("lan", ip(L2, X) / UDP(sport=6000, dport=6000) / b"r1", "snat range"),
        on("lan", ip(L2, Y) / UDP(sport=6001, dport=6001) / b"r2", "snat range, other dst"),
        on("lan", ip(L3, X) / UDP(sport=6002, dport=6002) / b"p1", "persistent"),
        on("lan", ip(L3, Y) / UDP(sport=6003, dport=6003) / b"p2", "persistent, other dst"),
        on("wan", ip(X, GWA) / UDP(sport=5001, dport=5000) / b"d1", "dnat range"),
        on("wan", ip(Y, GWA) / UDP(sport=5001, dport=5000) / b"d2", "dnat range, other src"),
        *frags("lan", big, 1000, "fragments through masquerade"),
        *frags("wan", ip(X, GWA) / UDP(sport=8001, dport=8000) / (b"R" * 2000), 1200, "fragmented reply"),
        web.cli("S"), web.srv("SA"),
        on("wan", ip(X, GWA) / ICMP(type=3, code=4, nexthopmtu=1200) / IPerror(inner), "frag needed about dnat"),
        local(ip(GWA, X) / UDP(sport=1053, dport=53) / b"q", "local dns redirected"),
    ]
    return Scenario("nat-more", rules, fr)


def sc_ip_options() -> Scenario:
    """IP options: Record Route filled in on forwarding, echoed by the
    host's echo reply, router alert, a malformed option (parameter
    problem), source routing refused."""
    rules = tables(filter="""
-A FORWARD -j LOG --log-prefix "{T}fwd " --log-ip-options
-A FORWARD -p udp --dport 9 -j REJECT
-A INPUT -j LOG --log-prefix "{T}in " --log-ip-options
""", mangle="""
-A POSTROUTING -j LOG --log-prefix "{T}post " --log-ip-options
""")
    rr = b"\x07\x0b\x04" + b"\x00" * 8 + b"\x00"          # record route, room for 2, + EOL
    ra = b"\x94\x04\x00\x00"                               # router alert
    odd = b"\x07\x03\x09\x00"                              # record route, pointer past the end: fine
    bad = b"\x07\x02\x00\x00"                              # record route too short: parameter problem
    lsrr = b"\x83\x07\x04" + bytes([10, 20, 0, 2]) + b"\x00"
    fr = [
        on("lan", ip(L2, X, options=rr) / UDP(sport=1, dport=2) / b"rr", "record route forwarded"),
        on("lan", ip(L2, GL, options=rr) / ICMP(id=1, seq=1) / b"rr", "record route echo"),
        on("lan", ip(L2, X, options=ra) / UDP(sport=1, dport=3), "router alert forwarded"),
        on("lan", ip(L2, X, options=odd) / UDP(sport=1, dport=4), "odd option"),
        on("lan", ip(L2, X, options=bad) / UDP(sport=1, dport=4), "bad option"),
        on("lan", ip(L2, X, options=rr, ttl=1) / UDP(sport=1, dport=7), "record route, ttl exceeded"),
        on("lan", ip(L3, X, options=rr) / UDP(sport=1, dport=9), "record route, REJECT: stale header sum"),
        on("lan", ip(L3, X, options=rr) / UDP(sport=1, dport=9, chksum=0), "record route, REJECT, no udp sum"),
        on("lan", ip(L3, X, options=b"\x07\x07\x08\x01\x02\x03\x04\x00") / UDP(sport=1, dport=9),
           "full record route, REJECT"),
        on("lan", ip(L4, GL, options=rr) / TCP(sport=1, dport=9, flags="S"), "record route, RST"),
        on("lan", ip(L4, GL, options=rr) / UDP(sport=1, dport=9), "record route, port unreachable"),
        on("lan", ip(L2, X, options=lsrr) / UDP(sport=1, dport=5), "loose source route"),
        on("lan", ip(L2, GL, options=b"\x01\x01\x01\x00") / TCP(sport=1, dport=6, flags="S"), "nops to host"),
        on("lan", ip(L2, D2, options=rr) / UDP(sport=1, dport=8) / (b"o" * 1400), "record route, fragmented to dmz"),
        on("lan", ip(L2, D2, options=b"\x94\x04\x00\x00") / UDP(sport=1, dport=8) / (b"o" * 1400),
           "router alert (copied), fragmented to dmz"),
    ]
    return Scenario("ip-options", rules, fr)


def sc_redirect_and_martians() -> Scenario:
    """Back out of the interface it came in on (an ICMP redirect, then the
    packet), martian sources and destinations, limited and subnet
    broadcast, multicast, rp_filter on wan."""
    spec = default_spec(**{"net.ipv4.conf.wan.rp_filter": 1})
    rules = tables(raw="""
-A PREROUTING -j LOG --log-prefix "{T}pre "
""", filter="""
-A INPUT -j LOG --log-prefix "{T}in "
-A FORWARD -j LOG --log-prefix "{T}fwd "
""")
    fr = [
        on("lan", ip(L2, L3) / UDP(sport=1, dport=1) / b"via me", "same interface: redirect"),
        on("wan", ip(L2, GWA) / UDP(sport=1, dport=2), "lan source on wan: rp_filter"),
        on("wan", ip(X, GWA) / UDP(sport=1, dport=3), "good source on wan"),
        on("lan", ip("127.0.0.1", GL) / UDP(sport=1, dport=4), "loopback source"),
        on("lan", ip(L2, "127.0.0.1") / UDP(sport=1, dport=5), "loopback destination"),
        on("lan", ip(GL, GL) / UDP(sport=1, dport=6), "my own address as source"),
        on("lan", ip("0.0.0.0", "255.255.255.255") / UDP(sport=68, dport=67) / b"dhcp", "dhcp discover",
           dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, "255.255.255.255") / UDP(sport=1, dport=7), "limited broadcast",
           dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, "224.0.0.1") / ICMP(id=2), "all-hosts ping", dst_mac="01:00:5e:00:00:01"),
        on("lan", ip(L2, "239.1.2.3") / UDP(sport=1, dport=8), "other group", dst_mac="01:00:5e:01:02:03"),
        on("lan", ip("240.0.0.1", GL) / UDP(sport=1, dport=9), "class E source"),
        on("lan", ip(L2, "10.20.0.255") / UDP(sport=1, dport=10), "dmz broadcast from lan"),
    ]
    return Scenario("redirect-and-martians", rules, fr, spec)


def sc_forwarding_per_device() -> Scenario:
    """ip_forward on, but forwarding off on wan: what comes in on wan is
    not forwarded (and no ICMP says so); lan still forwards to wan."""
    spec = default_spec(**{"net.ipv4.conf.wan.forwarding": 0})
    rules = tables(filter="""
-A FORWARD -j LOG --log-prefix "{T}fwd "
""")
    fr = [
        on("lan", ip(L2, X) / UDP(sport=1, dport=1), "lan to wan"),
        on("wan", ip(X, L2) / UDP(sport=1, dport=1), "wan to lan: not forwarded"),
        on("wan", ip(X, NOWHERE) / UDP(sport=1, dport=2), "wan, no route"),
        on("lan", ip(L2, NOWHERE) / UDP(sport=1, dport=3), "lan, no route"),
        on("wan", ip(X, GL) / ICMP(id=3), "to the host through wan"),
    ]
    return Scenario("forwarding-per-device", rules, fr, spec)


def sc_no_forwarding() -> Scenario:
    """ip_forward 0: nothing forwarded, no ICMP for it; the host still
    answers for itself."""
    spec = default_spec(**{"net.ipv4.ip_forward": 0})
    rules = tables(filter="""
-A INPUT -j LOG --log-prefix "{T}in "
""")
    fr = [
        on("lan", ip(L2, X) / UDP(sport=1, dport=1), "not forwarded"),
        on("lan", ip(L2, NOWHERE) / UDP(sport=1, dport=2), "no route"),
        on("lan", ip(L2, GWA) / ICMP(id=4), "to the wan address"),
        on("lan", ip(L2, GL) / UDP(sport=1, dport=3), "closed port"),
    ]
    return Scenario("no-forwarding", rules, fr, spec)


def sc_host_answers() -> Scenario:
    """The host's own stack: what it answers and what it swallows."""
    spec = default_spec(**{"net.ipv4.icmp_echo_ignore_broadcasts": 0})
    spec.services.append(("udp", 5000, None))
    rules = tables(filter="""
-A INPUT -p icmp -j LOG --log-prefix "{T}icmp "
-A OUTPUT -j LOG --log-prefix "{T}out "
""")
    fr = [
        on("lan", ip(L2, GL, ttl=1) / ICMP(id=10, seq=1) / b"ttl 1 is fine", "ping ttl 1"),
        on("lan", ip(L2, GL) / ICMP(id=11, seq=1, chksum=0x1234) / b"bad", "ping bad checksum"),
        on("lan", ip(L2, LAN_BCAST) / ICMP(id=12, seq=1), "broadcast ping answered", dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, GL) / ICMP(type=0, id=13, seq=1), "echo reply to nobody"),
        on("lan", ip(L2, GL) / ICMP(type=3, code=1) / IPerror(raw(ip(GL, X, id=0x2005) / UDP(sport=9, dport=9))),
           "error about nothing"),
        on("lan", ip(L2, GL) / UDP(sport=1, dport=5000) / b"service", "open udp"),
        on("lan", ip(L2, GL) / UDP(sport=1, dport=5001, chksum=0) / b"no csum", "closed, no checksum"),
        on("lan", ip(L2, GL) / UDP(sport=1, dport=5002, chksum=0x1234) / b"bad csum", "closed, bad checksum"),
        on("lan", ip(L2, LAN_BCAST) / UDP(sport=1, dport=5003), "closed, broadcast", dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=1, flags="A", seq=5, ack=777), "ACK to closed"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=2, flags="SF", seq=5), "SYN+FIN to closed"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=3, flags="S", seq=5) / b"syn data", "SYN with data"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=4, flags="FA", seq=5, ack=6) / b"fin data", "FIN with data"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=0, flags="S", seq=5), "port 0"),
        on("lan", ip(L2, GL) / TCP(sport=1, dport=5, flags="", seq=5), "no flags"),
        on("lan", ip(L2, GWA) / TCP(sport=1, dport=6, flags="S", seq=5), "the wan address from lan"),
        on("lan", ip(L2, GL, flags="MF") / UDP(sport=1, dport=7) / b"lonely fragment", "first fragment only"),
        on("lan", ip(L2, GL, proto=132) / (b"\x00" * 16), "sctp: protocol unreachable?"),
        on("lan", ip(L2, GL) / ICMP(type=13, id=20, seq=1) / (b"\x01\x02\x03\x04" + b"\x00" * 8), "timestamp"),
        on("lan", ip(L2, GL, proto=1) / icmp_bytes(13, 0, 21 << 16 | 1, b"\x01\x02"), "timestamp, too short"),
        on("lan", ip(L2, GL, proto=1) / icmp_bytes(13, 0, 26 << 16 | 1, b"\x01\x02\x03\x04"),
           "timestamp, originate only"),
        on("lan", ip(L2, GL) / ICMP(type=13, id=22, seq=1) / (b"\x05" * 24), "timestamp, long"),
        on("lan", ip(L2, LAN_BCAST) / ICMP(type=13, id=23, seq=1) / (b"\x00" * 12), "broadcast timestamp",
           dst_mac="ff:ff:ff:ff:ff:ff"),
        on("lan", ip(L2, GL) / ICMP(type=15, id=24, seq=1), "information request: no answer"),
        on("lan", ip(L2, GL) / ICMP(type=17, id=25, seq=1) / (b"\x00" * 4), "address mask request: no answer"),
    ]
    return Scenario("host-answers", rules, fr, spec)


def sc_local_more() -> Scenario:
    """The gateway's own packets: to itself (through lo, answered through
    lo), fragments it sends (conntrack reassembles them in OUTPUT and
    fragments again), TCPMSS on a local SYN, a local SYN without MSS."""
    rules = tables(mangle="""
-A POSTROUTING -o dmz -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu
-A POSTROUTING -o lan -p tcp --syn -j TCPMSS --set-mss 900
""", filter="""
-A INPUT -i lo -j LOG --log-prefix "{T}lo-in "
-A OUTPUT -o lo -j LOG --log-prefix "{T}lo-out "
-A OUTPUT -m state --state NEW,RELATED,ESTABLISHED
""")
    fr: list[Frame | Pause] = [
        local(ip(GL, GL) / UDP(sport=1000, dport=1001) / b"to myself", "udp to myself"),
        local(ip(GWA, GL) / ICMP(id=40, seq=1) / b"ping myself", "ping myself"),
        local(ip(GD, D2) / TCP(sport=1002, dport=22, flags="S", options=[("MSS", 1460)]), "SYN to dmz"),
        local(ip(GL, L2) / TCP(sport=1003, dport=22, flags="S"), "SYN without MSS"),
    ]
    u = ip(GL, L2) / UDP(sport=1004, dport=1005) / (b"L" * 1600)
    for k, p in enumerate(fragment(u, fragsize=1000)):
        fr.append(local(p, f"local fragment {k + 1}"))
    return Scenario("local-more", rules, fr)


def sc_log_formats() -> Scenario:
    """LOG's text for every flag, protocol and hook: MAC decoding, TCP
    sequence and options, IP options, fragments, ICMP with the quoted
    packet, unknown protocols, POSTROUTING and OUTPUT lines."""
    rules = tables(mangle="""
-A POSTROUTING -p udp --dport 3 -j LOG --log-prefix "{T}post " --log-level 7
-A PREROUTING -p tcp -j LOG --log-prefix "{T}pre-all " --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid
""", filter="""
-A INPUT -j LOG --log-prefix "{T}mac " --log-macdecode
-A FORWARD -j LOG --log-prefix "{T}fwd " --log-tcp-options
-A OUTPUT -j LOG --log-prefix "{T}out " --log-uid --log-tcp-sequence
""")
    q = raw(ip(GL, L2, id=0x2006, ttl=3) / TCP(sport=80, dport=1000, flags="S", seq=42))
    fr = [
        on("lan", ip(L2, GL) / TCP(sport=1, dport=22, flags="S", seq=123456, window=1024,
                                  options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None),
                                           ("WScale", 7)]), "syn to host"),
        on("lan", ip(L2, X, tos=0x28, flags="DF") / UDP(sport=2, dport=3) / b"u", "forwarded udp"),
        on("lan", ip(L2, GL) / ICMP(type=3, code=3) / IPerror(q), "icmp with quote"),
        on("lan", ip(L2, GL, proto=99) / b"xyz", "unknown protocol"),
        *frags("lan", ip(L2, X) / UDP(sport=4, dport=3) / (b"z" * 1200), 600, "fragments"),
        on("lan", ip(L2, X, options=b"\x94\x04\x00\x00") / TCP(sport=5, dport=6, flags="PA", seq=1, ack=2,
                                                              urgptr=3) / b"d", "forwarded tcp"),
        local(ip(GL, L2) / TCP(sport=7, dport=8, flags="S", seq=99), "local tcp"),
    ]
    return Scenario("log-formats", rules, fr)

def sc_icmp_ratelimit() -> Scenario:
    """The kernel's own ICMP limits at their defaults (icmp_ratelimit 1 s,
    six deep): port unreachables, TTL exceeded and REJECT's errors run out,
    echo replies and fragmentation needed never do, a no-route error has
    its own bucket that other errors drain."""
    spec = default_spec(**{"net.ipv4.icmp_ratelimit": 1000})
    rules = tables(filter="""
-A INPUT -s 192.168.10.50 -p udp -j REJECT
""")
    fr: list[Frame | Pause] = []
    fr += [on("lan", ip(L2, GL) / UDP(sport=1, dport=2000 + n), f"closed port {n}") for n in range(8)]
    fr += [on("lan", ip(L2, GL) / ICMP(id=50, seq=n), f"ping {n}") for n in range(3)]
    fr += [on("lan", ip(L3, X, ttl=1) / UDP(sport=1, dport=2), f"ttl {n}") for n in range(7)]
    fr += [on("lan", ip(L4, D2, flags="DF") / UDP(sport=1, dport=3) / (b"m" * 1300), f"frag needed {n}")
           for n in range(7)]
    fr += [on("lan", ip("192.168.10.5", NOWHERE) / UDP(sport=1, dport=4), f"no route {n}") for n in range(4)]
    fr += [on("lan", ip("192.168.10.50", GL) / UDP(sport=1, dport=5), f"reject {n}") for n in range(7)]
    fr += [on("lan", ip(L4, X, ttl=1) / UDP(sport=1, dport=6), "ttl after frag needed"),
           on("lan", ip(L4, NOWHERE) / UDP(sport=1, dport=7), "no route right after a ttl exceeded")]
    return Scenario("icmp-ratelimit", rules, fr, spec)


def sc_fragment_edges() -> Scenario:
    """Reassembly's odd cases: a duplicate fragment, overlapping ones (the
    whole datagram is dropped), the last piece first, tiny pieces, a DF
    datagram reassembled and forwarded over a smaller MTU."""
    rules = tables(raw="""
-A PREROUTING -p udp -m state --state NEW
""", filter="""
-A FORWARD -m length --length 1000:65535 -j LOG --log-prefix "{T}big "
""")
    a = fragment(ip(L2, X) / UDP(sport=1, dport=1) / (b"a" * 1200), fragsize=512)
    b = fragment(ip(L2, X) / UDP(sport=1, dport=2) / (b"b" * 1200), fragsize=512)
    over = raw(b[1])
    ob = IP(over)
    ob.frag = 60  # starts inside the first piece (which ends at 64 units)
    del ob.chksum
    c = fragment(ip(L2, X) / UDP(sport=1, dport=3) / (b"c" * 100), fragsize=16)
    dfp = ip(L2, D2, flags="DF") / UDP(sport=1, dport=4) / (b"d" * 1400)
    dfrags = fragment(dfp, fragsize=1400)
    for p in dfrags:
        p.flags = p.flags | 2  # DF on every piece, MF where it was
        del p.chksum
    fr = [
        on("lan", a[0], "a 1"), on("lan", a[0], "a 1 again"), on("lan", a[1], "a 2"), on("lan", a[2], "a 3"),
        on("lan", b[0], "b 1"), on("lan", ob, "b overlapping"), on("lan", b[1], "b 2"), on("lan", b[2], "b 3"),
        *[on("lan", p, f"tiny {k + 1}") for k, p in reversed(list(enumerate(c)))],
        *[on("lan", p, f"DF pieces {k + 1}") for k, p in enumerate(dfrags)],
    ]
    return Scenario("fragment-edges", rules, fr)


def sc_nat_errors() -> Scenario:
    """ICMP errors the gateway makes about NATed packets (TTL exceeded for
    a DNATed one: the quote is translated back), fragmentation needed for
    one that was to be masqueraded, errors from outside about SNATed TCP."""
    rules = tables(nat=f"""
-A PREROUTING -i wan -d {GWA} -p tcp --dport 8080 -j DNAT --to-destination {D2}:80
-A PREROUTING -i wan -d {GWA} -p tcp --dport 8082 -j DNAT --to-destination {D2}:82
-A PREROUTING -i wan -d {GWA} -p udp --dport 8083 -j DNAT --to-destination {D2}:83
-A POSTROUTING -o dmz -s 192.168.10.0/24 -j MASQUERADE
-A POSTROUTING -o wan -j MASQUERADE
""", filter="""
-A OUTPUT -p icmp -j LOG --log-prefix "{T}out "
-A FORWARD -p icmp -j LOG --log-prefix "{T}fwd "
-A FORWARD -p tcp --dport 82 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp --dport 83 -j REJECT --reject-with icmp-admin-prohibited
""")
    t = Conv("lan", (L2, 44000), (X, 443), "wan", s_to=(GWA, 44000))
    quote = raw(ip(GWA, X, id=0x2007, ttl=1) / TCP(sport=44000, dport=443, flags="A", seq=1001, ack=5001))
    fr = [
        on("wan", ip(X, GWA, ttl=1) / TCP(sport=33333, dport=8080, flags="S"), "dnat, ttl exceeded"),
        on("wan", ip(X, GWA) / TCP(sport=33333, dport=8080, flags="S"), "dnat, now through"),
        on("lan", ip(L2, D2, flags="DF") / TCP(sport=44001, dport=80, flags="PA") / (b"x" * 1300),
           "masquerade to dmz, too big"),
        *t.handshake(),
        on("wan", ip(Y, GWA) / ICMP(type=11, code=0) / IPerror(quote), "time exceeded from outside"),
        on("wan", ip(Y, GWA) / ICMP(type=3, code=4, nexthopmtu=576) / IPerror(quote), "frag needed from outside"),
        on("lan", ip(L3, L4) / UDP(sport=1, dport=1), "same link: the redirect, NAT not done, is dropped"),
        on("wan", ip(X, GWA) / TCP(sport=33334, dport=8082, flags="S"), "dnat, REJECT tcp-reset: RST translated"),
        on("wan", ip(X, GWA) / UDP(sport=33335, dport=8083) / b"u", "dnat, REJECT icmp: quote translated"),
    ]
    return Scenario("nat-errors", rules, fr)


def sc_tcp_edges() -> Scenario:
    """More of the TCP tracker: retransmitted data, a RST with the wrong
    sequence (ignored), a RST with the right one, a SYN to an established
    connection, window scaling with a wide window, SYN-ACK before SYN."""
    rules = tables(filter="""
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}inv "
-A FORWARD -m conntrack --ctstate INVALID -j DROP
""")
    a = Conv("lan", (L2, 45000), (X, 80), "wan")
    b = Conv("lan", (L2, 45001), (X, 80), "wan")
    c = Conv("lan", (L2, 45002), (X, 80), "wan")
    ws = [("MSS", 1460), ("WScale", 10), ("SAckOK", b"")]
    fr = [
        *a.handshake(),
        a.cli("PA", b"data1"),
        a.cli("PA", b"data1", seq=a.cseq - 5, note="retransmission"),
        a.srv("A"),
        a.srv("R", seq=a.sseq + 100000, note="RST out of the window"),
        a.cli("PA", b"still alive"),
        a.cli("S", seq=7777, note="SYN in ESTABLISHED"),
        a.srv("R", note="RST in the window"),
        a.cli("PA", b"after reset"),
        b.cli("S", options=ws), b.srv("SA", options=ws, window=65535), b.cli("A", window=65535),
        b.srv("PA", b"w" * 1000, window=65535), b.cli("A", window=300),
        b.srv("PA", b"v" * 1000, seq=b.sseq + 200000, window=65535, note="far, but in the scaled window"),
        c.srv("SA", note="SYN-ACK first"),
        c.cli("S"),
    ]
    return Scenario("tcp-edges", rules, fr)

def routing_spec() -> Any:
    """default_spec with more to route: a second subnet and a secondary
    address on lan, a /32 on wan, a default route via the wan peer and a
    more specific route through the dmz peer."""
    spec = default_spec()
    spec.iface("lan").extra += ["192.168.20.1/24", "192.168.10.100/24"]
    spec.iface("wan").extra += ["203.0.113.200/32"]
    spec.routes = [("default", W2, "wan"), ("198.51.100.128/25", D2, "dmz"), ("172.16.0.0/16", "192.168.10.4", "lan")]
    spec.neighbors += [("192.168.20.7", "lan")]
    return spec


def sc_routing() -> Scenario:
    """Longest prefix over a default route, a gateway on lan, a second
    lan subnet and secondary addresses: which way packets go, which address
    MASQUERADE and the host's ICMP errors pick, addrtype on each."""
    rules = tables(nat="""
-A POSTROUTING -o dmz -j MASQUERADE
-A POSTROUTING -o lan -s 203.0.113.0/24 -j MASQUERADE
""", filter="""
-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j LOG --log-prefix "{T}local-here "
-A INPUT -m addrtype --dst-type LOCAL -j LOG --log-prefix "{T}local "
-A FORWARD -m addrtype --dst-type UNICAST --limit-iface-out -o dmz
-A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
""")
    fr = [
        on("lan", ip(L2, "8.8.8.8") / UDP(sport=1, dport=1), "default route"),
        on("lan", ip(L2, "198.51.100.200") / UDP(sport=1, dport=2), "the /25 through dmz, masqueraded"),
        on("dmz", ip("198.51.100.200", GD) / UDP(sport=2, dport=1), "its reply"),
        on("wan", ip(W3, "172.16.5.5") / UDP(sport=1, dport=3), "via the lan gateway, masqueraded"),
        on("lan", ip("192.168.20.7", "8.8.4.4", ttl=1) / UDP(sport=1, dport=4), "second subnet, ttl exceeded"),
        on("lan", ip(L2, "192.168.10.100") / ICMP(id=1), "secondary address"),
        on("wan", ip(X, "203.0.113.200") / UDP(sport=1, dport=5), "the /32"),
        on("wan", ip(X, "192.168.20.1") / ICMP(id=2), "lan's second address from wan"),
        on("lan", ip("192.168.20.7", "192.168.20.255") / UDP(sport=1, dport=6), "second subnet broadcast",
           dst_mac="ff:ff:ff:ff:ff:ff"),
        local(ip("192.168.10.100", "8.8.8.8") / UDP(sport=7, dport=8), "from the secondary"),
        local(ip("192.168.20.1", "198.51.100.129") / UDP(sport=7, dport=9), "local, masqueraded to dmz"),
    ]
    return Scenario("routing", rules, fr, routing_spec())


def sc_malformed() -> Scenario:
    """What never reaches the hooks (bad header checksum, version, header
    length, a datagram longer than its frame), what the matches hot-drop
    (a TCP header shorter than its data offset), what conntrack calls
    INVALID (UDP length wrong, TCP with no room), Ethernet padding."""
    rules = tables(raw="""
-A PREROUTING
""", filter="""
-A INPUT -p tcp --dport 80
-A INPUT -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}inv "
-A INPUT -p udp --dport 9
-A FORWARD -p udp -m udp --dport 9
""")

    def mangled(pkt: Any, at: int, value: bytes, note: str, fix: bool = False) -> Frame:
        d = bytearray(raw(pkt))
        d[at:at + len(value)] = value
        if fix:
            d[10:12] = b"\x00\x00"
            c = 0
            for k in range(0, (d[0] & 15) * 4, 2):
                c += d[k] << 8 | d[k + 1]
            while c >> 16:
                c = (c & 0xFFFF) + (c >> 16)
            d[10:12] = (~c & 0xFFFF).to_bytes(2, "big")
        return on("lan", Raw(bytes(d)), note)

    ok = ip(L2, GL) / UDP(sport=1, dport=9) / b"payload"
    fr = [
        mangled(ok, 10, b"\x12\x34", "bad header checksum"),
        mangled(ok, 0, b"\x65", "version 6", fix=True),
        mangled(ok, 0, b"\x44", "ihl 4", fix=True),
        mangled(ok, 2, b"\x01\x00", "longer than the frame", fix=True),
        mangled(ok, 2, b"\x00\x10", "tot_len inside the header", fix=True),
        on("lan", Raw(raw(ip(L2, GL) / UDP(sport=1, dport=9) / b"pad") + b"\xaa" * 20), "padded frame"),
        on("lan", Raw(raw(ip(L2, X) / UDP(sport=1, dport=9) / b"pad") + b"\xbb" * 20), "padded, forwarded"),
        mangled(ip(L2, GL) / UDP(sport=1, dport=9) / b"abc", 24, b"\x00\x30", "udp length too big"),
        mangled(ip(L2, GL) / UDP(sport=1, dport=9) / b"abc", 24, b"\x00\x04", "udp length too small"),
        mangled(ip(L2, GL) / TCP(sport=1, dport=80, flags="S"), 32, b"\x20", "tcp data offset 2"),
        mangled(ip(L2, GL) / TCP(sport=1, dport=80, flags="S"), 32, b"\xf0", "tcp data offset past the end"),
        on("lan", ip(L2, GL, proto=6) / b"\x00\x01\x00\x50", "tcp, 4 bytes"),
        on("lan", ip(L2, GL, proto=17) / b"\x00\x01", "udp, 2 bytes"),
        on("lan", ip(L2, GL, proto=1) / b"\x08", "icmp, 1 byte"),
    ]
    return Scenario("malformed", rules, fr)


def sc_arp_ignore() -> Scenario:
    """ARP with arp_ignore 1 on lan (answer only for lan's own addresses),
    an ARP probe (sender 0.0.0.0), an unsolicited reply, a request for a
    broadcast address."""
    spec = default_spec(**{"net.ipv4.conf.lan.arp_ignore": 1})
    rules = tables(filter="")
    lan = spec.iface("lan")

    def arp_frame(op: int, target: str, sender: str, note: str, dst: str = "ff:ff:ff:ff:ff:ff") -> Frame:
        return Frame("lan", raw(Ether(dst=dst, src=lan.peer_mac)
                                / ARP(op=op, hwsrc=lan.peer_mac, psrc=sender, pdst=target,
                                      hwdst="00:00:00:00:00:00" if op == 1 else lan.mac)), note)

    fr = [
        arp_frame(1, GL, L2, "lan address"),
        arp_frame(1, GWA, L2, "wan address on lan: ignored"),
        arp_frame(1, GL, "0.0.0.0", "probe"),
        arp_frame(2, GL, L3, "unsolicited reply", dst=lan.mac),
        arp_frame(1, LAN_BCAST, L2, "the broadcast address"),
        arp_frame(1, GL, "10.1.2.3", "sender from another subnet"),
    ]
    return Scenario("arp-ignore", rules, fr, spec)


def sc_nat_input() -> Scenario:
    """nat INPUT: SNAT of what the host receives (its answers are turned
    back), REDIRECT without ports (the in-interface's primary address),
    DNAT to the host's other address."""
    rules = tables(nat=f"""
-A PREROUTING -i lan -p udp --dport 6000 -j REDIRECT
-A PREROUTING -i lan -d 203.0.113.99 -j DNAT --to-destination {GWA}
-A INPUT -s {L2} -p udp -j SNAT --to-source 192.168.10.77
-A INPUT -s {L3} -p tcp -j SNAT --to-source 192.168.10.78:1000-1001
""", filter="""
-A INPUT -p udp -j LOG --log-prefix "{T}in "
-A OUTPUT -j LOG --log-prefix "{T}out "
""")
    fr = [
        on("lan", ip(L2, GL) / UDP(sport=1, dport=7) / b"snat in", "SNAT in INPUT, port unreachable back"),
        on("lan", ip(L3, GL) / TCP(sport=3000, dport=7, flags="S"), "SNAT to a port range, RST back"),
        on("lan", ip(L4, X) / UDP(sport=1, dport=6000) / b"redirect", "REDIRECT without ports"),
        on("lan", ip(L4, "203.0.113.99") / ICMP(id=5) / b"dnat to me", "DNAT to the wan address"),
    ]
    return Scenario("nat-input", rules, fr)


def sc_match_mix() -> Scenario:
    """Inverted and ranged forms of the header matches on forwarded
    traffic (each rule just counts)."""
    rules = tables(mangle=f"""
-A PREROUTING -p tcp -m multiport ! --dports 1:1000,2000 -m tcp --tcp-flags ALL SYN
-A PREROUTING -p tcp -m multiport --ports 22,80:90
-A PREROUTING -p udp -m udp ! --sport 53 --dport 100:200
-A PREROUTING -m iprange ! --dst-range 198.51.100.0-198.51.100.9
-A PREROUTING -m iprange --src-range {L2}-{L3} --dst-range 198.51.100.7-198.51.100.8
-A PREROUTING -m ttl --ttl-gt 60 -m ttl ! --ttl-eq 64
-A PREROUTING -m tos ! --tos 0x10/0x3f
-A PREROUTING -m dscp ! --dscp 0
-A PREROUTING -m mac ! --mac-source 02:00:00:00:00:00
-A PREROUTING -m pkttype --pkt-type host -m length ! --length 0:40
-A PREROUTING -p icmp -m icmp --icmp-type 3/3
-A PREROUTING -p icmp -m icmp ! --icmp-type echo-request
-A PREROUTING -p icmp --icmp-type any
-A PREROUTING -p tcp --tcp-flags SYN,FIN SYN,FIN
-A PREROUTING -p tcp ! --tcp-option 2
-A PREROUTING -p tcp --tcp-flags ALL NONE
-A PREROUTING -s 192.168.10.0/25 ! -d 198.51.100.7 ! -i wan
-A FORWARD -o wa+ ! -i dmz
-A FORWARD ! -o wan ! -p tcp
-A POSTROUTING ! -p udp -f
-A POSTROUTING -m addrtype ! --src-type LOCAL --dst-type UNICAST
""")
    fr = [
        on("lan", ip(L2, X, ttl=63, tos=0x10) / TCP(sport=1, dport=3000, flags="S", options=[("MSS", 1400)]), "syn"),
        on("lan", ip(L3, Y) / TCP(sport=1, dport=85, flags="SF"), "syn+fin"),
        on("lan", ip(L2, X, tos=0x28) / UDP(sport=54, dport=150) / (b"x" * 20), "udp"),
        on("lan", ip(L4, "198.51.100.3", ttl=61) / ICMP(type=3, code=3) / IPerror(raw(ip(X, L4, id=0x2008)
                                                                                      / UDP(sport=9, dport=9))),
           "icmp error"),
        on("lan", ip(L2, X) / ICMP(id=9), "ping"),
        on("lan", ip(L2, X) / TCP(sport=1, dport=22, flags=""), "null scan"),
        on("wan", ip(X, D2) / UDP(sport=53, dport=150), "wan to dmz"),
        *frags("lan", ip(L2, X) / ICMP(id=10) / (b"f" * 1000), 512, "fragments"),
    ]
    return Scenario("match-mix", rules, fr)

def sc_ct_sysctls() -> Scenario:
    """Conntrack sysctls: no loose pickup, a liberal window, no checksum
    checks, one-second ICMP and UDP timeouts that run out mid-scenario."""
    spec = default_spec(**{"net.netfilter.nf_conntrack_tcp_loose": 0,
                           "net.netfilter.nf_conntrack_tcp_be_liberal": 1,
                           "net.netfilter.nf_conntrack_checksum": 0,
                           "net.netfilter.nf_conntrack_icmp_timeout": 1,
                           "net.netfilter.nf_conntrack_udp_timeout": 1})
    rules = tables(filter="""
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}inv "
-A FORWARD -m conntrack --ctstate NEW
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY
""")
    a = Conv("lan", (L2, 46000), (X, 80), "wan")
    d = Conv("lan", (L2, 46001), (X, 81), "wan")
    fr: list[Frame | Pause] = [
        *a.handshake(),
        a.srv("PA", b"far away", seq=a.sseq + 2_000_000_000, note="out of the window, liberal"),
        d.cli("A", b"mid-stream", note="no loose pickup"),
        on("lan", ip(L2, X) / TCP(sport=46002, dport=82, flags="S", chksum=0x1111), "bad checksum, not checked"),
        on("lan", ip(L2, X) / ICMP(id=60, seq=1), "ping"),
        on("lan", ip(L2, X) / UDP(sport=46003, dport=53) / b"q", "udp"),
        Pause(1.6),
        on("wan", ip(X, L2) / ICMP(type=0, id=60, seq=1), "pong after the entry expired"),
        on("wan", ip(X, L2) / UDP(sport=53, dport=46003) / b"a", "udp answer after expiry: a new flow"),
    ]
    return Scenario("ct-sysctls", rules, fr, spec)


def sc_loopback() -> Scenario:
    """127.0.0.1 and the host's own addresses from the host: lo's hooks,
    answers that come back through lo, nat OUTPUT REDIRECT to a local
    service, untracked loopback."""
    spec = default_spec()
    spec.services.append(("udp", 5353, "127.0.0.1"))
    rules = tables(raw="""
-A OUTPUT -o lo -p udp --dport 9999 -j NOTRACK
""", nat="""
-A OUTPUT -p udp -d 127.0.0.1 --dport 53 -j REDIRECT --to-ports 5353
""", filter="""
-A INPUT -i lo -j LOG --log-prefix "{T}lo-in "
-A OUTPUT -o lo -m conntrack --ctstate NEW,ESTABLISHED,RELATED,UNTRACKED
""")
    fr = [
        local(ip("127.0.0.1", "127.0.0.1") / UDP(sport=1000, dport=53) / b"q", "to a local service via REDIRECT"),
        local(ip("127.0.0.1", "127.0.0.1") / UDP(sport=1000, dport=54) / b"q", "closed: unreachable via lo"),
        local(ip("127.0.0.1", "127.0.0.1") / UDP(sport=1000, dport=9999) / b"q", "untracked"),
        local(ip("127.0.0.1", "127.0.0.1") / ICMP(id=70) / b"ping lo", "ping lo"),
        local(ip(GD, GWA) / TCP(sport=1001, dport=1002, flags="S"), "SYN to myself: RST via lo"),
    ]
    return Scenario("loopback", rules, fr, spec)

SCENARIOS = [sc_stateless_input, sc_forward_states, sc_masquerade, sc_dnat_redirect, sc_fragments,
             sc_fragments_stateless, sc_reject, sc_mangle, sc_raw_ct, sc_rates, sc_output,
             sc_queues_trace, sc_arp, sc_tcp_lifecycle, sc_udp_icmp_tracking, sc_nat_more, sc_ip_options,
             sc_redirect_and_martians, sc_forwarding_per_device, sc_no_forwarding, sc_host_answers,
             sc_local_more, sc_log_formats, sc_icmp_ratelimit, sc_fragment_edges, sc_nat_errors,
             sc_tcp_edges, sc_routing, sc_malformed, sc_arp_ignore, sc_nat_input, sc_match_mix,
             sc_ct_sysctls, sc_loopback]


@pytest.mark.parametrize("make", SCENARIOS, ids=[f.__name__[3:] for f in SCENARIOS])
def test_gateway_like_kernel(make: Any, tmp_path: Path) -> None:
    sc = make()
    sc.rules = sc.rules.replace("{T_}", TAG.strip(":").replace("gw", ""))
    out = run_scenario(sc, TAG, tmp_path)
    RESULTS[sc.name] = out
    assert out.frames > 0
    assert not out.problems, "\n\n".join(out.problems) + "\n\ntranscript:\n" + "\n".join(out.transcript)


def test_every_extension_is_exercised() -> None:
    """The scenarios' rulesets use every match and target pyfw has."""
    from pyfw.ext import supported_matches, supported_targets
    from pyfw.ruleset.model import Ruleset
    from pyfw.ruleset.restore import RestoreOptions, restore

    used: set[str] = set()
    for make in SCENARIOS:
        text = make().rules.replace("{T}", TAG).replace("{T_}", "x")
        rs = restore(Ruleset(), text, RestoreOptions()).ruleset
        for t in rs.tables.values():
            for c in t.chains.values():
                for r in c.rules:
                    used.update("match:" + m.name for m in r.matches)
                    if r.target.kind == "extension":
                        used.add("target:" + r.target.name)
    want = {"match:" + m for m in supported_matches()} | {"target:" + t for t in supported_targets()}
    assert want - used == set(), f"not exercised end to end: {sorted(want - used)}"


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """How many cases were compared (shown with -s)."""
    if not RESULTS:
        pytest.skip("no scenario ran")
    with capsys.disabled():
        frames = sum(o.frames for o in RESULTS.values())
        checks = sum(o.checks for o in RESULTS.values())
        items = sum(o.items for o in RESULTS.values())
        print(f"\nend-to-end against the kernel: {len(RESULTS)} scenarios, {frames} frames, "
              f"{checks} cases (frames x checks: emitted frames, counters, conntrack, LOG; "
              f"plus the CLI's whole-run outputs), {items} items compared")
        for name, o in RESULTS.items():
            print(f"  {name}: {o.frames} frames, {o.checks} cases, {o.items} items"
                  f"{'' if not o.problems else f', {len(o.problems)} disagreements'}")
