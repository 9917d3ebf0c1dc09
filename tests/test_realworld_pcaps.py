"""Real captures through the kernel and through pyfw (issue 3, must-hold 1).

Each capture of /work/shared/realworld-pcaps (tcpdump's and Zeek's test
traces, see its README) is replayed through one gateway namespace
(tests/gateway_lab.py) and through pyfw's engine built as `pyfw simulate`
builds it, twice: with a ruleset that counts every conntrack state, logs
the new, related and invalid packets, drops the invalid ones and
masquerades what leaves by wan; routed, without NAT, forwarding
everything (invalid packets too) with counting and LOG rules; and routed
with the far side behind the dmz (MTU 1280: fragmentation, and
"fragmentation needed" for DF), for captures with bigger datagrams (the far
side's own bigger frames cannot be on that link and are left out).  After each capture the two sides must agree on the frames
sent out of each interface (from the IP header on, in order; IDs of packets
the gateway makes aside), every rule and policy counter, the connection
table (timeouts aside) and the LOG lines.

The captures' addresses are moved onto the lab: every IPv4 unicast address
is put on one side (the first talker of a capture on lan, whoever it talks
to on wan, and so on), lan hosts become 192.168.10.10+, wan hosts
198.51.100.10+ (behind the wan peer).  A connection that a lan host opened
is seen from wan with the gateway's address, as MASQUERADE makes it (ports
are kept; a connection whose masqueraded tuple would clash with another's
is left out, as the kernel then picks its port at random); one a wan host
opened, and every one when routed, keeps the lan host's address.  Quoted headers of ICMP errors move with the
connection they quote; checksums are adjusted incrementally, so a wrong one
stays wrong by the same amount.  Everything else is left as captured:
fragments, options, odd flags, malformed headers, bad checksums, TTLs.
Frames without IPv4, with a broadcast or multicast end, or with both ends
on one side are left out; a capture left with none is skipped.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_lab import (  # noqa: E402
    Frame,
    GatewayLab,
    HostSpec,
    Outcome,
    PyfwSide,
    _compare_frames,
    _compare_state,
    default_spec,
    lab_problem,
    norm_log,
)
from paths import SHARED  # noqa: E402

PCAPS = SHARED / "realworld-pcaps"
CAPTURES = sorted(p.name for p in PCAPS.glob("*.pcap*")) if PCAPS.is_dir() else []

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not CAPTURES, reason=f"no captures in {PCAPS}"),
    pytest.mark.skipif(lab_problem() is not None, reason=str(lab_problem())),
]

GW_WAN = "203.0.113.1"
LAN_BASE, WAN_BASE, DMZ_BASE = "192.168.10.", "198.51.100.", "10.20.0."
FIRST_HOST, MAX_LAN, MAX_DMZ = 10, 60, 40
DMZ_MTU = 1280
LAN, WAN = "lan", "wan"

RULES = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}inv "
-A PREROUTING -m conntrack --ctstate UNTRACKED
-A POSTROUTING -m conntrack --ctstate SNAT
-A POSTROUTING -m conntrack --ctstate DNAT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate NEW -j LOG --log-prefix "{T}in "
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED -j LOG --log-prefix "{T}rel "
-A FORWARD -m conntrack --ctstate RELATED -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -m conntrack --ctdir ORIGINAL -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -m conntrack --ctdir REPLY -j ACCEPT
-A FORWARD -p tcp --syn -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -j LOG --log-prefix "{T}new "
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
COMMIT
"""

# The same without NAT and letting everything through: invalid packets are
# forwarded too (logged), the lan hosts' own addresses are seen from wan.
RULES_ROUTED = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "{T}inv "
-A FORWARD -m conntrack --ctstate NEW
-A FORWARD -m conntrack --ctstate ESTABLISHED
-A FORWARD -m conntrack --ctstate RELATED -j LOG --log-prefix "{T}rel "
-A FORWARD -m conntrack --ctstate UNTRACKED
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j LOG --log-prefix "{T}in "
-A FORWARD -p tcp -m state --state NEW -m tcp ! --syn -j LOG --log-prefix "{T}pickup "
COMMIT
"""
# routed, the far side behind the dmz (MTU 1280): what is bigger is
# fragmented, or answered with "fragmentation needed" when DF is set
VARIANTS = {"masquerade": RULES, "routed": RULES_ROUTED, "dmz": RULES_ROUTED}

# Known disagreements, each with the exact difference (engine bugs left for later).
XFAIL: dict[tuple[str, str], str] = {}


def realworld_spec() -> HostSpec:
    spec = default_spec()
    have = {ip for ip, _dev in spec.neighbors}
    spec.neighbors += [(f"{LAN_BASE}{n}", LAN) for n in range(FIRST_HOST, FIRST_HOST + MAX_LAN)
                       if f"{LAN_BASE}{n}" not in have]
    spec.neighbors += [(f"{DMZ_BASE}{n}", "dmz") for n in range(FIRST_HOST, FIRST_HOST + MAX_DMZ)
                       if f"{DMZ_BASE}{n}" not in have]
    assert spec.iface("dmz").mtu == DMZ_MTU
    return spec


# ====================================================================== addresses
def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _unicast(a: bytes) -> bool:
    return a[0] not in (0, 127) and a[0] < 224 and a != b"\xff\xff\xff\xff"


def _words(data: bytes) -> tuple[int, ...]:
    if len(data) & 1:
        data += b"\x00"
    return struct.unpack(f"!{len(data) // 2}H", data)


def _adjust(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 (eqn. 3): the checksum after `old` became `new` (both at
    the same even offset of the checksummed data)."""
    s = (~csum & 0xFFFF) + sum(~w & 0xFFFF for w in _words(old)) + sum(_words(new))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _patch16(b: bytearray, at: int, old: bytes, new: bytes, udp: bool = False) -> None:
    """Adjust the checksum at `at` for a change of `old` into `new`."""
    if at + 2 > len(b):
        return
    c = struct.unpack_from("!H", b, at)[0]
    if udp and c == 0:
        return  # no checksum
    c = _adjust(c, old, new)
    if udp and c == 0:
        c = 0xFFFF
    struct.pack_into("!H", b, at, c)


ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})


@dataclass
class Packet:
    """What the mapping needs to know of one captured IPv4 frame."""

    index: int
    src: bytes
    dst: bytes
    proto: int
    ihl: int
    frag: int            # fragment offset (8-byte units)
    ident: int
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    quoted: tuple[bytes, bytes, int, int | None, int | None] | None = None  # an ICMP error's inner flow


def _parse(frame: bytes, index: int) -> Packet | None:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    src, dst = ip[12:16], ip[16:20]
    p = Packet(index, src, dst, ip[9], ihl, struct.unpack_from("!H", ip, 6)[0] & 0x1FFF,
               struct.unpack_from("!H", ip, 4)[0])
    if ihl < 20 or p.frag:
        return p
    l4 = ip[ihl:]
    if p.proto in (6, 17) and len(l4) >= 4:
        p.sport, p.dport = struct.unpack_from("!HH", l4)
    elif p.proto == 1 and len(l4) >= 8:
        p.icmp_type = l4[0]
        if l4[0] in ICMP_ERRORS and len(l4) >= 28 and l4[8] >> 4 == 4:
            inner = l4[8:]
            iihl = (inner[0] & 0x0F) * 4
            ports: tuple[int | None, int | None] = (None, None)
            if inner[9] in (6, 17) and iihl >= 20 and len(inner) >= iihl + 4:
                ports = struct.unpack_from("!HH", inner, iihl)
            p.quoted = (inner[12:16], inner[16:20], inner[9], *ports)
        elif len(l4) >= 6:
            p.sport = struct.unpack_from("!H", l4, 4)[0]  # echo-like id
    return p


def _flow(src: bytes, dst: bytes, proto: int, sport: int | None, dport: int | None) -> tuple[Any, ...]:
    return (proto, frozenset(((src, sport), (dst, dport))))


@dataclass
class Mapping:
    """Sides, lab addresses and which connections a lan host opened."""

    side: dict[bytes, str] = field(default_factory=dict)
    lab: dict[bytes, str] = field(default_factory=dict)
    opened_by: dict[tuple[Any, ...], str] = field(default_factory=dict)
    frag_flow: dict[tuple[bytes, bytes, int, int], tuple[Any, ...]] = field(default_factory=dict)
    masq: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)  # reply tuple -> flow
    clashing: set[tuple[Any, ...]] = field(default_factory=set)


def _flow_of(m: Mapping, p: Packet) -> tuple[Any, ...]:
    if p.quoted is not None:
        s, d, proto, sp, dp = p.quoted
        return _flow(s, d, proto, sp, dp)
    if p.frag or p.ihl < 20:
        return m.frag_flow.get((p.src, p.dst, p.proto, p.ident), _flow(p.src, p.dst, p.proto, None, None))
    return _flow(p.src, p.dst, p.proto, p.sport, p.dport)


def plan(frames: list[bytes], masquerade: bool = True, far: tuple[str, int] = (WAN_BASE, 244)
         ) -> tuple[Mapping, list[Packet]]:
    """Put every address on a side; the frames that can cross the gateway
    (`far`: the far side's addresses and how many hosts it has)."""
    m = Mapping()
    usable: list[Packet] = []
    parsed = [_parse(f, i) for i, f in enumerate(frames)]
    for p in parsed:
        if p is not None and p.frag == 0 and p.ihl >= 20 and p.quoted is None:
            m.frag_flow.setdefault((p.src, p.dst, p.proto, p.ident), _flow(p.src, p.dst, p.proto, p.sport, p.dport))
    n_lan = n_wan = 0
    for p in parsed:
        if p is None or not (_unicast(p.src) and _unicast(p.dst)) or p.src == p.dst:
            continue
        s, d = m.side.get(p.src), m.side.get(p.dst)
        if s is not None and d is not None and s == d:
            continue
        if s is None and d is None:
            s, d = LAN, WAN
        elif s is None:
            s = LAN if d == WAN else WAN
        elif d is None:
            d = LAN if s == WAN else WAN
        for addr, where in ((p.src, s), (p.dst, d)):
            if addr in m.side:
                continue
            if where == LAN:
                if n_lan >= MAX_LAN:
                    break
                m.lab[addr] = f"{LAN_BASE}{FIRST_HOST + n_lan}"
                n_lan += 1
            else:
                if n_wan >= far[1]:
                    break
                m.lab[addr] = f"{far[0]}{FIRST_HOST + n_wan}"
                n_wan += 1
            m.side[addr] = where
        else:
            flow = _flow_of(m, p)
            if flow not in m.opened_by:
                m.opened_by[flow] = s
                if masquerade and s == LAN and _clashes(m, p, flow):
                    m.clashing.add(flow)
            if flow not in m.clashing:
                usable.append(p)
    return m, usable


def _clashes(m: Mapping, p: Packet, flow: tuple[Any, ...]) -> bool:
    """Would MASQUERADE give this lan connection the reply tuple of another
    one?  The kernel then picks the new source port at random
    (nf_nat_l4proto_unique_tuple: get_random_u16() for SNAT): such a
    connection is left out, nothing can be compared about it."""
    if p.quoted is not None or p.sport is None:
        return False
    key = (p.proto, p.dst, p.dport, p.sport)
    other = m.masq.setdefault(key, flow)
    return other != flow


def _rewrite_addrs(b: bytearray, ip: int, new_src: bytes, new_dst: bytes) -> tuple[bytes, bytes]:
    """New addresses into the IP header at `ip` (its checksum adjusted);
    the old ones for the layer-4 pseudo-header."""
    old = bytes(b[ip + 12:ip + 20])
    new = new_src + new_dst
    b[ip + 12:ip + 20] = new
    _patch16(b, ip + 10, old, new)
    return old, new


def rewrite(frame: bytes, p: Packet, m: Mapping, spec: HostSpec, masquerade: bool = True,
            far_iface: str = WAN) -> Frame:
    where = m.side[p.src]
    opened_from_lan = masquerade and m.opened_by.get(_flow_of(m, p)) == LAN

    def lab(addr: bytes) -> bytes:
        if m.side.get(addr) == LAN and where == WAN and opened_from_lan:
            return bytes(int(x) for x in GW_WAN.split("."))
        return bytes(int(x) for x in m.lab[addr].split(".")) if addr in m.lab else addr

    iface = spec.iface(LAN if where == LAN else far_iface)
    b = bytearray(frame)
    b[0:12] = bytes.fromhex(iface.mac.replace(":", "")) + bytes.fromhex(iface.peer_mac.replace(":", ""))
    old, new = _rewrite_addrs(b, 14, lab(p.src), lab(p.dst))
    l4 = 14 + p.ihl
    if p.ihl >= 20 and not p.frag:
        if p.proto == 6:
            _patch16(b, l4 + 16, old, new)
        elif p.proto == 17:
            _patch16(b, l4 + 6, old, new, udp=True)
        elif p.proto == 1 and p.quoted is not None:
            inner = l4 + 8
            before = bytes(b[inner:])
            iold, inew = _rewrite_addrs(b, inner, lab(p.quoted[0]), lab(p.quoted[1]))
            iihl = (b[inner] & 0x0F) * 4
            if p.quoted[2] == 6:
                _patch16(b, inner + iihl + 16, iold, inew)
            elif p.quoted[2] == 17:
                _patch16(b, inner + iihl + 6, iold, inew, udp=True)
            _patch16(b, l4 + 2, before, bytes(b[inner:]))
    return Frame(iface.name, bytes(b), f"capture frame {p.index + 1}")


def prepare(name: str, spec: HostSpec, variant: str = "masquerade") -> list[Frame]:
    from pyfw.io.pcap import read_frames

    frames = [bytes(f) for _ts, _n, f in read_frames(str(PCAPS / name))]
    masquerade = variant == "masquerade"
    far, far_iface = ((DMZ_BASE, MAX_DMZ), "dmz") if variant == "dmz" else ((WAN_BASE, 244), WAN)
    m, usable = plan(frames, masquerade, far)
    out = [rewrite(frames[p.index], p, m, spec, masquerade, far_iface) for p in usable]
    # what the far side sent bigger than its link's MTU cannot be on that link
    mtu = spec.iface(far_iface).mtu
    return [f for f in out if f.iface == LAN or len(f.data) - 14 <= mtu]


def _biggest(frames: list[Frame]) -> int:
    return max((struct.unpack_from("!H", f.data, 16)[0] for f in frames), default=0)


# ====================================================================== both sides
def replay(lab: GatewayLab, spec: HostSpec, name: str, frames: list[Frame], wd: Path,
           variant: str = "masquerade") -> Outcome:
    tag = f"rw{os.getpid() % 100000}-{CAPTURES.index(name)}{variant[0]}:"
    rules = VARIANTS[variant].replace("{T}", tag)
    out = Outcome(f"{name} ({variant})")
    lab.restore(rules)
    lab.x("gw", "conntrack", "-F", check=False)
    lab.drain(0.05)
    lab.log_lines(tag)
    (wd / "rules").write_text(rules)
    (wd / "host.toml").write_text(spec.host_toml())
    pyfw = PyfwSide(wd / "rules", wd / "host.toml")
    injected = {struct.unpack_from("!H", f.data, 18)[0] for f in frames} - {0}
    kernel: dict[str, list[bytes]] = {i.name: [] for i in spec.ifaces}
    mine: dict[str, list[bytes]] = {i.name: [] for i in spec.ifaces}
    for f in frames:
        t = time.time()
        lab.send(f)
        res = pyfw.step(f, t)
        for em in res.emitted:
            mine.setdefault(em.iface, []).append(em.frame)
        for k, v in lab.drain(0.002).items():
            kernel[k].extend(v)
    for k, v in lab.drain(0.2).items():
        kernel[k].extend(v)
    label = f"{len(frames)} frames"
    out.items += _compare_frames(out, label, kernel, mine, injected)
    out.items += _compare_state(out, label, lab.counters(), pyfw.counters(), lab.conntrack(), pyfw.conntrack())
    k_logs = [norm_log(x, injected) for x in lab.log_lines(tag)]
    p_logs = [norm_log(x, injected) for x in pyfw.new_logs()]
    out.items += max(len(k_logs), len(p_logs))
    if k_logs != p_logs:
        out.problems.append(f"{name}: LOG lines differ\n  kernel: " + "\n          ".join(k_logs)
                            + "\n  pyfw:   " + "\n          ".join(p_logs))
    out.frames = len(frames)
    return out


SPEC = realworld_spec()
RESULTS: dict[str, Outcome] = {}


@pytest.fixture(scope="module")
def labs() -> Any:
    """One gateway per variant, made when first needed: a nat table, once
    loaded, stays in its namespace (and NAT's null bindings with it)."""
    made: dict[str, GatewayLab] = {}

    def get(variant: str) -> GatewayLab:
        if variant not in made:
            lab = GatewayLab(SPEC)
            made[variant] = lab.__enter__()
        return made[variant]

    try:
        yield get
    finally:
        for lab in made.values():
            lab.close()


def _params() -> list[Any]:
    out = []
    for variant in VARIANTS:
        for n in CAPTURES:
            marks = [pytest.mark.xfail(reason=XFAIL[n, variant], strict=True)] if (n, variant) in XFAIL else []
            out.append(pytest.param(n, variant, marks=marks, id=f"{variant}-{n}"))
    return out


@pytest.mark.parametrize("name,variant", _params())
def test_capture_like_kernel(labs: Any, name: str, variant: str) -> None:
    frames = prepare(name, SPEC, variant)
    if not frames:
        pytest.skip("no IPv4 unicast frame crosses a two-interface gateway")
    if variant == "dmz" and _biggest(frames) <= DMZ_MTU:
        pytest.skip(f"no datagram over the dmz MTU ({DMZ_MTU}): the routed run covers it")
    with tempfile.TemporaryDirectory(prefix="pyfw-rw-") as wd:
        out = replay(labs(variant), SPEC, name, frames, Path(wd), variant)
    RESULTS[out.name] = out
    assert not out.problems, "\n".join(out.problems)


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    frames = sum(o.frames for o in RESULTS.values())
    items = sum(o.items for o in RESULTS.values())
    with capsys.disabled():
        print(f"\nreal captures: {len(RESULTS)} replayed, {frames} frames, {items} frames/counters/"
              f"entries/log lines compared")
