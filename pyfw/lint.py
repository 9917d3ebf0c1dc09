"""`pyfw lint`: rules that can never match, rules a later rule makes
redundant, chains nothing jumps to, jumps that cannot return.

A rule's match space is a box: per header field a set of intervals
(addresses, protocol, ports, interfaces, fragment, conntrack state, mark).
Matches outside those fields are "unknown": such a rule's box is only an
upper bound of what it matches, so it never counts as covering another rule,
and findings that would rest on it are reported as unknown, never guessed.
Coverage is computed by box subtraction, so several earlier rules together
can shadow a later one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyfw.ext.base import INV_DSTIP, INV_FRAG, INV_PROTO, INV_SRCIP, INV_VIA_IN, INV_VIA_OUT
from pyfw.ruleset.model import Chain, Rule, Ruleset, Table

Intervals = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive

U32 = 0xFFFFFFFF
# conntrack states as exclusive values of one dimension
CT_STATES = {"INVALID": 0, "ESTABLISHED": 1, "RELATED": 2, "NEW": 3, "UNTRACKED": 4}
_CT_BITS = {1 << 0: 0, 1 << 1: 1, 1 << 2: 2, 1 << 3: 3, 1 << 8: 4}
DIMS = ("src", "dst", "proto", "frag", "sport", "dport", "in", "out", "ctstate", "mark")
MAX_BOXES = 4096

# targets after which a packet leaves the chain
TERMINATING_VERDICTS = {"ACCEPT", "DROP", "QUEUE", "RETURN"}
TERMINATING_TARGETS = {"REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NFQUEUE"}


def _norm(iv: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(x for x in iv if x[0] <= x[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _inter(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _minus(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def _complement(a: Intervals, top: int) -> Intervals:
    return _minus(((0, top),), a)


def _prefix(addr: int, mask: int) -> Intervals | None:
    """An address/mask as an interval (None for a non-contiguous mask)."""
    inv = ~mask & U32
    if inv & (inv + 1):
        return None
    return ((addr & mask, (addr & mask) | inv),)


Box = tuple[Intervals, ...]


@dataclass
class Universe:
    """The value domains; interfaces are numbered classes: each name the
    ruleset mentions, one "other name with this prefix" per prefix, and one
    "any other name"."""

    iface_classes: list[tuple[str, bool]]  # (name or prefix, is_prefix)

    @classmethod
    def of(cls, ruleset: Ruleset) -> Universe:
        names: set[str] = set()
        prefixes: set[str] = set()
        for table in ruleset.tables.values():
            for chain in table.chains.values():
                for r in chain.rules:
                    for n in (r.iniface, r.outiface):
                        if n and n != "+":
                            (prefixes.add(n[:-1]) if n.endswith("+") else names.add(n))
        classes = [(n, False) for n in sorted(names)] + [(p, True) for p in sorted(prefixes)]
        return cls(classes)

    @property
    def iface_top(self) -> int:
        return len(self.iface_classes)  # the last index is "any other name"

    def iface_set(self, name: str, invert: bool) -> Intervals:
        top = self.iface_top
        if not name or name == "+":
            return () if invert else ((0, top),)
        hits: list[tuple[int, int]] = []
        for i, (cname, is_prefix) in enumerate(self.iface_classes):
            if name.endswith("+"):
                p = name[:-1]
                ok = cname.startswith(p)  # a name or a longer prefix under p
            else:
                ok = not is_prefix and cname == name
            if ok:
                hits.append((i, i))
        s = _norm(hits)
        return _complement(s, top) if invert else s

    def full(self) -> Box:
        return (((0, U32),), ((0, U32),), ((0, 255),), ((0, 1),), ((0, 0xFFFF),), ((0, 0xFFFF),),
                ((0, self.iface_top),), ((0, self.iface_top),), ((0, 4),), ((0, U32),))


@dataclass
class Space:
    box: Box
    exact: bool                      # False: some match is not modelled
    unknown: list[str] = field(default_factory=list)


def rule_space(rule: Rule, uni: Universe) -> Space:
    dims = list(uni.full())
    unknown: list[str] = []
    inv = rule.invflags

    def restrict(i: int, s: Intervals | None, what: str) -> None:
        if s is None:
            unknown.append(what)
            return
        dims[i] = _inter(dims[i], s)

    for i, (addr, mask, flag, name) in enumerate(((rule.src, rule.smsk, INV_SRCIP, "-s"),
                                                  (rule.dst, rule.dmsk, INV_DSTIP, "-d"))):
        if mask or inv & flag:
            p = _prefix(addr, mask)
            restrict(i, None if p is None else (_complement(p, U32) if inv & flag else p), name)
    if rule.proto or inv & INV_PROTO:
        p = ((rule.proto, rule.proto),) if rule.proto else ((0, 255),)
        restrict(2, _complement(p, 255) if inv & INV_PROTO else p, "-p")
    if rule.frag:
        restrict(3, ((0, 0),) if inv & INV_FRAG else ((1, 1),), "-f")
    restrict(6, uni.iface_set(rule.iniface, bool(inv & INV_VIA_IN)), "-i")
    restrict(7, uni.iface_set(rule.outiface, bool(inv & INV_VIA_OUT)), "-o")
    for m in rule.matches:
        _match_space(m.name, m.data, dims, restrict, unknown)
    return Space(tuple(dims), not unknown, unknown)


def _ports(lo: int, hi: int, invert: bool) -> Intervals:
    s = _norm([(lo, hi)])
    return _complement(s, 0xFFFF) if invert else s


def _match_space(name: str, data: Any, dims: list[Intervals], restrict: Any, unknown: list[str]) -> None:
    if name == "comment":
        return
    if name in ("tcp", "udp"):
        dims[3] = _inter(dims[3], ((0, 0),))  # never matches a later fragment
        restrict(4, _ports(data.spts[0], data.spts[1], bool(data.invflags & 0x01)), "--sport")
        restrict(5, _ports(data.dpts[0], data.dpts[1], bool(data.invflags & 0x02)), "--dport")
        if name == "tcp" and (data.flg_mask or data.option):
            unknown.append("--tcp-flags/--tcp-option")
        return
    if name == "multiport":
        dims[3] = _inter(dims[3], ((0, 0),))
        ivs: list[tuple[int, int]] = []
        ports = list(data.ports)
        i = 0
        while i < len(ports):
            if data.pflags and i < len(data.pflags) and data.pflags[i] and i + 1 < len(ports):
                ivs.append((ports[i], ports[i + 1]))
                i += 2
            else:
                ivs.append((ports[i], ports[i]))
                i += 1
        s = _norm(ivs)
        if data.invert:
            s = _complement(s, 0xFFFF)
        flags = data.flags
        if flags == 0:      # XT_MULTIPORT_SOURCE
            restrict(4, s, "multiport")
        elif flags == 1:    # XT_MULTIPORT_DESTINATION
            restrict(5, s, "multiport")
        else:               # either: not a box
            unknown.append("multiport --ports")
        return
    if name in ("conntrack", "state"):
        mask = getattr(data, "state_mask", 0)
        other = getattr(data, "match_flags", 0) & ~(0x01 | 1 << 13)  # but the state (and state alias)
        if other or not mask or mask & ((1 << 6) | (1 << 7)):
            unknown.append(f"-m {name}")
            return
        vals = [(v, v) for bit, v in _CT_BITS.items() if mask & bit]
        s = _norm(vals)
        if getattr(data, "invert_flags", 0) & 0x01:
            s = _complement(s, 4)
        restrict(8, s, f"-m {name}")
        return
    if name == "mark":
        if data.mask == U32:
            point: Intervals = ((data.mark, data.mark),)
            restrict(9, _complement(point, U32) if data.invert else point, "-m mark")
        else:
            unknown.append("-m mark (masked)")
        return
    unknown.append(f"-m {name}")


def _box_empty(b: Box) -> bool:
    return any(not d for d in b)


def _subtract(boxes: list[Box], a: Box) -> list[Box] | None:
    out: list[Box] = []
    for r in boxes:
        if any(not _inter(r[d], a[d]) for d in range(len(DIMS))):
            out.append(r)
            continue
        cur = list(r)
        for d in range(len(DIMS)):
            rest = _minus(cur[d], a[d])
            if rest:
                piece = list(cur)
                piece[d] = rest
                out.append(tuple(piece))
            cur[d] = _inter(cur[d], a[d])
        if len(out) > MAX_BOXES:
            return None
    return out


def _intersects(a: Box, b: Box) -> bool:
    return all(_inter(a[d], b[d]) for d in range(len(DIMS)))


def _covers(a: Box, b: Box) -> bool:
    return all(not _minus(b[d], a[d]) for d in range(len(DIMS)))


@dataclass
class Finding:
    kind: str           # shadowed, redundant, unused-chain, no-return, unknown
    table: str
    chain: str
    rule: int | None
    file: str | None
    line: int | None
    text: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def human(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else f"{self.table}:{self.chain}:{self.rule or '-'}"
        return f"{where}: {self.kind}: {self.text}  ({self.detail})"


def _verdict_key(rule: Rule) -> tuple[Any, ...] | None:
    t = rule.target
    if t.kind == "verdict" and t.name in TERMINATING_VERDICTS:
        return ("verdict", t.name)
    if t.kind == "extension" and t.name in TERMINATING_TARGETS:
        return ("extension", t.name, repr(t.data))
    return None


def _never_returns(table: Table, chain: Chain, uni: Universe, seen: set[str]) -> bool:
    """A chain whose rules end every packet's walk in a terminal verdict."""
    if chain.name in seen:
        return False
    seen = seen | {chain.name}
    left: list[Box] | None = [uni.full()]
    for r in chain.rules:
        sp = rule_space(r, uni)
        term = _verdict_key(r) is not None and not (r.target.kind == "verdict" and r.target.name == "RETURN")
        if not term and r.target.kind == "jump" and not r.target.goto:
            sub = table.chains.get(r.target.name)
            term = sub is not None and _never_returns(table, sub, uni, seen)
        if term and sp.exact and left is not None:
            left = _subtract(left, sp.box)
            if left is not None and not left:
                return True
    return False


def lint(ruleset: Ruleset) -> list[Finding]:
    from pyfw.ruleset.format import rule_text

    uni = Universe.of(ruleset)
    found: list[Finding] = []
    for table in ruleset.ordered_tables():
        referenced = {r.target.name for c in table.chains.values() for r in c.rules if r.target.kind == "jump"}
        for chain in table.ordered_chains():
            if not chain.builtin and chain.name not in referenced:
                found.append(Finding("unused-chain", table.name, chain.name, None, None, None,
                                     f"-N {chain.name}", "no rule jumps or goes to this chain"))
            spaces = [rule_space(r, uni) for r in chain.rules]
            terminal: list[bool] = []
            for idx, r in enumerate(chain.rules):
                term = _verdict_key(r) is not None
                if r.target.kind == "jump":
                    sub = table.chains.get(r.target.name)
                    if sub is not None and _never_returns(table, sub, uni, set()):
                        term = True
                        # worth saying only when later rules wanted some of these packets
                        later = [k + 1 for k in range(idx + 1, len(chain.rules))
                                 if _intersects(spaces[k].box, spaces[idx].box)]
                        if later:
                            found.append(Finding(
                                "no-return", table.name, chain.name, idx + 1, r.src_file, r.src_line,
                                rule_text(r, chain.name),
                                f"{r.target.name} never returns; rule(s) {', '.join(map(str, later))} "
                                "after it see none of these packets"))
                    if r.target.goto:
                        term = True  # after a goto this chain's later rules see nothing
                terminal.append(term)
            for i, r in enumerate(chain.rules):
                f = _shadow(chain, i, spaces, terminal)
                if f is not None:
                    kind, detail = f
                    found.append(Finding(kind, table.name, chain.name, i + 1, r.src_file, r.src_line,
                                         rule_text(r, chain.name), detail))
                    continue
                red = _redundant(chain, i, spaces, terminal)
                if red is not None:
                    found.append(Finding("redundant", table.name, chain.name, i + 1, r.src_file, r.src_line,
                                         rule_text(r, chain.name), red))
    return found


def _shadow(chain: Chain, i: int, spaces: list[Space], terminal: list[bool]) -> tuple[str, str] | None:
    left: list[Box] | None = [spaces[i].box]
    if _box_empty(spaces[i].box):
        return "shadowed", "its matches contradict each other"
    used: list[int] = []
    inexact: list[str] = []
    for j in range(i):
        if not terminal[j] or left is None:
            continue
        if not any(_intersects(b, spaces[j].box) for b in left):
            continue
        if not spaces[j].exact:
            inexact.extend(spaces[j].unknown)
            continue
        left = _subtract(left, spaces[j].box)
        used.append(j + 1)
        if left is not None and not left:
            return "shadowed", "caught before by rule(s) " + ", ".join(map(str, used))
    if left is not None and inexact:
        # would the rules we could not model close the gap?  unknown.
        probe: list[Box] | None = left
        for j in range(i):
            if terminal[j] and not spaces[j].exact and probe is not None:
                probe = _subtract(probe, spaces[j].box)
        if probe is not None and not probe:
            return "unknown", "maybe shadowed; depends on " + ", ".join(sorted(set(inexact)))
    return None


def _redundant(chain: Chain, i: int, spaces: list[Space], terminal: list[bool]) -> str | None:
    r = chain.rules[i]
    key = _verdict_key(r)
    if key is None or key == ("verdict", "RETURN"):
        return None
    box = spaces[i].box
    for k in range(i + 1, len(chain.rules)):
        other = chain.rules[k]
        sk = spaces[k]
        if not _intersects(sk.box, box):
            continue
        okey = _verdict_key(other)
        if okey == key and sk.exact and _covers(sk.box, box):
            return f"rule {k + 1} gives the same verdict to every packet it matches"
        if terminal[k] and okey != key:
            return None  # a different verdict in between: needed
        if not terminal[k] and other.target.kind != "none":
            return None  # a LOG/MARK/jump in between would see these packets
    return None


def main(argv: list[str]) -> int:
    import argparse
    import sys

    from pyfw.cli.simulate import load_ruleset

    ap = argparse.ArgumentParser(prog="pyfw lint")
    ap.add_argument("rules")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ruleset = load_ruleset(a.rules)
    findings = lint(ruleset)
    if a.json:
        sys.stdout.write(json.dumps([f.as_dict() for f in findings], indent=2) + "\n")
    else:
        for f in findings:
            sys.stdout.write(f.human() + "\n")
        real = [f for f in findings if f.kind != "unknown"]
        sys.stdout.write(f"{len(real)} finding(s), {len(findings) - len(real)} unknown\n")
    return 1 if any(f.kind != "unknown" for f in findings) else 0
