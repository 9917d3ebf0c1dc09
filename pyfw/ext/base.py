"""The contract every match and target module fulfils.

An extension is described by data (name, options, which tables, hooks and
protocol the kernel allows it in) plus a few methods: `parse` for one option,
`final_check` after all options, `check` for what the kernel's checkentry
refuses, and `save` / `print` for the `-S`/save text and the `-L` text.  The
core (pyfw.ruleset.argparse) runs the generic option checks the same way for
every extension, as libxtables' xtoptions does, before calling the module.

Texts returned by `save` and `print` start with the space iptables prints
before them (" --dport 22", " tcp dpt:22"), so the core only concatenates.
"""

from __future__ import annotations

import contextvars
import enum
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from pyfw.errors import ParameterProblem

# struct ipt_ip invflags bits (IPT_INV_*).
INV_VIA_IN: Final = 0x01
INV_VIA_OUT: Final = 0x02
INV_TOS: Final = 0x04
INV_SRCIP: Final = 0x08
INV_DSTIP: Final = 0x10
INV_FRAG: Final = 0x20
INV_PROTO: Final = 0x40

HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


class ArgType(enum.Enum):
    """How the generic layer pre-parses an option's argument (XTTYPE_*)."""

    NONE = "none"          # no argument
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    UINT8RC = "uint8rc"    # "a[:b]" ranges; value is a tuple of ints
    UINT16RC = "uint16rc"
    UINT32RC = "uint32rc"
    UINT64RC = "uint64rc"
    DOUBLE = "double"
    STRING = "string"      # value is the string itself (min/max = length)
    TOSMASK = "tosmask"    # value (tos, mask)
    MARKMASK32 = "markmask32"  # value (mark, mask)
    SYSLOGLEVEL = "sysloglevel"
    HOST = "host"          # value: int address (host order)
    HOSTMASK = "hostmask"  # value: (int address, int mask)
    PROTOCOL = "protocol"  # value: protocol number
    PORT = "port"
    PORTRC = "portrc"      # value (lo, hi)
    PLEN = "plen"
    PLENMASK = "plenmask"  # value: prefix length
    ETHERMAC = "ethermac"  # value: bytes(6)
    RAW = "raw"            # takes an argument, extension parses it (old API)


@dataclass(frozen=True)
class Opt:
    """One option of an extension (struct xt_option_entry).

    `excl` and `also` name other options of the same extension.  `has_arg`
    overrides getopt's argument kind: 0 none, 1 required, 2 optional (for the
    few old-style options that take an optional argument).
    """

    name: str
    type: ArgType = ArgType.NONE
    invert: bool = False
    mand: bool = False
    multi: bool = False
    min: int = 0
    max: int = 0
    excl: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    has_arg: int | None = None
    # The option's id (enum O_*) where it differs from its place in the
    # table: exclusion checks visit the other options in id order.
    id: int | None = None

    @property
    def getopt_has_arg(self) -> int:
        if self.has_arg is not None:
            return self.has_arg
        return 0 if self.type is ArgType.NONE else 1


class ArgvCursor:
    """The rest of the command line, for options that take extra words
    (`--tcp-flags MASK COMP`), as old-style iptables parsers read argv[optind]."""

    def __init__(self, argv: list[str], index: int) -> None:
        self.argv = argv
        self.index = index

    def peek(self) -> str | None:
        return self.argv[self.index] if self.index < len(self.argv) else None

    def take(self) -> str | None:
        word = self.peek()
        if word is not None:
            self.index += 1
        return word

    def has_arg(self) -> bool:
        """xs_has_arg: a next word that is neither an option nor `!`."""
        word = self.peek()
        return word is not None and not word.startswith("-") and not word.startswith("!")


@dataclass
class RuleIp:
    """The rule's IP part as the extension sees it (struct ipt_ip)."""

    proto: int = 0
    invflags: int = 0  # IPT_INV_* bits, see pyfw.ruleset.model


@dataclass
class Call:
    """One option occurrence handed to `Extension.parse` (xt_option_call)."""

    ext: Extension
    opt: Opt
    arg: str | None
    invert: bool
    value: Any
    data: Any
    xflags: set[str]
    ip: RuleIp
    argv: ArgvCursor
    # Per-rule scratch an extension may use between parse and final_check.
    udata: dict[str, Any] = field(default_factory=dict)
    # Warnings iptables prints on stderr while parsing (the command goes on).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckContext:
    """What the kernel knows when it checks an entry (xt_mtchk_param)."""

    table: str
    chain: str
    hooks: frozenset[str]  # hooks this rule is reachable from (may be empty)
    ip: RuleIp
    # The rule's matches as (name, data), for targets whose kernel check
    # looks at them (TCPMSS wants a SYN match); the target's name for matches.
    matches: tuple[tuple[str, Any], ...] = ()
    target: str | None = None


class Extension:
    """Base for match and target modules.  Subclass, set the class data,
    override what the extension needs."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "match" or "target"
    revision: ClassVar[int] = 0
    options: ClassVar[tuple[Opt, ...]] = ()
    # Kernel registration constraints (struct xt_match / xt_target).
    table: ClassVar[str | frozenset[str] | None] = None  # one table or a set
    hooks: ClassVar[frozenset[str] | None] = None
    proto: ClassVar[int] = 0
    # The name saved and listed when it differs (e.g. "NOTRACK" -> "CT")
    real_name: ClassVar[str | None] = None
    # Extra aliases accepted by -m/-j.
    aliases: ClassVar[tuple[str, ...]] = ()

    # --- data -------------------------------------------------------------
    def new_data(self) -> Any:
        """Fresh data for one use in one rule (xt's init)."""
        return None

    # --- parsing ----------------------------------------------------------
    def parse(self, call: Call) -> None:
        """Act on one option; the generic checks have already run."""

    def final_check(self, data: Any, xflags: set[str], udata: dict[str, Any]) -> None:
        """After the whole rule was read (x6_fcheck); raise ParameterProblem."""

    def check(self, data: Any, ctx: CheckContext) -> None:
        """The kernel's checkentry, beyond table/hooks/proto; raise KernelError."""

    def check_table(self, live: list[Any], new: list[Any]) -> None:
        """A check across rules at commit: `live` are this extension's data in
        the whole ruleset before the commit (the replaced table included),
        `new` those of the table being committed, in order."""

    @classmethod
    def checks_tables(cls) -> bool:
        return cls.check_table is not Extension.check_table

    # --- text ---------------------------------------------------------------
    def save(self, data: Any, ip: RuleIp) -> str:
        """Text after `-m NAME` / `-j NAME` in -S and save output."""
        return ""

    def print(self, data: Any, ip: RuleIp, numeric: bool) -> str:
        """Text appended to the -L line."""
        return ""

    # --- helpers --------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.real_name or self.name

    def save_name(self, data: Any) -> str:
        """The name after `-m`/`-j` in save text (an extension's `alias`)."""
        return self.display_name

    def option(self, name: str) -> Opt:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(name)


class Match(Extension):
    kind = "match"


class Target(Extension):
    kind = "target"


_warnings: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pyfw_warnings", default=None)


def warn(text: str) -> None:
    """A warning iptables prints on stderr while the command goes on (or
    before its error); the CLI prints it in order with the rest."""
    sink = _warnings.get()
    if sink is None:
        sys.stderr.write(text)
    else:
        sink.append(text)


def collect_warnings(sink: list[str]) -> contextvars.Token[list[str] | None]:
    return _warnings.set(sink)


def stop_collecting(token: contextvars.Token[list[str] | None]) -> None:
    _warnings.reset(token)


def fail(message: str) -> ParameterProblem:
    """Shorthand: `raise fail("...")` for a parameter problem."""
    return ParameterProblem(message)


def option_names(options: Iterable[Opt]) -> list[str]:
    return [o.name for o in options]
