"""iptables-restore: a ruleset file applied to a ruleset, all or nothing.

The file structure is parsed by the Lark grammar (grammar/iptables.lark) from
one token per line; each rule line is then read as an iptables command line
(pyfw.ruleset.argparse).  Errors carry the line number and the wording of
iptables-restore 1.8.9.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyfw.errors import KernelError, OtherProblem, ParameterProblem, PyfwError
from pyfw.ruleset import commands as ops
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.execute import execute
from pyfw.ruleset.model import BUILTIN_CHAINS, Counters, Ruleset
from pyfw.ruleset.tokens import split_counters, split_words

EXTENSION_MAXNAMELEN = 29


class LineFailed(PyfwError):
    """`PROG: line N failed`, exit 1."""

    def __init__(self, line: int) -> None:
        super().__init__(f"line {line} failed")
        self.line = line


class CommitExpected(PyfwError):
    def __init__(self, line: int) -> None:
        super().__init__(f"COMMIT expected at line {line}")
        self.line = line


@dataclass
class LineError(PyfwError):
    """A ParameterProblem (or other xtables_error) raised while reading line N."""

    error: PyfwError
    line: int

    def __post_init__(self) -> None:
        super().__init__(self.error.message, self.error.exit_code)


# ---------------------------------------------------------------- the grammar

def grammar_path() -> Path:
    """The grammar shipped in the wheel (pyfw/grammar), or the checkout's."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammar" / "iptables.lark", here.parent / "grammar" / "iptables.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammar/iptables.lark not found")


@dataclass(frozen=True)
class Line:
    """One classified input line."""

    kind: str  # TABLE, CHAIN_DECL, RULE, COMMIT, STRAY
    number: int
    text: str  # without the trailing newline


@dataclass
class Block:
    table: Line
    items: list[Line]
    commit: Line


@dataclass
class Stray:
    line: Line


def _make_lexer_class() -> Any:
    from lark import Token
    from lark.lexer import Lexer

    class LineLexer(Lexer):
        """Hands the parser the pre-classified lines, one token each."""

        def __init__(self, lexer_conf: Any) -> None:
            pass

        def lex(self, data: Any) -> Iterator[Any]:  # type: ignore[override]
            for line in data:
                tok = Token(line.kind, line)
                tok.line = line.number
                yield tok

    return LineLexer


def _make_transformer() -> Any:
    from lark import Transformer

    class ToModel(Transformer):  # type: ignore[type-arg]
        """Tree to typed blocks; nothing past this sees a Lark tree."""

        def file(self, items: list[Any]) -> list[Any]:
            return items

        def block(self, items: list[Any]) -> Block:
            return Block(items[0].value, [i for i in items[1:-1]], items[-1].value)

        def chain_decl(self, items: list[Any]) -> Line:
            return items[0].value  # type: ignore[no-any-return]

        def rule(self, items: list[Any]) -> Line:
            return items[0].value  # type: ignore[no-any-return]

        def stray(self, items: list[Any]) -> Stray:
            return Stray(items[0].value)

    return ToModel()


@functools.lru_cache(maxsize=1)
def file_parser() -> Any:
    from lark import Lark

    return Lark(grammar_path().read_text(), parser="lalr", lexer=_make_lexer_class(),
                start="file", transformer=_make_transformer())


@functools.lru_cache(maxsize=1)
def words_parser() -> Any:
    from lark import Lark

    return Lark(grammar_path().read_text(), parser="lalr", start="words")


def grammar_split_words(line: str) -> list[str]:
    """Split a command line with the grammar's `words` rule (the reference
    for tokens.split_words)."""
    tree = words_parser().parse(line)
    out: list[str] = []
    for word in tree.children:
        tok = word.children[0]
        text = str(tok)
        if tok.type == "BARE":
            out.append(text)
            continue
        prefix, _, rest = text.partition('"')
        closed = rest.endswith('"') and not _escaped_end(rest)
        body = rest[:-1] if closed else rest
        chars: list[str] = []
        esc = False
        for ch in body:
            if esc:
                chars.append(ch)
                esc = False
            elif ch == "\\":
                esc = True
            else:
                chars.append(ch)
        word_text = prefix + "".join(chars)
        if closed or word_text:  # an unterminated empty group adds nothing
            out.append(word_text)
    return out


def _escaped_end(body: str) -> bool:
    n = 0
    for ch in reversed(body[:-1]):
        if ch != "\\":
            break
        n += 1
    return n % 2 == 1


def classify(lines: list[str]) -> list[Line]:
    """iptables-restore's per-line decision, which depends on whether a
    table block is open."""
    out: list[Line] = []
    in_table = False
    for number, raw in enumerate(lines, 1):
        if raw == "\n" or raw == "":
            continue
        if raw[0] == "#":
            continue
        text = raw[:-1] if raw.endswith("\n") else raw
        if raw == "COMMIT\n" and in_table:
            out.append(Line("COMMIT", number, text))
            in_table = False
        elif raw[0] == "*" and not in_table:
            out.append(Line("TABLE", number, text))
            in_table = True
        elif raw[0] == ":" and in_table:
            out.append(Line("CHAIN_DECL", number, text))
        elif in_table:
            out.append(Line("RULE", number, text))
        else:
            out.append(Line("STRAY", number, text))
    return out


def parse_file(text: str) -> tuple[list[Block | Stray], int | None]:
    """Blocks and strays; the second value is the line at which a missing
    COMMIT is reported (None when the structure is complete)."""
    from lark.exceptions import UnexpectedInput

    lines = text.splitlines(keepends=True)
    classified = classify(lines)
    missing: int | None = None
    if classified and _open_at_end(classified):
        missing = len(lines) + 1
        classified.append(Line("COMMIT", missing, "COMMIT"))
    try:
        items = file_parser().parse(classified)
    except UnexpectedInput as exc:  # pragma: no cover - classify keeps it well-formed
        raise ParameterProblem(f"syntax error at line {getattr(exc, 'line', '?')}") from exc
    return items, missing


def _open_at_end(lines: list[Line]) -> bool:
    open_ = False
    for line in lines:
        if line.kind == "TABLE":
            open_ = True
        elif line.kind == "COMMIT":
            open_ = False
    return open_


# ------------------------------------------------------------------ restore

@dataclass
class RestoreOptions:
    counters: bool = False
    noflush: bool = False
    test: bool = False
    table: str | None = None
    verbose: int = 0
    src_file: str | None = None
    # Loading a saved state: keep the file's table order instead of putting
    # each newly seen table in front as the kernel does.
    keep_order: bool = False


@dataclass
class RestoreResult:
    ruleset: Ruleset
    output: str = ""
    warnings: list[str] = field(default_factory=list)


def restore(ruleset: Ruleset, text: str, opts: RestoreOptions, program: str = "pyfw-restore") -> RestoreResult:
    """Apply `text` to a copy of `ruleset`; the original is untouched on error."""
    work = copy.deepcopy(ruleset)
    result = RestoreResult(work)
    items, missing = parse_file(text)
    try:
        for item in items:
            if isinstance(item, Stray):
                if opts.table is not None:
                    continue  # iptables skips lines outside the selected table
                raise LineFailed(item.line.number)
            _restore_block(work, item, opts, missing, result, program)
    except PyfwError as exc:
        # iptables-restore has printed the earlier lines' warnings and -v
        # lines by the time it fails: they ride on the error
        exc.stdout = result.output  # type: ignore[attr-defined]
        exc.earlier_warnings = list(result.warnings)  # type: ignore[attr-defined]
        raise
    return result


def _restore_block(work: Ruleset, block: Block, opts: RestoreOptions, missing: int | None,
                   result: RestoreResult, program: str) -> None:
    tline = block.table
    name = tline.text[1:].replace("\t", " ").split(" ")
    words = [w for w in name if w]
    if not words:
        raise LineError(ParameterProblem(f"{program}: line {tline.number} table name invalid"), tline.number)
    table_name = words[0][:32]
    if opts.table is not None and opts.table != table_name:
        return
    if table_name not in BUILTIN_CHAINS:
        raise LineError(ParameterProblem(f"{program}: unable to initialize table '{table_name}'"),
                        tline.number)
    if opts.keep_order and table_name not in work.tables:
        from pyfw.ruleset.model import Table

        work.append_table(Table.new(table_name))
    live = ops.collect_uses(work)
    table = work.table(table_name)
    # the commit zeroes the policy counters the block does not set
    ops.reset_policy_counters(table)
    if not opts.noflush:
        for c in table.ordered_chains():
            if opts.verbose:
                result.output += f"Flushing chain `{c.name}'\n"
            c.rules.clear()
        for c in [c for c in table.ordered_chains() if not c.builtin]:
            if opts.verbose:
                result.output += f"Deleting chain `{c.name}'\n"
            del table.chains[c.name]
    for line in block.items:
        if line.kind == "CHAIN_DECL":
            _chain_decl(table, line, opts, program)
        else:
            _rule_line(work, table_name, line, opts, result, program)
    if block.commit.number == missing:
        raise CommitExpected(missing)
    if not opts.test:
        try:
            ops.commit_check(table, live)
        except KernelError:
            raise LineFailed(block.commit.number) from None


def _chain_decl(table: Any, line: Line, opts: RestoreOptions, program: str) -> None:
    fields = [w for w in line.text[1:].replace("\t", " ").replace("\n", " ").split(" ") if w]
    if not fields:
        raise LineError(ParameterProblem(f"{program}: line {line.number} chain name invalid"), line.number)
    chain = fields[0]
    if len(chain) >= EXTENSION_MAXNAMELEN:
        raise LineError(ParameterProblem(
            f"Invalid chain name `{chain}' ({EXTENSION_MAXNAMELEN - 1} chars max)"), line.number)
    existing = table.chains.get(chain)
    if existing is None or not existing.builtin:
        if opts.noflush and existing is not None:
            existing.rules.clear()
        elif existing is not None:
            raise LineError(ParameterProblem(f"error creating chain '{chain}':File exists"), line.number)
        else:
            ops.new_chain(table, chain)
    if len(fields) < 2:
        raise LineError(ParameterProblem(f"{program}: line {line.number} policy invalid"), line.number)
    policy = fields[1]
    if policy == "-":
        return
    counters = (0, 0)
    if opts.counters:
        parsed = _parse_chain_counters(fields[2] if len(fields) > 2 else None)
        if parsed is None:
            raise LineError(ParameterProblem(f"invalid policy counters for chain '{chain}'"), line.number)
        counters = parsed
    try:
        ops.set_policy(table, chain, policy, counters)
    except KernelError as exc:
        text = exc.message.split(". Run")[0]
        raise LineError(OtherProblem(
            f"Can't set policy `{policy}' on `{chain}' line {line.number}: {text}"), line.number) from None


def _parse_chain_counters(word: str | None) -> tuple[int, int] | None:
    """sscanf("[%llu:%llu]")."""
    if word is None or not word.startswith("["):
        return None
    body = word[1:]
    head, sep, tail = body.partition(":")
    if not sep or not head.isdigit():
        return None
    digits = ""
    for ch in tail:
        if ch.isdigit():
            digits += ch
        else:
            break
    if not digits:
        return None
    return int(head), int(digits)


def _rule_line(work: Ruleset, table_name: str, line: Line, opts: RestoreOptions,
               result: RestoreResult, program: str) -> None:
    try:
        pcnt, bcnt, rest = split_counters(line.text, line.number)
        argv = [program, "-t", table_name]
        if not opts.noflush:
            argv += ["-v"] * opts.verbose
        if opts.counters and pcnt is not None and bcnt is not None:
            argv += ["--set-counters", pcnt, bcnt]
        argv += split_words(rest)
        parsed = parse_command(argv, table_name, restore=True)
        if parsed.help or parsed.version:
            return
    except ParameterProblem as exc:
        raise LineError(exc, line.number) from None
    except OtherProblem as exc:
        raise LineError(exc, line.number) from None
    try:
        outcome = execute(work, parsed, src_file=opts.src_file, src_line=line.number)
    except KernelError as exc:
        result.output += getattr(exc, "stdout", "")
        result.warnings += parsed.warnings
        raise LineFailed(line.number) from None
    except ParameterProblem as exc:
        result.output += getattr(exc, "stdout", "")
        if not getattr(exc, "warnings", None):
            result.warnings += parsed.warnings
        raise LineError(exc, line.number) from None
    result.output += outcome.verbose_lines + outcome.output
    result.warnings += outcome.warnings


__all__ = ["restore", "RestoreOptions", "RestoreResult", "LineFailed", "CommitExpected",
           "LineError", "Counters"]
