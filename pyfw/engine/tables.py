"""A table's chains compiled for the packet path, and ipt_do_table.

Each rule becomes a tuple (test, counters, action, ...) where `test` is one
closure over the rule's IP part and its compiled matches; the walk keeps a
jump stack as the kernel does.  Counters are the model's own Counters
objects, so `pyfw-save -c` after a run prints exactly what the walk counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfw.engine.api import NF_ACCEPT, NF_DROP, NF_QUEUE, XT_CONTINUE, XT_RETURN, Env, Hotdrop
from pyfw.engine.packet import Packet
from pyfw.ext import find_match, find_target
from pyfw.ext.base import INV_DSTIP, INV_FRAG, INV_PROTO, INV_SRCIP, INV_VIA_IN, INV_VIA_OUT
from pyfw.ruleset.model import Chain, Counters, Rule, Table

# action kinds of a compiled rule
A_VERDICT = 0   # arg: verdict int
A_JUMP = 1      # arg: chain name
A_GOTO = 2      # arg: chain name
A_TARGET = 3    # arg: compiled target function
A_NONE = 4      # no target: count and go on
A_RETURN = 5


@dataclass
class CompiledRule:
    test: Callable[[Packet], bool]
    counters: Counters
    kind: int
    arg: Any
    number: int          # 1-based position in its chain
    rule: Rule


@dataclass
class CompiledChain:
    name: str
    rules: list[CompiledRule]
    policy: int | None          # verdict for built-in chains
    counters: Counters | None   # policy counters


@dataclass
class CompiledTable:
    name: str
    chains: dict[str, CompiledChain] = field(default_factory=dict)


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
    return CompiledRule(_all(tests), rule.counters, kind, arg, number, rule)


def compile_table(table: Table, env: Env) -> CompiledTable:
    out = CompiledTable(table.name)
    for chain in table.chains.values():
        out.chains[chain.name] = compile_chain(chain, env)
    return out


def compile_chain(chain: Chain, env: Env) -> CompiledChain:
    rules = [compile_rule(r, i, env) for i, r in enumerate(chain.rules, 1)]
    policy = _VERDICTS[chain.policy] if chain.policy else None
    return CompiledChain(chain.name, rules, policy, chain.counters if chain.builtin else None)


def do_table(table: CompiledTable, chain_name: str, pkt: Packet,
             trace: list[TraceStep] | None = None) -> int:
    """Walk a built-in chain; return the verdict (NF_* with queue bits)."""
    chains = table.chains
    chain = base = chains[chain_name]
    rules = chain.rules
    i = 0
    stack: list[tuple[CompiledChain, int]] = []
    length = pkt.tot_len
    while True:
        if i >= len(rules):
            if chain.policy is not None:
                pc = chain.counters
                assert pc is not None
                pc.packets += 1
                pc.bytes += length
                if trace is not None:
                    trace.append(TraceStep(table.name, chain.name, None))
                return chain.policy
            # end of a user chain: back to the caller; after a goto from
            # the built-in chain there is none, and its policy decides
            if not stack:
                chain, rules, i = base, base.rules, len(base.rules)
                continue
            chain, i = stack.pop()
            rules = chain.rules
            continue
        cr = rules[i]
        i += 1
        try:
            if not cr.test(pkt):
                continue
        except Hotdrop:
            return NF_DROP
        cr.counters.packets += 1
        cr.counters.bytes += length
        if trace is not None:
            trace.append(TraceStep(table.name, chain.name, cr.number, (cr.rule.src_file, cr.rule.src_line)))
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
                chain, rules, i = base, base.rules, len(base.rules)
                continue
            chain, i = stack.pop()
            rules = chain.rules
            continue
        target = chains[cr.arg]
        if kind == A_JUMP:
            stack.append((chain, i))
        chain, rules, i = target, target.rules, 0
