"""The ruleset model: tables of chains of rules, as libiptc holds them.

A rule is the kernel's `ipt_entry` in typed form: the IP part (addresses,
interfaces, protocol, fragment flag, inversions), its matches and its target
each as (extension name, extension data), and its counters.  Nothing here
knows about text; see pyfw.ruleset.format for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyfw.ext.base import HOOKS, RuleIp
from pyfw.ruleset.counters import Counters

# The built-in chains of each table, in hook order (what -L and save print).
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLE_NAMES = tuple(BUILTIN_CHAINS)

# Standard verdict names (the standard target with a verdict).
VERDICTS = ("ACCEPT", "DROP", "QUEUE", "RETURN")

# ipt_ip.flags
F_FRAG = 0x01
F_GOTO = 0x02


@dataclass
class MatchUse:
    """One `-m NAME ...` in a rule: the extension's name and its data."""

    name: str
    data: Any


@dataclass
class TargetUse:
    """The rule's target.

    `kind` is "verdict" (ACCEPT/DROP/QUEUE/RETURN), "jump" (a user chain,
    `goto` for -g), "extension" (a target module with `data`), or "none"
    (a rule without -j: it only counts).
    """

    kind: str
    name: str = ""
    data: Any = None
    goto: bool = False


@dataclass
class Rule:
    src: int = 0
    smsk: int = 0
    dst: int = 0
    dmsk: int = 0
    iniface: str = ""
    outiface: str = ""
    proto: int = 0
    frag: bool = False
    invflags: int = 0
    matches: list[MatchUse] = field(default_factory=list)
    target: TargetUse = field(default_factory=lambda: TargetUse("none"))
    counters: Counters = field(default_factory=Counters)
    # Where the rule came from: ruleset file and line (None: added by command).
    src_file: str | None = None
    src_line: int | None = None
    # The rule's save text once made, split where -S -v puts " -c P B":
    # (ip part and matches, target).  Cleared by anything that changes it.
    text: tuple[str, str] | None = field(default=None, compare=False, repr=False)

    @property
    def ip(self) -> RuleIp:
        return RuleIp(self.proto, self.invflags)

    def same_as(self, other: Rule) -> bool:
        """libiptc's is_same: everything but counters and origin."""
        return (
            self.src == other.src and self.smsk == other.smsk
            and self.dst == other.dst and self.dmsk == other.dmsk
            and iface_key(self.iniface) == iface_key(other.iniface)
            and iface_key(self.outiface) == iface_key(other.outiface)
            and self.proto == other.proto and self.frag == other.frag
            and self.invflags == other.invflags
            and self.matches == other.matches and self.target == other.target
        )


def iface_key(name: str) -> tuple[bool, str]:
    """What the kernel compares of an interface: name and mask.  "eth+" is a
    prefix; "" and "+" both have an all-zero mask."""
    if name.endswith("+"):
        return True, name[:-1]
    if not name:
        return True, ""
    return False, name


@dataclass
class Chain:
    name: str
    policy: str | None = None  # built-in chains only
    counters: Counters = field(default_factory=Counters)
    rules: list[Rule] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.policy is not None


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)

    @classmethod
    def new(cls, name: str) -> Table:
        table = cls(name)
        for chain in BUILTIN_CHAINS[name]:
            table.chains[chain] = Chain(chain, policy="ACCEPT")
        return table

    def builtin_names(self) -> tuple[str, ...]:
        return BUILTIN_CHAINS[self.name]

    def ordered_chains(self) -> list[Chain]:
        """Built-ins in hook order, then user chains sorted as libiptc sorts."""
        builtins = [self.chains[n] for n in BUILTIN_CHAINS[self.name]]
        users = sorted((c for c in self.chains.values() if not c.builtin), key=lambda c: c.name.encode())
        return builtins + users

    def references(self, chain: str) -> int:
        """How many rules jump or go to `chain`."""
        count = 0
        for c in self.chains.values():
            for r in c.rules:
                if r.target.kind == "jump" and r.target.name == chain:
                    count += 1
        return count


@dataclass
class Ruleset:
    """All tables; a table exists once a restore or a command touched it.

    `tables` is kept in iptables-save order: the kernel lists a namespace's
    tables newest first, so a table touched for the first time goes in front.
    """

    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        table = self.tables.get(name)
        if table is None:
            table = Table.new(name)
            self.tables = {name: table, **self.tables}
        return table

    def append_table(self, table: Table) -> None:
        """Add a table behind the others (loading a saved state in order)."""
        self.tables[table.name] = table

    def ordered_tables(self) -> list[Table]:
        return list(self.tables.values())

__all__ = [
    "BUILTIN_CHAINS", "TABLE_NAMES", "VERDICTS", "HOOKS", "Counters", "MatchUse",
    "TargetUse", "Rule", "Chain", "Table", "Ruleset",
]
