"""A ruleset on a host, ready for tests: send frames, replay pcaps, and
assert what happened with messages that explain themselves.

The ruleset and host are parsed and compiled once per test session; every
test gets the same compiled engine reset to a clean state (counters zero,
no connections, clock at 0, rate-limit and `recent` state empty).  A reset
costs what the previous test touched, not the size of the ruleset: only
rules whose matches keep state (limit, recent, hashlimit, REJECT's ICMP
rate limiter, ...) and that a packet reached since the last reset are
compiled again.  scapy is imported only here and only when a test passes
scapy packets or asks for them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyfw.engine.engine import Emitted, Engine, Result
from pyfw.ruleset.model import Counters, Rule, Ruleset

# A peer's MAC for frames a test builds without one (locally administered).
PEER_MAC = "02:00:00:00:00:fe"


class FirewallAssertion(AssertionError):
    """A failed expectation; the message has the packet and its trace."""


# ---------------------------------------------------------------- describing frames
def _ip(b: bytes | bytearray) -> str:
    return ".".join(str(x) for x in b)


_TCP_FLAGS = ((1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "A"), (32, "U"), (64, "E"), (128, "C"))


def describe_ip(ip: bytes | bytearray) -> str:
    """One line for an IPv4 datagram: protocol, addresses, ports, flags."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return f"<not IPv4, {len(ip)} bytes>"
    proto = ip[9]
    ihl = (ip[0] & 15) * 4
    src, dst = _ip(ip[12:16]), _ip(ip[16:20])
    frag = int.from_bytes(ip[6:8], "big")
    extra = ""
    if frag & 0x3FFF:
        extra = f" frag off {(frag & 0x1FFF) * 8}{' MF' if frag & 0x2000 else ''}"
        if frag & 0x1FFF:
            return f"IP proto {proto} {src} > {dst}{extra}"
    l4 = ip[ihl:]
    if proto == 6 and len(l4) >= 14:
        flags = "".join(n for b, n in _TCP_FLAGS if l4[13] & b) or "none"
        return (f"TCP {src}:{int.from_bytes(l4[0:2], 'big')} > {dst}:{int.from_bytes(l4[2:4], 'big')}"
                f" [{flags}]{extra}")
    if proto == 17 and len(l4) >= 4:
        return f"UDP {src}:{int.from_bytes(l4[0:2], 'big')} > {dst}:{int.from_bytes(l4[2:4], 'big')}{extra}"
    if proto == 1 and len(l4) >= 2:
        name = {0: "echo-reply", 3: "destination-unreachable", 8: "echo-request", 11: "time-exceeded"}.get(l4[0])
        what = f"{name} code {l4[1]}" if name else f"type {l4[0]} code {l4[1]}"
        if l4[0] == 3 and len(l4) >= 28:
            what += f" (about {describe_ip(l4[8:])})"
        return f"ICMP {src} > {dst} {what}{extra}"
    return f"IP proto {proto} {src} > {dst}{extra}"


def describe_frame(frame: bytes | bytearray) -> str:
    """One line for an Ethernet frame (or a bare IPv4 datagram)."""
    if len(frame) >= 14 and frame[12:14] == b"\x08\x06" and len(frame) >= 42:
        op = int.from_bytes(frame[20:22], "big")
        tpa, spa = _ip(frame[38:42]), _ip(frame[28:32])
        return f"ARP who-has {tpa} tell {spa}" if op == 1 else f"ARP {spa} is-at {frame[22:28].hex(':')}"
    if len(frame) >= 14 and frame[12:14] == b"\x08\x00":
        return describe_ip(frame[14:])
    if frame and frame[0] >> 4 == 4:
        return describe_ip(frame)
    return f"<frame {len(frame)} bytes, ethertype 0x{bytes(frame[12:14]).hex()}>"


_describe_frame = describe_frame  # the old private name


def _shown(path: str | None) -> str:
    """A ruleset path as a reader wants it: relative to the current
    directory when it is below it."""
    if path is None:
        return "(policy)"
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


# ---------------------------------------------------------------- outcome
@dataclass
class Outcome:
    """What one frame did: verdict, path, trace, emitted frames, conntrack."""

    frame: bytes
    iface: str
    result: Result
    firewall: Firewall
    logs: list[str] = field(default_factory=list)   # LOG lines this frame caused
    at: float = 0.0                                   # the clock when it was sent

    def __repr__(self) -> str:
        return f"<Outcome {describe_frame(self.frame)} on {self.iface}: {self.verdict} ({self.path})>"

    @property
    def verdict(self) -> str | None:
        """ACCEPT, DROP, REJECT, STOLEN, or None where no hook saw the frame."""
        return self.result.verdict

    @property
    def path(self) -> str:
        """input, forward, output, no-route, prerouting, arp, malformed, ignored."""
        return self.result.path

    @property
    def out(self) -> str | None:
        """The egress interface of the frame (None when it did not leave)."""
        return self.result.out

    @property
    def emitted(self) -> list[Emitted]:
        return self.result.emitted

    def frames(self, iface: str | None = None) -> list[bytes]:
        """The frames the host sent because of this one (on `iface`)."""
        return [e.frame for e in self.result.emitted if iface is None or e.iface == iface]

    def packets(self, iface: str | None = None) -> list[Any]:
        """The emitted frames as scapy packets."""
        from scapy.layers.l2 import Ether

        return [Ether(f) for f in self.frames(iface)]

    @property
    def trace(self) -> list[str]:
        """`table:chain:rule-number` (or `:policy`) of every rule that matched."""
        return [s.label() for s in self.result.trace]

    @property
    def trace_src(self) -> list[str | None]:
        """`file:line` of each trace step (None for policies)."""
        return [f"{s.src[0]}:{s.src[1]}" if s.src[0] is not None else None for s in self.result.trace]

    def trace_lines(self) -> list[str]:
        from pyfw.ruleset.format import rule_text

        rs = self.firewall.ruleset
        steps = [(s, _shown(s.src[0]) + (f":{s.src[1]}" if s.src[0] is not None else ""))
                 for s in self.result.trace]
        width = max([len(w) for _, w in steps] + [8])
        lines = []
        for step, where in steps:
            chain = rs.tables[step.table].chains[step.chain]
            if step.rule is not None:
                text = rule_text(chain.rules[step.rule - 1], step.chain)
            else:
                text = f"-P {step.chain} {chain.policy}"
            lines.append(f"  {step.label():<26} {where:<{width}}  {text}")
        return lines

    def explain(self) -> str:
        """The frame, what happened to it and why, in a few lines."""
        head = f"{describe_frame(self.frame)} on {self.iface} at t={self.at:g}: verdict {self.verdict}, " \
               f"path {self.path}"
        if self.out:
            head += f", out {self.out}"
        if self.result.reason:
            head += f" ({self.result.reason})"
        body = self.trace_lines() or ["  (no rule matched: no table saw this frame)"]
        sent = [f"  sent on {e.iface}: {describe_frame(e.frame)}" for e in self.result.emitted] or \
            ["  nothing was sent"]
        logs = [f"  log: {line}" for line in self.logs]
        conn = self.conn
        ct = [f"  conntrack: {self.firewall.conn_text(conn)}"] if conn is not None else []
        return "\n".join([head, "trace:", *body, *sent, *logs, *ct])

    @property
    def conn(self) -> Any:
        """The connection-table entry of this frame's flow (or None)."""
        return self.firewall.conn_for(self.frame)

    def reply(self, flags: str = "SA", payload: bytes = b"", iface: str | None = None) -> Any:
        """A scapy frame answering the first frame this one made leave
        (`iface`, default `out`): addresses and ports swapped, for TCP the
        given flags acknowledging it, for an echo request its echo reply.
        Send it on `out` to check that replies come back (de-NATed)."""
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.l2 import Ether

        where = iface or self.out
        sent = self.frames(where)
        if not sent:
            raise FirewallAssertion(f"nothing left on {where} to answer\n{self.explain()}")
        pkt = Ether(sent[0])
        ip = pkt[IP]
        l3 = IP(src=ip.dst, dst=ip.src, ttl=64)
        l4: Any
        if TCP in ip:
            t = ip[TCP]
            ack = (t.seq + len(bytes(t.payload)) + (1 if t.flags & 0x03 else 0)) & 0xFFFFFFFF
            l4 = TCP(sport=t.dport, dport=t.sport, flags=flags, seq=1_000_000, ack=ack, window=65535)
        elif UDP in ip:
            u = ip[UDP]
            l4 = UDP(sport=u.dport, dport=u.sport)
        elif ICMP in ip and ip[ICMP].type == 8:
            i = ip[ICMP]
            l4 = ICMP(type=0, id=i.id, seq=i.seq)
        else:
            raise FirewallAssertion(f"do not know how to answer {describe_frame(sent[0])}")
        answer = Ether(src=pkt.dst, dst=pkt.src) / l3 / l4
        return answer / payload if payload else answer


# ---------------------------------------------------------------- the compiled session state
# Extensions whose compiled form keeps no state between packets: resetting
# the engine's connection table is all they need.  Every other extension is
# compiled again after a test that reached it (limit keeps a token bucket in
# its closure; recent, hashlimit, REJECT and NFQUEUE share tables through
# env.shared, so those are compiled again together with a fresh env store).
STATELESS_MATCHES = frozenset({
    "addrtype", "comment", "connmark", "conntrack", "dscp", "icmp", "iprange", "length", "mac", "mark",
    "multiport", "owner", "pkttype", "state", "tcp", "tos", "ttl", "udp",
})
STATELESS_TARGETS = frozenset({
    "CONNMARK", "CT", "DNAT", "DSCP", "LOG", "MARK", "MASQUERADE", "NFLOG", "NOTRACK", "REDIRECT", "SNAT",
    "TCPMSS", "TOS", "TRACE", "TTL",
})
CLOSURE_STATE = frozenset({"match:limit"})  # state only in the rule's own closure


@dataclass
class _Stateful:
    """A compiled rule that keeps state, wrapped so a reset knows it ran."""

    cr: Any            # pyfw.engine.tables.CompiledRule
    table: str
    shared: bool       # its state may live in env.shared (shared with other rules)
    touched: bool = False


@dataclass
class Compiled:
    """One (ruleset, host) compiled for the session."""

    ruleset: Ruleset
    engine: Engine
    counters: list[Counters]
    sourced: list[tuple[Counters, tuple[str, int], str]]  # rules from a file: counters, (file, line), label
    rules: list[tuple[str, int, str]]                     # (file, line, text) of every rule from a file
    stateful: list[_Stateful]
    dirty: bool = False           # a frame was sent since the last reset
    unharvested: bool = False     # ... since the last harvest
    hit: dict[tuple[str, int], str] = field(default_factory=dict)  # session-wide coverage

    def watch(self) -> None:
        """Wrap the tests of stateful rules so that running them marks them."""
        from pyfw.engine.tables import A_TARGET

        self.stateful = []
        for tname, table in self.engine.tables.items():
            for chain in table.chains.values():
                for cr in chain.rules:
                    names = _extension_names(cr.rule)
                    if not names:
                        continue
                    shared = any(n not in CLOSURE_STATE for n in names)
                    st = _Stateful(cr, tname, shared)
                    cr.test = _marking(cr.test, st)
                    if cr.kind == A_TARGET:
                        cr.arg = _marking_target(cr.arg, st)
                    self.stateful.append(st)

    def reset(self) -> None:
        """A clean state: counters, connections, fragments, logs, clock,
        and the state of every stateful rule a packet reached."""
        self.harvest()
        for c in self.counters:
            if c.packets or c.bytes:
                c.packets = c.bytes = 0
        e = self.engine
        if not (self.dirty or e.now or e.logs or e.ct.count() or any(s.touched for s in self.stateful)):
            return  # nothing ran since the last reset (e.g. the first test)
        from pyfw.wire.frag import Defrag

        # the same objects: compiled NAT targets hold the Nat, the Nat the table
        e.ct.reinit(e.host)
        e.nat.reinit(e.ct, e.host)
        e.defrag = Defrag(timeout=e.defrag.timeout)
        e.logs.clear()
        e.nflogs.clear()
        e.stats.clear()
        e.pending_local.clear()
        e.now = 0.0
        e._last_gc = 0.0
        e.rejected = e.rejected_last = False
        if e.fastpath is not None:
            e.fastpath.clear()  # its entries hold the old connections
        # (the engine's routing caches stay: they depend on the host only)
        again = [s for s in self.stateful if s.touched]
        if any(s.shared for s in again):
            e.env._shared.clear()
            again = [s for s in self.stateful if s.touched or s.shared]
        if again:
            from pyfw.engine.tables import A_TARGET, compile_rule

            for st in again:
                fresh = compile_rule(st.cr.rule, st.cr.number, e.env)
                st.cr.test = _marking(fresh.test, st)
                if fresh.kind == A_TARGET:
                    st.cr.arg = _marking_target(fresh.arg, st)
                st.touched = False
        self.dirty = False

    def harvest(self, seen: dict[tuple[str, int], str] | None = None) -> None:
        """Record the rules whose counters moved (rule coverage) in `hit`
        (and in `seen`)."""
        if not self.unharvested and seen is None:
            return
        self.unharvested = False
        hit = self.hit
        for c, key, label in self.sourced:
            if c.packets:
                hit[key] = label
                if seen is not None:
                    seen[key] = label


def _extension_names(rule: Rule) -> list[str]:
    """The rule's extensions that keep state (see STATELESS_*)."""
    out = ["match:" + m.name for m in rule.matches if m.name not in STATELESS_MATCHES]
    t = rule.target
    if t.kind == "extension" and t.name not in STATELESS_TARGETS:
        out.append("target:" + t.name)
    return out


def _marking(test: Callable[[Any], bool], st: _Stateful) -> Callable[[Any], bool]:
    def marked(pkt: Any) -> bool:
        st.touched = True
        return test(pkt)

    marked.__wrapped__ = test  # type: ignore[attr-defined]
    return marked


def _marking_target(target: Callable[[Any], int], st: _Stateful) -> Callable[[Any], int]:
    def marked(pkt: Any) -> int:
        st.touched = True
        return target(pkt)

    marked.__wrapped__ = target  # type: ignore[attr-defined]
    return marked


# ---------------------------------------------------------------- firewall
@dataclass
class Firewall:
    """A compiled ruleset on a host; `reset()` between tests."""

    ruleset_path: str
    host_path: str
    ruleset: Ruleset
    engine: Engine
    clock: float = 0.0
    seen: dict[tuple[str, int], str] = field(default_factory=dict)
    base: str | None = None                    # where relative pcap paths are looked up
    compiled: Compiled | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"<Firewall {_shown(self.ruleset_path)} on {_shown(self.host_path)}, t={self.clock:g}>"

    # ------------------------------------------------------------ sending
    def send(self, frame: Any, iface: str, at: float | None = None) -> Outcome:
        """A frame (bytes or a scapy packet) arriving on `iface`, or sent by
        the host itself with iface `local` (an IP datagram, or a frame whose
        Ethernet header is ignored).  A scapy IP packet without Ethernet gets
        one addressed to the interface; an Ether() without dst gets the
        interface's MAC (so scapy never looks one up on the network)."""
        if iface != "local" and self.engine.host.interface(iface) is None:
            names = ", ".join(n for n in self.engine.host.interfaces if n != "lo")
            raise ValueError(f"no interface {iface!r} on this host (it has {names}, and 'local')")
        data = self._frame_bytes(frame, iface)
        if at is not None:
            self.clock = at
        eng = self.engine
        nlogs = len(eng.logs)
        if self.compiled is not None:
            self.compiled.dirty = self.compiled.unharvested = True
        if iface == "local":
            res = eng.send(data[14:] if _is_ethernet(data) else data, self.clock, trace=True)
        else:
            res = eng.receive(data, iface, self.clock, trace=True)
        self._record(res)
        logs = [text for _t, text in eng.logs[nlogs:]]
        return Outcome(data, iface, res, self, logs, self.clock)

    def _frame_bytes(self, frame: Any, iface: str) -> bytes:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            return bytes(frame)
        from scapy.layers.inet import IP
        from scapy.layers.l2 import Ether

        if iface == "local":
            return bytes(frame[IP]) if IP in frame else bytes(frame)
        mac = self.engine.host.mac(iface).hex(":")
        if isinstance(frame, IP):
            return bytes(Ether(dst=mac, src=PEER_MAC) / frame)
        if isinstance(frame, Ether) and ("dst" not in frame.fields or "src" not in frame.fields):
            frame = frame.copy()
            if "dst" not in frame.fields:
                frame.dst = mac
            if "src" not in frame.fields:
                frame.src = PEER_MAC
        return bytes(frame)

    def replay(self, pcap: str | Path, iface: str | None = None) -> list[Outcome]:
        """Every frame of a pcap/pcapng on its timestamps, the first at the
        current clock; a pcapng interface name overrides `iface`.  A relative
        path is looked up next to the test file too."""
        from pyfw.io.pcap import read_frames

        path = Path(pcap)
        if not path.is_absolute() and not path.exists() and self.base is not None \
                and (Path(self.base) / path).exists():
            path = Path(self.base) / path
        out: list[Outcome] = []
        start = self.clock
        first: float | None = None
        for ts, name, frame in read_frames(str(path)):
            if first is None:
                first = ts
            where = name or iface
            if where is None:
                raise ValueError(f"{path}: frame {len(out) + 1} has no interface name; pass iface=")
            out.append(self.send(frame, where, at=start + round(ts - first, 6)))
        return out

    def advance(self, seconds: float) -> None:
        """Move the clock on (timeouts, limit and recent see it)."""
        self.clock += seconds

    def _record(self, res: Result) -> None:
        for step in res.trace:
            if step.rule is not None and step.src[0] is not None:
                self.seen[(step.src[0], int(step.src[1] or 0))] = step.label()

    # ------------------------------------------------------------ asserting
    def assert_allowed(self, frame: Any, iface: str, out: str | None = None) -> Outcome:
        """The frame is accepted (delivered, forwarded, or sent), and leaves
        through `out` when given."""
        __tracebackhide__ = True
        o = self.send(frame, iface)
        if o.verdict != "ACCEPT" or (out is not None and o.out != out):
            want = "accepted" + (f" and leave on {out}" if out else "")
            raise FirewallAssertion(f"expected the frame to be {want}\n{o.explain()}")
        return o

    def assert_dropped(self, frame: Any, iface: str) -> Outcome:
        """The frame is dropped without an answer from a REJECT."""
        __tracebackhide__ = True
        o = self.send(frame, iface)
        if o.verdict not in ("DROP", None):
            raise FirewallAssertion(f"expected the frame to be dropped\n{o.explain()}")
        return o

    def assert_rejected(self, frame: Any, iface: str) -> Outcome:
        """A REJECT rule refused the frame and its answer was sent."""
        __tracebackhide__ = True
        o = self.send(frame, iface)
        if o.verdict != "REJECT" or not o.emitted:
            raise FirewallAssertion(f"expected the frame to be rejected (with a reply)\n{o.explain()}")
        return o

    def assert_nat(self, frame: Any, iface: str, *, src: str | None = None, dst: str | None = None,
                   sport: int | None = None, dport: int | None = None) -> Outcome:
        """The frame leaves with the given (translated) addresses and ports;
        for a reply, the de-NATed ones."""
        __tracebackhide__ = True
        o = self.send(frame, iface)
        sent = [e.frame for e in o.emitted if e.iface == o.out] if o.verdict == "ACCEPT" else []
        problems = []
        if not sent:
            problems.append("nothing left the host")
        else:
            got = _endpoints(sent[0])
            for name, want in (("src", src), ("dst", dst), ("sport", sport), ("dport", dport)):
                if want is not None and got.get(name) != want:
                    problems.append(f"{name} is {got.get(name)}, expected {want}")
        if problems:
            raise FirewallAssertion("NAT expectation failed: " + "; ".join(problems) + "\n" + o.explain())
        return o

    # ------------------------------------------------------------ state
    def conn_for(self, frame: Any) -> Any:
        """The connection `frame` (Ethernet or IP, bytes or scapy) belongs to."""
        from pyfw.engine.conntrack import Tuple
        from pyfw.engine.packet import Packet

        data = frame if isinstance(frame, (bytes, bytearray)) else bytes(frame)
        ip = data[14:] if _is_ethernet(data) else data
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        pkt = Packet(bytearray(ip))
        sport, dport = pkt.sport, pkt.dport
        if pkt.proto == 1:
            sport, dport = pkt.icmp_id, pkt.icmp_type << 8 | pkt.icmp_code
        found = self.engine.ct.lookup(Tuple(pkt.src, pkt.dst, pkt.proto, sport, dport), 0, self.clock)
        return found[0] if found else None

    def conn_text(self, conn: Any) -> str:
        """One entry as `conntrack -L` prints it (NAT shows in the reply tuple)."""
        from pyfw.engine.conntrack.table import format_entry

        return format_entry(conn, self.clock)

    def conntrack(self) -> str:
        """The connection table as `pyfw conntrack -L` prints it."""
        return self.engine.ct.format(self.clock)

    @property
    def logs(self) -> list[str]:
        """Every LOG line since the reset, in order."""
        return [text for _t, text in self.engine.logs]

    def counters(self) -> str:
        """The counters in `iptables-save -c` format."""
        from pyfw.ruleset.format import save_table

        return "".join(save_table(t, counters=True, now=0, program="pyfw-save")
                       for t in self.ruleset.ordered_tables())

    def packets(self, file_line: str) -> int:
        """The packet counter of the rule on `FILE:LINE` (or `:LINE` / `LINE`
        of this ruleset)."""
        text = str(file_line)
        name, _, line = text.rpartition(":")
        want = Path(name).resolve() if name else Path(self.ruleset_path).resolve()
        for table in self.ruleset.tables.values():
            for chain in table.chains.values():
                for r in chain.rules:
                    if r.src_line == int(line) and r.src_file is not None and Path(r.src_file).resolve() == want:
                        return r.counters.packets
        raise KeyError(f"no rule from {want}:{line}")

    def reset(self) -> None:
        """Clean state for the next test: counters, connections, clock, rates."""
        if self.compiled is not None:
            self.compiled.harvest(self.seen)
            self.compiled.reset()
        else:
            for table in self.ruleset.tables.values():
                for chain in table.chains.values():
                    chain.counters.zero()
                    for r in chain.rules:
                        r.counters.zero()
            self.engine.reset()
        self.clock = 0.0

    def harvest(self) -> None:
        """Note the rules whose counters moved in `seen` (coverage)."""
        if self.compiled is not None:
            self.compiled.harvest(self.seen)


def _is_ethernet(data: bytes | bytearray) -> bool:
    return len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x08\x06", b"\x86\xdd")


def _endpoints(frame: bytes) -> dict[str, Any]:
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    out: dict[str, Any] = {"src": _ip(ip[12:16]), "dst": _ip(ip[16:20])}
    if ip[9] in (6, 17):
        out["sport"] = int.from_bytes(ip[ihl:ihl + 2], "big")
        out["dport"] = int.from_bytes(ip[ihl + 2:ihl + 4], "big")
    return out


SESSION: list[Compiled] = []  # every ruleset compiled in this process, for coverage


@functools.cache
def compiled(ruleset_path: str, host_path: str) -> Compiled:
    """The session's compiled (ruleset, host), by absolute paths."""
    from pyfw.engine.host import load_host
    from pyfw.ruleset.restore import RestoreOptions, restore

    text = Path(ruleset_path).read_text()
    ruleset = restore(Ruleset(), text, RestoreOptions(counters=False, src_file=ruleset_path)).ruleset
    host = load_host(host_path)
    engine = Engine(ruleset, host)
    counters: list[Counters] = []
    sourced: list[tuple[Counters, tuple[str, int], str]] = []
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            if chain.builtin:
                counters.append(chain.counters)
            for i, r in enumerate(chain.rules, 1):
                counters.append(r.counters)
                if r.src_file is not None and r.src_line is not None:
                    sourced.append((r.counters, (r.src_file, r.src_line), f"{table.name}:{chain.name}:{i}"))
    c = Compiled(ruleset, engine, counters, sourced, all_rules(ruleset), [])
    c.watch()
    SESSION.append(c)
    return c


def _compiled(ruleset_path: str, host_path: str) -> tuple[Ruleset, Engine]:
    c = compiled(_absolute(str(ruleset_path), os.getcwd()), _absolute(str(host_path), os.getcwd()))
    return c.ruleset, c.engine


@functools.lru_cache(maxsize=1024)
def _absolute(path: str, cwd: str) -> str:
    return str(Path(cwd, path).resolve())


def load_firewall(ruleset: str | Path, host: str | Path, base: str | Path | None = None) -> Firewall:
    """The session's compiled firewall for these files, reset."""
    cwd = os.getcwd()
    rp, hp = _absolute(str(ruleset), cwd), _absolute(str(host), cwd)
    c = compiled(rp, hp)
    c.reset()
    return Firewall(rp, hp, c.ruleset, c.engine, base=str(base) if base is not None else None, compiled=c)


def all_rules(ruleset: Ruleset) -> list[tuple[str, int, str]]:
    """(file, line, text) of every rule that came from a file."""
    from pyfw.ruleset.format import rule_text

    out = []
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for r in chain.rules:
                if r.src_file is not None and r.src_line is not None:
                    out.append((r.src_file, r.src_line, f"-t {table.name} " + rule_text(r, chain.name)))
    return out


def rules_of(fw: Firewall) -> Iterable[tuple[str, int, str]]:
    """The rules of a firewall's ruleset file (cached per session)."""
    return fw.compiled.rules if fw.compiled is not None else all_rules(fw.ruleset)


__all__ = ["Firewall", "Outcome", "FirewallAssertion", "load_firewall", "all_rules", "describe_frame",
           "describe_ip"]
