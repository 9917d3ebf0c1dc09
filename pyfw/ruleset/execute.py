"""Carry out one parsed command on a ruleset, as do_command4 does after
parsing: resolve the target (extension, verdict or chain), run the table
operation, produce the listing text."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyfw.errors import KernelError, ParameterProblem, PyfwError
from pyfw.ruleset import commands as ops
from pyfw.ruleset import format as fmt
from pyfw.ruleset.argparse import (
    CMD_APPEND,
    CMD_CHECK,
    CMD_DELETE,
    CMD_DELETE_CHAIN,
    CMD_DELETE_NUM,
    CMD_FLUSH,
    CMD_INSERT,
    CMD_LIST,
    CMD_LIST_RULES,
    CMD_NEW_CHAIN,
    CMD_NONE,
    CMD_RENAME_CHAIN,
    CMD_REPLACE,
    CMD_SET_POLICY,
    CMD_ZERO,
    CMD_ZERO_NUM,
    OPT_COUNTERS,
    OPT_EXPANDED,
    OPT_LINENUMBERS,
    OPT_NUMERIC,
    OPT_VERBOSE,
    ParsedCommand,
)
from pyfw.ruleset.model import Rule, Ruleset

RULE_COMMANDS = (CMD_APPEND, CMD_DELETE, CMD_CHECK, CMD_INSERT, CMD_REPLACE)
# Commands that change a table (so it must pass the kernel's checks).
CHANGING = (
    CMD_APPEND, CMD_DELETE, CMD_DELETE_NUM, CMD_INSERT, CMD_REPLACE, CMD_FLUSH,
    CMD_NEW_CHAIN, CMD_DELETE_CHAIN, CMD_RENAME_CHAIN, CMD_SET_POLICY,
)


@dataclass
class Outcome:
    output: str = ""
    warnings: list[str] = field(default_factory=list)
    changed: bool = False
    verbose_lines: str = ""
    # the rules this command put into the table (for an incremental check)
    added: list[Rule] = field(default_factory=list)


def resolve_rules(ruleset: Ruleset, p: ParsedCommand) -> list[Rule]:
    """The entries the command names, target resolved as do_command4 does."""
    table = ruleset.table(p.table)
    if p.target_ext is None and p.jumpto and p.jumpto not in ("ACCEPT", "DROP", "QUEUE", "RETURN"):
        if p.jumpto not in table.chains:
            if p.goto:
                raise ParameterProblem(f"goto '{p.jumpto}' is not a chain")
            raise ParameterProblem(f"Couldn't load target `{p.jumpto}':No such file or directory\n")
    return p.rules()


def execute(ruleset: Ruleset, p: ParsedCommand, *, src_file: str | None = None,
            src_line: int | None = None) -> Outcome:
    """Apply `p`; raise PyfwError subclasses as iptables fails.  What
    iptables had printed by then (the -v rule lines, "Flushing chain ...")
    rides on the error as `stdout`."""
    out = Outcome(warnings=list(p.warnings))
    try:
        return _execute(ruleset, p, out, src_file, src_line)
    except PyfwError as exc:
        exc.stdout = out.verbose_lines + out.output  # type: ignore[attr-defined]
        raise


def _execute(ruleset: Ruleset, p: ParsedCommand, out: Outcome, src_file: str | None,
             src_line: int | None) -> Outcome:
    cmd = p.command
    if cmd == CMD_NONE:
        return out
    table = ops.get_table(ruleset, p.table)
    chain = p.chain
    rules: list[Rule] = []
    if cmd in RULE_COMMANDS:
        rules = resolve_rules(ruleset, p)
        if src_file is not None or src_line is not None:
            for r in rules:
                r.src_file, r.src_line = src_file, src_line
        if p.options & OPT_VERBOSE:
            f = fmt.FMT_NOCOUNTS | fmt.FMT_OPTIONS | fmt.FMT_VIA | fmt.FMT_NOTABLE | fmt.FMT_NUMERIC
            out.verbose_lines = "".join(fmt.print_rule(r, 0, f) for r in rules)
    assert chain is not None or cmd in (CMD_LIST, CMD_LIST_RULES, CMD_FLUSH, CMD_ZERO, CMD_DELETE_CHAIN,
                                        CMD_LIST | CMD_ZERO, CMD_LIST_RULES | CMD_ZERO)
    base = cmd & ~(CMD_ZERO | CMD_ZERO_NUM) if cmd & (CMD_LIST | CMD_LIST_RULES) else cmd
    if base in (CMD_APPEND, CMD_INSERT, CMD_REPLACE):
        out.added = rules if base != CMD_REPLACE else rules[:1]
    if base == CMD_APPEND:
        ops.append(table, chain or "", rules)
    elif base == CMD_DELETE:
        ops.delete(table, chain or "", rules)
    elif base == CMD_DELETE_NUM:
        ops.delete_num(table, chain or "", p.rulenum)
    elif base == CMD_CHECK:
        ops.check(table, chain or "", rules)
    elif base == CMD_REPLACE:
        ops.replace(table, chain or "", p.rulenum, rules[0])
    elif base == CMD_INSERT:
        ops.insert(table, chain or "", p.rulenum, rules)
    elif base == CMD_FLUSH:
        if p.options & OPT_VERBOSE:
            names = [chain] if chain else [c.name for c in table.ordered_chains()]
            out.output += "".join(f"Flushing chain `{n}'\n" for n in names)
        ops.flush(table, chain)
    elif base == CMD_ZERO:
        if p.options & OPT_VERBOSE:
            names = [chain] if chain else [c.name for c in table.ordered_chains()]
            out.output += "".join(f"Zeroing chain `{n}'\n" for n in names)
        ops.zero(table, chain)
    elif base == CMD_ZERO_NUM:
        ops.zero_num(table, chain or "", p.rulenum)
    elif base == CMD_LIST:
        if chain is not None and chain not in table.chains:
            raise KernelError(ops.TEXT_ENOENT)
        f = fmt.list_format(bool(p.options & OPT_VERBOSE), bool(p.options & OPT_NUMERIC),
                            bool(p.options & OPT_EXPANDED), bool(p.options & OPT_LINENUMBERS))
        out.output += fmt.list_entries(table, chain, p.rulenum, f)
        _zero_after_list(table, p, out)
    elif base == CMD_LIST_RULES:
        if chain is not None and chain not in table.chains:
            raise KernelError(ops.TEXT_ENOENT)
        out.output += fmt.list_rules(table, chain, p.rulenum, bool(p.options & OPT_VERBOSE))
        _zero_after_list(table, p, out)
    elif base == CMD_NEW_CHAIN:
        ops.new_chain(table, chain or "")
    elif base == CMD_DELETE_CHAIN:
        if p.options & OPT_VERBOSE:
            names = [chain] if chain else [c.name for c in table.ordered_chains() if not c.builtin]
            out.output += "".join(f"Deleting chain `{n}'\n" for n in names)
        ops.delete_chain(table, chain)
    elif base == CMD_RENAME_CHAIN:
        ops.rename_chain(table, chain or "", p.newname or "")
    elif base == CMD_SET_POLICY:
        counters = (p.counters.packets, p.counters.bytes) if p.options & OPT_COUNTERS else None
        ops.set_policy(table, chain or "", p.policy or "", counters)
    else:
        raise ParameterProblem("no command specified")
    out.changed = base in CHANGING or bool(cmd & (CMD_ZERO | CMD_ZERO_NUM))
    return out


def _zero_after_list(table, p: ParsedCommand, out: Outcome) -> None:  # type: ignore[no-untyped-def]
    if p.command & CMD_ZERO:
        if p.options & OPT_VERBOSE:
            names = [p.chain] if p.chain else [c.name for c in table.ordered_chains()]
            out.output += "".join(f"Zeroing chain `{n}'\n" for n in names)
        ops.zero(table, p.chain)
        out.changed = True
    if p.command & CMD_ZERO_NUM:
        ops.zero_num(table, p.chain or "", p.rulenum)
        out.changed = True


__all__ = ["execute", "Outcome", "OPT_LINENUMBERS"]
