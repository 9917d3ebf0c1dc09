"""A ruleset on a host, ready for tests: send frames, replay pcaps, and
assert what happened with messages that explain themselves.

The ruleset and host are parsed and compiled once per test session; every
test gets the same compiled engine reset to a clean state (counters zero,
no connections, clock at 0, rate-limit state empty).  scapy is imported only
here and only when a test passes scapy packets or asks for them.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyfw.engine.engine import Emitted, Engine, Result
from pyfw.ruleset.model import Ruleset


class FirewallAssertion(AssertionError):
    """A failed expectation; the message has the packet and its trace."""


def _describe_frame(frame: bytes) -> str:
    """One line for a frame: addresses, protocol, ports, flags."""
    from pyfw.ext.types import ip_to_str

    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return f"<frame {len(frame)} bytes, ethertype 0x{frame[12:14].hex()}>"
    ip = frame[14:]
    proto = ip[9]
    ihl = (ip[0] & 15) * 4
    src, dst = ip_to_str(int.from_bytes(ip[12:16], "big")), ip_to_str(int.from_bytes(ip[16:20], "big"))
    l4 = ip[ihl:]
    if proto == 6 and len(l4) >= 14:
        flags = "".join(n for b, n in ((2, "S"), (16, "A"), (1, "F"), (4, "R"), (8, "P")) if l4[13] & b)
        return f"TCP {src}:{int.from_bytes(l4[0:2], 'big')} > {dst}:{int.from_bytes(l4[2:4], 'big')} [{flags}]"
    if proto == 17 and len(l4) >= 4:
        return f"UDP {src}:{int.from_bytes(l4[0:2], 'big')} > {dst}:{int.from_bytes(l4[2:4], 'big')}"
    if proto == 1 and len(l4) >= 2:
        return f"ICMP {src} > {dst} type {l4[0]} code {l4[1]}"
    return f"IP proto {proto} {src} > {dst}"


@dataclass
class Outcome:
    """What one frame did: verdict, path, trace, emitted frames, conntrack."""

    frame: bytes
    iface: str
    result: Result
    firewall: Firewall

    @property
    def verdict(self) -> str | None:
        return self.result.verdict

    @property
    def path(self) -> str:
        return self.result.path

    @property
    def out(self) -> str | None:
        return self.result.out

    @property
    def emitted(self) -> list[Emitted]:
        return self.result.emitted

    def frames(self, iface: str | None = None) -> list[bytes]:
        return [e.frame for e in self.result.emitted if iface is None or e.iface == iface]

    def packets(self, iface: str | None = None) -> list[Any]:
        """The emitted frames as scapy packets."""
        from scapy.layers.l2 import Ether

        return [Ether(f) for f in self.frames(iface)]

    @property
    def trace(self) -> list[str]:
        return [s.label() for s in self.result.trace]

    def trace_lines(self) -> list[str]:
        rs = self.firewall.ruleset
        lines = []
        for step in self.result.trace:
            where = f"{step.src[0]}:{step.src[1]}" if step.src[0] is not None else "(policy)"
            text = ""
            if step.rule is not None:
                from pyfw.ruleset.format import rule_text

                rule = rs.tables[step.table].chains[step.chain].rules[step.rule - 1]
                text = rule_text(rule, step.chain)
            else:
                policy = rs.tables[step.table].chains[step.chain].policy
                text = f"-P {step.chain} {policy}"
            lines.append(f"  {step.label():<28} {where:<32} {text}")
        return lines

    def explain(self) -> str:
        head = f"{_describe_frame(self.frame)} on {self.iface}: verdict {self.verdict}, path {self.path}"
        if self.out:
            head += f", out {self.out}"
        body = self.trace_lines() or ["  (no rule was reached)"]
        sent = [f"  sent on {e.iface}: {_describe_frame(e.frame)}" for e in self.result.emitted]
        return "\n".join([head, "trace:", *body, *sent])

    @property
    def conn(self) -> Any:
        """The connection-table entry of this frame's flow (or None)."""
        return self.firewall.conn_for(self.frame)


@dataclass
class Firewall:
    """A compiled ruleset on a host; `reset()` between tests."""

    ruleset_path: str
    host_path: str
    ruleset: Ruleset
    engine: Engine
    clock: float = 0.0
    seen: dict[tuple[str, int], str] = field(default_factory=dict)

    # ------------------------------------------------------------ sending
    def send(self, frame: Any, iface: str, at: float | None = None) -> Outcome:
        """A frame (bytes or a scapy packet) arriving on `iface` (or `local`)."""
        data = bytes(frame)
        if at is not None:
            self.clock = at
        if iface == "local":
            res = self.engine.send(data[14:] if _is_ethernet(data) else data, self.clock, trace=True)
        else:
            res = self.engine.receive(data, iface, self.clock, trace=True)
        self._record(res)
        return Outcome(data, iface, res, self)

    def replay(self, pcap: str | Path, iface: str) -> list[Outcome]:
        """Every frame of a pcap/pcapng on its timestamps (clock starts at 0)."""
        from pyfw.io.pcap import read_frames

        out: list[Outcome] = []
        first: float | None = None
        for ts, name, frame in read_frames(str(pcap)):
            first = ts if first is None else first
            out.append(self.send(frame, name or iface, at=self.clock + (ts - first) if out else self.clock))
        return out

    def advance(self, seconds: float) -> None:
        self.clock += seconds

    def _record(self, res: Result) -> None:
        for step in res.trace:
            if step.rule is not None and step.src[0] is not None:
                self.seen[(step.src[0], int(step.src[1] or 0))] = step.label()

    # ------------------------------------------------------------ asserting
    def assert_allowed(self, frame: Any, iface: str, out: str | None = None) -> Outcome:
        o = self.send(frame, iface)
        if o.verdict != "ACCEPT" or (out is not None and o.out != out):
            want = "accepted" + (f" out {out}" if out else "")
            raise FirewallAssertion(f"expected the frame to be {want}\n{o.explain()}")
        return o

    def assert_dropped(self, frame: Any, iface: str) -> Outcome:
        o = self.send(frame, iface)
        if o.verdict not in ("DROP", None) or self.engine.rejected_last:
            raise FirewallAssertion(f"expected the frame to be dropped\n{o.explain()}")
        return o

    def assert_rejected(self, frame: Any, iface: str) -> Outcome:
        o = self.send(frame, iface)
        if not self.engine.rejected_last or not o.emitted:
            raise FirewallAssertion(f"expected the frame to be rejected (with a reply)\n{o.explain()}")
        return o

    def assert_nat(self, frame: Any, iface: str, *, src: str | None = None, dst: str | None = None,
                   sport: int | None = None, dport: int | None = None) -> Outcome:
        """The frame leaves with the given translated addresses/ports."""
        o = self.send(frame, iface)
        sent = [e.frame for e in o.emitted if e.iface == o.out]
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
    def conn_for(self, frame: bytes) -> Any:
        from pyfw.engine.conntrack import Tuple
        from pyfw.engine.packet import Packet

        if not _is_ethernet(frame):
            return None
        pkt = Packet(bytearray(frame[14:]))
        t = Tuple(pkt.src, pkt.dst, pkt.proto, pkt.sport, pkt.dport)
        found = self.engine.ct.lookup(t, 0, self.clock)
        return found[0] if found else None

    def counters(self) -> str:
        from pyfw.ruleset.format import save_table

        return "".join(save_table(t, counters=True, program="pyfw-save") for t in self.ruleset.ordered_tables())

    def reset(self) -> None:
        """Clean state for the next test: counters, connections, clock, rates."""
        for table in self.ruleset.tables.values():
            for chain in table.chains.values():
                chain.counters.zero()
                for r in chain.rules:
                    r.counters.zero()
        self.engine.reset()
        self.clock = 0.0


def _is_ethernet(data: bytes) -> bool:
    return len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x08\x06", b"\x86\xdd")


def _endpoints(frame: bytes) -> dict[str, Any]:
    from pyfw.ext.types import ip_to_str

    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    out: dict[str, Any] = {"src": ip_to_str(int.from_bytes(ip[12:16], "big")),
                           "dst": ip_to_str(int.from_bytes(ip[16:20], "big"))}
    if ip[9] in (6, 17):
        out["sport"] = int.from_bytes(ip[ihl:ihl + 2], "big")
        out["dport"] = int.from_bytes(ip[ihl + 2:ihl + 4], "big")
    return out


@functools.lru_cache(maxsize=32)
def _compiled(ruleset_path: str, host_path: str) -> tuple[Ruleset, Engine]:
    from pyfw.engine.host import load_host
    from pyfw.ruleset.restore import RestoreOptions, restore

    text = Path(ruleset_path).read_text()
    ruleset = restore(Ruleset(), text, RestoreOptions(counters=False, src_file=ruleset_path)).ruleset
    host = load_host(host_path)
    return ruleset, Engine(ruleset, host)


def load_firewall(ruleset: str | Path, host: str | Path) -> Firewall:
    """The session's compiled firewall for these files, reset."""
    rs, engine = _compiled(str(ruleset), str(host))
    fw = Firewall(str(ruleset), str(host), rs, engine)
    fw.reset()
    return fw


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


__all__ = ["Firewall", "Outcome", "FirewallAssertion", "load_firewall", "all_rules", "copy"]
