"""The table operations behind each command, with libiptc's semantics, and
the checks the kernel runs when a table is committed."""

from __future__ import annotations

from typing import Any

from pyfw.errors import KernelError, OtherProblem
from pyfw.ext import find_match, find_target
from pyfw.ext.base import HOOKS, CheckContext
from pyfw.ruleset.model import TABLE_NAMES, VERDICTS, Chain, Rule, Ruleset, Table

TEXT_EINVAL = "Invalid argument. Run `dmesg' for more information"
TEXT_ENOENT = "No chain/target/match by that name"
TEXT_EEXIST_CHAIN = "Chain already exists"
TEXT_EEXIST = "File exists"
TEXT_ENOTEMPTY = "Directory not empty"
TEXT_EMLINK = "Too many links"
TEXT_ELOOP = "Too many levels of symbolic links"
TEXT_BAD_RULE = "Bad rule (does a matching rule exist in that chain?)"
TEXT_BAD_BUILTIN = "Bad built-in chain name"
TEXT_BAD_POLICY = "Bad policy name. Run `dmesg' for more information"


class TableMissing(OtherProblem):
    """iptc_init failed: the table does not exist."""


def get_table(ruleset: Ruleset, name: str) -> Table:
    if name not in TABLE_NAMES:
        raise TableMissing(name)
    return ruleset.table(name)


def get_chain(table: Table, name: str | None) -> Chain:
    chain = table.chains.get(name or "")
    if chain is None:
        raise KernelError(TEXT_ENOENT)
    return chain


def check_jump_target(table: Table, rule: Rule) -> None:
    """A jump must name a user chain (the kernel refuses built-ins)."""
    t = rule.target
    if t.kind == "jump":
        chain = table.chains.get(t.name)
        if chain is None:
            raise KernelError(TEXT_ENOENT)
        if chain.builtin:
            raise KernelError(TEXT_EINVAL)


def append(table: Table, chain: str, rules: list[Rule]) -> None:
    c = get_chain(table, chain)
    for r in rules:
        check_jump_target(table, r)
    c.rules.extend(rules)


def insert(table: Table, chain: str, rulenum: int, rules: list[Rule]) -> None:
    c = get_chain(table, chain)
    index = rulenum - 1
    if index > len(c.rules):
        raise KernelError("Index of insertion too big")
    for r in rules:
        check_jump_target(table, r)
    # iptables inserts each expanded rule at the same position in turn
    for r in rules:
        c.rules.insert(index, r)


def replace(table: Table, chain: str, rulenum: int, rule: Rule) -> None:
    c = get_chain(table, chain)
    index = rulenum - 1
    if index >= len(c.rules):
        raise KernelError("Index of replacement too big")
    check_jump_target(table, rule)
    c.rules[index] = rule


def find_rule(c: Chain, rule: Rule) -> int:
    for i, r in enumerate(c.rules):
        if r.same_as(rule):
            return i
    return -1


def _not_found(rule: Rule) -> KernelError:
    """libiptc's text for a missing rule: its target lookup overwrites the
    function iptc_strerror keys on, so an extension or chain target gets the
    generic ENOENT text."""
    if rule.target.kind in ("extension", "jump"):
        return KernelError(TEXT_ENOENT)
    return KernelError(TEXT_BAD_RULE)


def _rule_chain(table: Table, chain: str) -> Chain:
    """delete_entry's chain lookup (-D and -C): a missing chain fails under
    TC_DELETE_ENTRY, whose ENOENT text is the "Bad rule" one."""
    c = table.chains.get(chain)
    if c is None:
        raise KernelError(TEXT_BAD_RULE)
    return c


def delete(table: Table, chain: str, rules: list[Rule]) -> None:
    c = _rule_chain(table, chain)
    failed: Rule | None = None
    for r in rules:
        i = find_rule(c, r)
        if i < 0:
            failed = r
            continue
        del c.rules[i]
    if failed is not None:
        raise _not_found(failed)


def delete_num(table: Table, chain: str, rulenum: int) -> None:
    c = get_chain(table, chain)
    if rulenum - 1 >= len(c.rules):
        raise KernelError("Index of deletion too big")
    del c.rules[rulenum - 1]


def check(table: Table, chain: str, rules: list[Rule]) -> None:
    c = _rule_chain(table, chain)
    for r in rules:
        if find_rule(c, r) < 0:
            raise _not_found(r)


def flush(table: Table, chain: str | None) -> None:
    if chain is None:
        for c in table.chains.values():
            c.rules.clear()
        return
    get_chain(table, chain).rules.clear()


def zero(table: Table, chain: str | None) -> None:
    chains = list(table.chains.values()) if chain is None else [get_chain(table, chain)]
    for c in chains:
        c.counters.zero()
        for r in c.rules:
            r.counters.zero()


def zero_num(table: Table, chain: str, rulenum: int) -> None:
    c = get_chain(table, chain)
    if rulenum - 1 >= len(c.rules) or rulenum < 1:
        raise KernelError("Index of counter too big")
    c.rules[rulenum - 1].counters.zero()


def new_chain(table: Table, name: str) -> None:
    if name in table.chains:
        raise KernelError(TEXT_EEXIST_CHAIN)
    table.chains[name] = Chain(name)


def delete_chain(table: Table, name: str | None) -> None:
    if name is None:
        error: KernelError | None = None
        for c in [c for c in table.ordered_chains() if not c.builtin]:
            try:
                _delete_one_chain(table, c.name)
            except KernelError as exc:
                error = exc
        if error is not None:
            raise error
        return
    _delete_one_chain(table, name)


def _delete_one_chain(table: Table, name: str) -> None:
    c = table.chains.get(name)
    if c is None:
        raise KernelError(TEXT_ENOENT)
    if c.builtin:
        raise KernelError(TEXT_EINVAL)
    if table.references(name):
        raise KernelError(TEXT_EMLINK)
    if c.rules:
        raise KernelError(TEXT_ENOTEMPTY)
    del table.chains[name]


def rename_chain(table: Table, old: str, new: str) -> None:
    """iptc_rename_chain's order: the new name taken (a chain or a verdict)
    first, then the old one missing or built-in (ENOENT), then the length."""
    if new in table.chains or new in VERDICTS:
        raise KernelError(TEXT_EEXIST)
    c = table.chains.get(old)
    if c is None or c.builtin:
        raise KernelError(TEXT_ENOENT)
    if len(new) + 1 > 32:
        raise KernelError(TEXT_EINVAL)
    new = new[:29]  # the kernel keeps XT_FUNCTION_MAXNAMELEN - 1 bytes of the name
    c.name = new
    table.chains = {(new if k == old else k): v for k, v in table.chains.items()}
    for ch in table.chains.values():
        for r in ch.rules:
            if r.target.kind == "jump" and r.target.name == old:
                r.target.name = new
                r.text = None


def set_policy(table: Table, chain: str, policy: str, counters: tuple[int, int] | None) -> None:
    c = table.chains.get(chain)
    if c is None or not c.builtin:
        raise KernelError(TEXT_BAD_BUILTIN)
    if policy not in ("ACCEPT", "DROP"):
        raise KernelError(TEXT_BAD_POLICY)
    c.policy = policy
    if counters is not None:
        c.counters.packets, c.counters.bytes = counters


# ---------------------------------------------------------------- commit

def reset_policy_counters(table: Table, keep: str | None = None) -> None:
    """What a commit does to the built-in chains' policy counters: libiptc
    loads them as COUNTER_MAP_ZEROED, so the replaced table starts them at
    zero (plus traffic since the load), except a policy this commit set with
    counters (`-P CHAIN POLICY -c P B`, a restore's `[P:B]` with -c)."""
    for name in table.builtin_names():
        if name != keep:
            table.chains[name].counters.zero()


def unconditional(rule: Rule) -> bool:
    """The kernel's unconditional(): an all-zero ipt_ip (no addresses,
    interfaces, protocol, flags or inversions; "-i +" keeps its "+") and no
    matches."""
    return (not rule.matches and not (rule.src or rule.smsk or rule.dst or rule.dmsk)
            and not rule.iniface and not rule.outiface and not rule.proto and not rule.frag
            and not rule.invflags and not (rule.target.kind == "jump" and rule.target.goto))


def _walk(table: Table) -> tuple[dict[int, frozenset[str]], bool]:
    """mark_source_chains: for every rule (by id), the hooks from which the
    kernel's walk reaches it (its `comefrom`, the hook mask checkentry sees),
    and whether the walk runs into a loop (ELOOP).

    The walk follows a chain's rules in order, chases jumps and gotos, and
    leaves a chain at an unconditional ACCEPT/DROP/QUEUE/RETURN rule: rules
    behind one are reached from no hook (their targets pass any hook
    check), and chains only they jump to are not walked."""
    reach: dict[int, set[str]] = {id(r): set() for c in table.chains.values() for r in c.rules}
    loop = False
    for hook in table.builtin_names():
        done: set[str] = set()
        on_path: set[str] = {hook}
        stack: list[tuple[str, int]] = [(hook, 0)]
        while stack:
            name, i = stack.pop()
            rules = table.chains[name].rules
            while i < len(rules):
                r = rules[i]
                i += 1
                reach[id(r)].add(hook)
                t = r.target
                if t.kind == "jump" and t.name in table.chains:
                    if t.name in on_path:
                        loop = True
                    elif t.name not in done:
                        stack.append((name, i))
                        stack.append((t.name, 0))
                        on_path.add(t.name)
                        break
                elif t.kind == "verdict" and unconditional(r):
                    i = len(rules)
            else:
                on_path.discard(name)
                done.add(name)
    return {k: frozenset(v) for k, v in reach.items()}, loop


def chain_hooks(table: Table) -> dict[int, frozenset[str]]:
    """For every rule (by id), the hooks from which packets reach it."""
    return _walk(table)[0]


def find_loop(table: Table) -> bool:
    """True when the kernel's walk from the built-in chains meets a chain
    already on its path (ELOOP); cycles it never reaches are accepted."""
    return _walk(table)[1]


def collect_uses(ruleset: Ruleset) -> dict[str, list[Any]]:
    """The data of every use of an extension that checks across rules
    (Extension.check_table), by "match:NAME" / "target:NAME"."""
    uses: dict[str, list[Any]] = {}
    for table in ruleset.tables.values():
        _collect_table(table, uses)
    return uses


def _collect_table(table: Table, uses: dict[str, list[Any]]) -> None:
    for chain in table.ordered_chains():
        for rule in chain.rules:
            for m in rule.matches:
                ext = find_match(m.name)
                if ext is not None and ext.checks_tables():
                    uses.setdefault("match:" + m.name, []).append(m.data)
            if rule.target.kind == "extension":
                ext = find_target(rule.target.name)
                if ext is not None and ext.checks_tables():
                    uses.setdefault("target:" + rule.target.name, []).append(rule.target.data)


def commit_check(table: Table, live: dict[str, list[Any]] | None = None) -> None:
    """What translate_table and the extensions' checkentry refuse; `live` is
    collect_uses() of the ruleset before the change."""
    hooks_of, loop = _walk(table)
    if loop:
        raise KernelError(TEXT_ELOOP)
    for chain in table.chains.values():
        for rule in chain.rules:
            check_rule(table.name, chain.name, hooks_of[id(rule)], rule)
    new: dict[str, list[Any]] = {}
    _collect_table(table, new)
    for key, datas in new.items():
        kind, name = key.split(":", 1)
        ext = find_match(name) if kind == "match" else find_target(name)
        assert ext is not None
        ext.check_table((live or {}).get(key, []), datas)


def commit_check_change(table: Table, hooks_before: dict[int, frozenset[str]], added: list[Rule],
                        live: dict[str, list[Any]] | None = None) -> None:
    """commit_check for a table that passed it before one command changed
    it: only the added rules, and the rules now reached from other hooks,
    can fail.  Any change may make a loop reachable (deleting an
    unconditional ACCEPT uncovers the jumps behind it)."""
    hooks_of, loop = _walk(table)
    if loop:
        raise KernelError(TEXT_ELOOP)
    new_ids = {id(r) for r in added}
    for chain in table.chains.values():
        for rule in chain.rules:
            hooks = hooks_of[id(rule)]
            if id(rule) in new_ids or hooks_before.get(id(rule)) != hooks:
                check_rule(table.name, chain.name, hooks, rule)
    if live is not None:
        new: dict[str, list[Any]] = {}
        _collect_table(table, new)
        for key, datas in new.items():
            kind, name = key.split(":", 1)
            ext = find_match(name) if kind == "match" else find_target(name)
            assert ext is not None
            ext.check_table(live.get(key, []), datas)


def check_rule(table: str, chain: str, hooks: frozenset[str], rule: Rule) -> None:
    ip = rule.ip
    matches = tuple((m.name, m.data) for m in rule.matches)
    target_name = rule.target.name if rule.target.kind == "extension" else None
    for m in rule.matches:
        ext = find_match(m.name)
        if ext is None:
            raise KernelError(TEXT_EINVAL)
        _check_ext(ext, m.data, CheckContext(table, chain, hooks, ip, matches, target_name))
    if rule.target.kind == "extension":
        ext = find_target(rule.target.name)
        if ext is None:
            raise KernelError(TEXT_EINVAL)
        _check_ext(ext, rule.target.data, CheckContext(table, chain, hooks, ip, matches, target_name))


def _check_ext(ext, data, ctx: CheckContext) -> None:  # type: ignore[no-untyped-def]
    allowed = ext.table
    if allowed is not None and ctx.table not in ({allowed} if isinstance(allowed, str) else allowed):
        raise KernelError(TEXT_EINVAL)
    if ext.hooks is not None and ctx.hooks - ext.hooks:
        raise KernelError(TEXT_EINVAL)
    if ext.proto and (ctx.ip.proto != ext.proto or ctx.ip.invflags & 0x40):
        raise KernelError(TEXT_EINVAL)
    ext.check(data, ctx)


__all__ = ["HOOKS"]
