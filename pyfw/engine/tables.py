"""A table's chains compiled for the packet path, and ipt_do_table.

Each rule becomes a tuple (test, counters, action, ...) where `test` is one
closure over the rule's IP part and its compiled matches; the walk keeps a
jump stack as the kernel does.  Counters are the model's own Counters
objects, so `pyfw-save -c` after a run prints exactly what the walk counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pyfw.engine.api import NF_ACCEPT, NF_DROP, NF_QUEUE, XT_CONTINUE, XT_RETURN, Env, Hotdrop
from pyfw.engine.packet import Packet
from pyfw.ext import find_match, find_target
from pyfw.ext.base import INV_DSTIP, INV_FRAG, INV_PROTO, INV_SRCIP, INV_VIA_IN, INV_VIA_OUT
from pyfw.ruleset.model import Chain, Counters, Rule, Table

# action kinds of a compiled rule
A_VERDICT: Final = 0   # arg: verdict int
A_JUMP: Final = 1      # arg: chain name
A_GOTO: Final = 2      # arg: chain name
A_TARGET: Final = 3    # arg: compiled target function
A_NONE: Final = 4      # no target: count and go on
A_RETURN: Final = 5


@dataclass(slots=True)
class CompiledRule:
    test: Callable[[Packet], bool]
    counters: Counters
    kind: int
    arg: Any
    number: int          # 1-based position in its chain
    rule: Rule
    # unconditional with a standard verdict (ACCEPT, DROP, RETURN, QUEUE):
    # TRACE names such a rule "policy" in a built-in chain, "return" in a
    # user chain, as ip_tables' get_chainname_rulenum does
    trace_tail: bool = False


@dataclass(slots=True)
class CompiledChain:
    name: str
    rules: list[CompiledRule]
    policy: int | None          # verdict for built-in chains
    counters: Counters | None   # policy counters
    index: ChainIndex | None = None

    def select(self, pkt: Packet) -> tuple[list[CompiledRule], Callable[[Packet], list[CompiledRule]] | None]:
        """The rules that can match `pkt`, in order: all of them for a plain
        scan; for an indexed chain its leading unindexed rules now and a
        function for the candidates after them, called only when the walk
        gets past the head (the ESTABLISHED rule of a gateway usually ends
        it first)."""
        index = self.index
        if index is None:
            return self.rules, None
        return list(index.head), index.candidates


INDEX_MIN_RULES: Final = 48
_MASKS = [0] + [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(1, 33)]


class _Bucket:
    """Rules sharing a protocol/port key, sub-indexed by the address prefix
    they pin (source first, else destination)."""

    __slots__ = ("src", "dst", "any", "src_levels", "dst_levels", "src_octets", "dst_octets")

    def __init__(self) -> None:
        self.src: dict[int, dict[int, list[int]]] = {}
        self.dst: dict[int, dict[int, list[int]]] = {}
        self.any: list[int] = []
        # (mask, prefix -> positions) per prefix length, filled in when built
        self.src_levels: tuple[tuple[int, dict[int, list[int]]], ...] = ()
        self.dst_levels: tuple[tuple[int, dict[int, list[int]]], ...] = ()
        # the root of a trie, as a filter before the per-length lookups:
        # byte k is 1 when some prefix there covers addresses k.x.x.x
        self.src_octets = bytes(256)
        self.dst_octets = bytes(256)


def _octets(by_len: dict[int, dict[int, list[int]]]) -> bytes:
    """The first octets the prefixes of `by_len` cover (a prefix shorter
    than 8 bits covers several)."""
    out = bytearray(256)
    for plen, nets in by_len.items():
        span = 1 << (8 - plen) if plen < 8 else 1
        for net in nets:
            first = net >> 24
            out[first:first + span] = b"\x01" * span
    return bytes(out)


class ChainIndex:
    """A two-level index over a long chain.  Level one: the protocol and
    destination port a rule pins (or just the protocol, or neither); level
    two: the source prefix it pins, else the destination prefix, hashed per
    prefix length.  A packet does a few dictionary lookups and gets every
    rule that can match it, in rule order; the others pin a field to a value
    the packet does not have.  First-match order and every counter stay
    exact because the walk still tests each candidate in order."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        buckets: dict[tuple[Any, Any], _Bucket] = {}
        keys = [_rule_keys(cr.rule) for cr in rules]
        n = 0
        while n < len(rules) and keys[n][0] is None and keys[n][2] == 0 and keys[n][4] == 0:
            n += 1  # the head: rules that pin nothing indexable
        self.head = rules[:n]
        for pos in range(n, len(rules)):
            proto, ports, splen, src, dplen, dst = keys[pos]
            for port in ports:
                b = buckets.get((proto, port))
                if b is None:
                    b = buckets[(proto, port)] = _Bucket()
                if splen:
                    b.src.setdefault(splen, {}).setdefault(src, []).append(pos)
                elif dplen:
                    b.dst.setdefault(dplen, {}).setdefault(dst, []).append(pos)
                else:
                    b.any.append(pos)
        for b in buckets.values():
            b.src_levels = tuple((_MASKS[plen], tbl) for plen, tbl in b.src.items())
            b.dst_levels = tuple((_MASKS[plen], tbl) for plen, tbl in b.dst.items())
            b.src_octets = _octets(b.src)
            b.dst_octets = _octets(b.dst)
        self.rules = rules
        self.buckets = buckets
        self.by_proto = {k[0] for k in buckets if k[0] is not None}
        # the buckets every packet (of a protocol) looks at, found once
        self.no_key = buckets.get((None, None))
        self.proto_only = {p: buckets.get((p, None)) for p in self.by_proto}
        # per protocol, its port buckets by the port alone (an int key: no
        # tuple to make and hash per packet)
        self.by_port: dict[int, dict[int, _Bucket]] = {p: {} for p in self.by_proto}
        for (p, port), b in buckets.items():
            if p is not None and port is not None:
                self.by_port[p][port] = b

    def candidates(self, pkt: Packet) -> list[CompiledRule]:
        proto = pkt.proto
        found: list[_Bucket] = []
        b = self.no_key
        if b is not None:
            found.append(b)
        ports = self.by_port.get(proto)
        if ports is not None:
            b = self.proto_only[proto]
            if b is not None:
                found.append(b)
            b = ports.get(pkt.dport)
            if b is not None:
                found.append(b)
        hits: list[int] = []
        src, dst = pkt.src, pkt.dst
        for b in found:
            if b.src_octets[src >> 24]:
                for mask, tbl in b.src_levels:
                    got = tbl.get(src & mask)
                    if got:
                        hits.extend(got)
            if b.dst_octets[dst >> 24]:
                for mask, tbl in b.dst_levels:
                    got = tbl.get(dst & mask)
                    if got:
                        hits.extend(got)
            if b.any:
                hits.extend(b.any)
        if not hits:
            return []
        hits.sort()
        rules = self.rules
        return [rules[k] for k in hits]


def _rule_keys(rule: Rule) -> tuple[int | None, list[int | None], int, int, int, int]:
    """(protocol, destination ports, source prefix length and value,
    destination prefix length and value) a rule pins exactly; None / 0 for
    what it leaves open."""
    inv = rule.invflags
    proto = rule.proto if rule.proto and not inv & INV_PROTO else None
    ports: list[int | None] = [None]
    if proto is not None:
        for m in rule.matches:
            found = _dest_ports(m.name, m.data)
            if found is not None:
                ports = list(dict.fromkeys(found))
                break
    splen = _plen(rule.smsk) if rule.smsk and not inv & INV_SRCIP else 0
    dplen = _plen(rule.dmsk) if rule.dmsk and not inv & INV_DSTIP else 0
    return proto, ports, splen, rule.src & _MASKS[splen], dplen, rule.dst & _MASKS[dplen]


def _plen(mask: int) -> int:
    """The prefix length of a contiguous mask; 0 (not indexed) otherwise."""
    for n in range(32, -1, -1):
        if _MASKS[n] == mask:
            return n
    return 0


def _dest_ports(name: str, data: Any) -> list[int] | None:
    """Single destination ports a tcp/udp/multiport match requires."""
    if name in ("tcp", "udp"):
        lo, hi = data.dpts
        if lo == hi and not data.invflags & 0x02:
            return [lo]
        return None
    if name == "multiport" and getattr(data, "flags", None) == 1 and not data.invert:
        if any(data.pflags[: data.count]):
            return None
        return list(data.ports[: data.count])
    return None


@dataclass
class CompiledTable:
    name: str
    chains: dict[str, CompiledChain] = field(default_factory=dict)
    # where TRACE lines go (Env.log); None: nowhere
    log: Callable[[str], None] | None = None


@dataclass
class TraceStep:
    table: str
    chain: str
    rule: int | None             # None: the policy
    src: tuple[str | None, int | None] = (None, None)

    def label(self) -> str:
        return f"{self.table}:{self.chain}:{'policy' if self.rule is None else self.rule}"


_VERDICTS = {"ACCEPT": NF_ACCEPT, "DROP": NF_DROP, "QUEUE": NF_QUEUE, "RETURN": XT_RETURN}


def _iface_test(name: str, invert: bool, attr: str) -> Callable[[Packet], bool] | None:
    if not name or name == "+":
        # all-zero mask: always matches (and `!` makes it never match)
        if invert:
            return lambda pkt: False
        return None
    if name.endswith("+"):
        prefix = name[:-1]
        if invert:
            return lambda pkt: not getattr(pkt, attr).startswith(prefix)
        return lambda pkt: getattr(pkt, attr).startswith(prefix)
    # (the attribute named in the lambda: getattr by name costs a call)
    if attr == "indev":
        return (lambda pkt: pkt.indev != name) if invert else (lambda pkt: pkt.indev == name)
    if attr == "outdev":
        return (lambda pkt: pkt.outdev != name) if invert else (lambda pkt: pkt.outdev == name)
    if invert:
        return lambda pkt: getattr(pkt, attr) != name
    return lambda pkt: getattr(pkt, attr) == name


def compile_ip(rule: Rule) -> list[Callable[[Packet], bool]]:
    """ip_packet_match as separate tests (only those the rule needs)."""
    tests: list[Callable[[Packet], bool]] = []
    inv = rule.invflags
    if rule.smsk or inv & INV_SRCIP:
        src, smsk, neg = rule.src, rule.smsk, bool(inv & INV_SRCIP)
        tests.append((lambda p: (p.src & smsk) != src) if neg else (lambda p: (p.src & smsk) == src))
    if rule.dmsk or inv & INV_DSTIP:
        dst, dmsk, neg = rule.dst, rule.dmsk, bool(inv & INV_DSTIP)
        tests.append((lambda p: (p.dst & dmsk) != dst) if neg else (lambda p: (p.dst & dmsk) == dst))
    for name, flag, attr in ((rule.iniface, INV_VIA_IN, "indev"), (rule.outiface, INV_VIA_OUT, "outdev")):
        t = _iface_test(name, bool(inv & flag), attr)
        if t is not None:
            tests.append(t)
    if rule.proto:
        proto, neg = rule.proto, bool(inv & INV_PROTO)
        tests.append((lambda p: p.proto != proto) if neg else (lambda p: p.proto == proto))
    elif inv & INV_PROTO:
        tests.append(lambda p: False)
    if rule.frag:
        neg = bool(inv & INV_FRAG)
        tests.append((lambda p: not p.fragment) if neg else (lambda p: p.fragment))
    return tests


def _all(tests: list[Callable[[Packet], bool]]) -> Callable[[Packet], bool]:
    if not tests:
        return lambda p: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda p: a(p) and b(p)
    if len(tests) == 3:
        a, b, c = tests
        return lambda p: a(p) and b(p) and c(p)
    seq = tuple(tests)

    def test(p: Packet) -> bool:
        for t in seq:
            if not t(p):
                return False
        return True

    return test


def compile_rule(rule: Rule, number: int, env: Env) -> CompiledRule:
    tests = compile_ip(rule)
    for m in rule.matches:
        ext = find_match(m.name)
        compile_fn = getattr(ext, "compile", None)
        if compile_fn is None:
            raise NotImplementedError(f"match {m.name} has no packet semantics yet")
        tests.append(compile_fn(m.data, env))
    t = rule.target
    kind: int
    arg: Any
    if t.kind == "verdict":
        kind, arg = (A_RETURN, None) if t.name == "RETURN" else (A_VERDICT, _VERDICTS[t.name])
    elif t.kind == "jump":
        kind, arg = (A_GOTO if t.goto else A_JUMP), t.name
    elif t.kind == "extension":
        ext = find_target(t.name)
        compile_fn = getattr(ext, "compile", None)
        if compile_fn is None:
            raise NotImplementedError(f"target {t.name} has no packet semantics yet")
        kind, arg = A_TARGET, compile_fn(t.data, env)
    else:
        kind, arg = A_NONE, None
    tail = kind in (A_VERDICT, A_RETURN) and _unconditional(rule)
    return CompiledRule(_all(tests), rule.counters, kind, arg, number, rule, tail)


def _unconditional(rule: Rule) -> bool:
    """ip_tables' unconditional(): no matches and an all-zero IP part."""
    return not rule.matches and not (rule.smsk or rule.dmsk or rule.src or rule.dst or rule.iniface
                                     or rule.outiface or rule.proto or rule.frag or rule.invflags)


def compile_table(table: Table, env: Env) -> CompiledTable:
    out = CompiledTable(table.name, log=getattr(env, "log", None))
    for chain in table.chains.values():
        out.chains[chain.name] = compile_chain(chain, env)
    return out


def compile_chain(chain: Chain, env: Env) -> CompiledChain:
    rules = [compile_rule(r, i, env) for i, r in enumerate(chain.rules, 1)]
    policy = _VERDICTS[chain.policy] if chain.policy else None
    index = ChainIndex(rules) if len(rules) >= INDEX_MIN_RULES else None
    return CompiledChain(chain.name, rules, policy, chain.counters if chain.builtin else None, index)


def do_table(table: CompiledTable, chain_name: str, pkt: Packet,
             trace: list[TraceStep] | None = None) -> int:
    """Walk a built-in chain; return the verdict (NF_* with queue bits).

    `rules` is the list being walked: a chain's rules, or for an indexed
    chain first its unindexed head, then (when the walk gets past it) the
    candidates the index gives for this packet."""
    chains = table.chains
    chain = base = chains[chain_name]
    index = chain.index
    if index is None:
        rules, tail = chain.rules, None
    else:
        rules, tail = index.head, index.candidates
    base_rules = rules
    n = len(rules)
    i = 0
    stack: list[tuple[CompiledChain, list[CompiledRule], int, Any]] = []
    length = pkt.tot_len
    while True:
        if i >= n:
            if tail is not None:
                rules = tail(pkt)  # the indexed rest of the chain
                if chain is base:
                    base_rules = rules
                n = len(rules)
                i = 0
                tail = None
                continue
            if chain.policy is not None:
                pc = chain.counters
                assert pc is not None
                pc.packets += 1
                pc.bytes += length
                if trace is not None:
                    trace.append(TraceStep(table.name, chain.name, None))
                if pkt.trace:
                    _trace(table, chain, "policy", len(chain.rules) + 1, pkt)
                return chain.policy
            # end of a user chain: back to the caller; after a goto from
            # the built-in chain there is none, and its policy decides
            if pkt.trace:
                _trace(table, chain, "return", len(chain.rules) + 1, pkt)
            if not stack:
                chain, rules, i, tail = base, base_rules, len(base_rules), None
                n = i
                continue
            chain, rules, i, tail = stack.pop()
            n = len(rules)
            continue
        cr = rules[i]
        i += 1
        try:
            if not cr.test(pkt):
                continue
        except Hotdrop:
            return NF_DROP
        c = cr.counters
        c.packets += 1
        c.bytes += length
        if trace is not None:
            trace.append(TraceStep(table.name, chain.name, cr.number, (cr.rule.src_file, cr.rule.src_line)))
        if pkt.trace:
            # logged before the target runs: TRACE's own rule is not
            _trace(table, chain, ("policy" if chain.policy is not None else "return")
                   if cr.trace_tail else "rule", cr.number, pkt)
        kind = cr.kind
        if kind == A_VERDICT:
            return int(cr.arg)
        if kind == A_NONE:
            continue
        if kind == A_TARGET:
            verdict = cr.arg(pkt)
            if verdict == XT_CONTINUE:
                length = pkt.tot_len
                continue
            if verdict != XT_RETURN:
                return int(verdict)
            kind = A_RETURN
        if kind == A_RETURN:
            if not stack:
                # RETURN with nothing to return to: the built-in's policy
                chain, rules, i, tail = base, base_rules, len(base_rules), None
                n = i
                continue
            chain, rules, i, tail = stack.pop()
            n = len(rules)
            continue
        target = chains[cr.arg]
        if kind == A_JUMP:
            stack.append((chain, rules, i, tail))
        chain = target
        index = target.index
        if index is None:
            rules, tail = target.rules, None
        else:
            rules, tail = index.head, index.candidates
        n = len(rules)
        i = 0


def _trace(table: CompiledTable, chain: CompiledChain, comment: str, number: int,
           pkt: Packet) -> None:
    """ip_tables' trace_packet: one TRACE line per rule a traced packet
    matches (the kernel logs it with nf_log_trace and the default flags)."""
    log = table.log
    if log is None:
        return
    from pyfw.engine.logtext import format_trace

    log(format_trace(pkt, table.name, chain.name, comment, number))
