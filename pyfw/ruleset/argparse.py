"""The iptables command line, read as iptables 1.8.9 reads it.

iptables parses with glibc getopt_long over an option table that grows as
`-m`/`-j`/`-p` load extensions, and dispatches each option to the extension
that owns it.  That is not a context-free language (which words an option
takes depends on the extensions loaded so far), so this module reproduces the
getopt walk itself: the same accepted spellings (unique prefixes of long
options, `--opt=value`, clustered short options), the same precedence, the
same messages.  The grammar (grammar/iptables.lark) handles the file
structure around these command lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyfw.errors import OtherProblem, ParameterProblem
from pyfw.ext import STANDARD_TARGETS, find_match, find_target
from pyfw.ext.base import (
    INV_DSTIP,
    INV_FRAG,
    INV_PROTO,
    INV_SRCIP,
    INV_VIA_IN,
    INV_VIA_OUT,
    ArgType,
    ArgvCursor,
    Call,
    Extension,
    RuleIp,
)
from pyfw.ext.types import ipparse_multiple, parse_protocol, parse_typed, strtoul
from pyfw.ruleset.model import Counters, MatchUse, Rule, TargetUse

EXTENSION_MAXNAMELEN = 29
IFNAMSIZ = 16

# Commands (CMD_* bits, in cmd2char order).
CMD_NONE = 0
CMD_INSERT = 1 << 0
CMD_DELETE = 1 << 1
CMD_DELETE_NUM = 1 << 2
CMD_REPLACE = 1 << 3
CMD_APPEND = 1 << 4
CMD_LIST = 1 << 5
CMD_FLUSH = 1 << 6
CMD_ZERO = 1 << 7
CMD_NEW_CHAIN = 1 << 8
CMD_DELETE_CHAIN = 1 << 9
CMD_SET_POLICY = 1 << 10
CMD_RENAME_CHAIN = 1 << 11
CMD_LIST_RULES = 1 << 12
CMD_ZERO_NUM = 1 << 13
CMD_CHECK = 1 << 14
_CMD_CHARS = "IDDRALFZNXPESZC"

# Options (OPT_* bits, in optflags order).
OPT_NUMERIC = 1 << 0
OPT_SOURCE = 1 << 1
OPT_DESTINATION = 1 << 2
OPT_PROTOCOL = 1 << 3
OPT_JUMP = 1 << 4
OPT_VERBOSE = 1 << 5
OPT_EXPANDED = 1 << 6
OPT_VIANAMEIN = 1 << 7
OPT_VIANAMEOUT = 1 << 8
OPT_LINENUMBERS = 1 << 9
OPT_COUNTERS = 1 << 10
OPT_FRAGMENT = 1 << 11
_OPT_CHARS = "nsdpjvxio0cf"
_OPT_INVERSE = {
    OPT_SOURCE: INV_SRCIP, OPT_DESTINATION: INV_DSTIP, OPT_PROTOCOL: INV_PROTO,
    OPT_VIANAMEIN: INV_VIA_IN, OPT_VIANAMEOUT: INV_VIA_OUT, OPT_FRAGMENT: INV_FRAG,
}

# commands_v_options: for each command, the options it forbids ('x').
_ILLEGAL: dict[int, str] = {
    CMD_INSERT: "nx0", CMD_DELETE: "nx0c", CMD_DELETE_NUM: "nsdpjxio0cf",
    CMD_REPLACE: "nx0", CMD_APPEND: "nx0", CMD_LIST: "sdpjiocf",
    CMD_FLUSH: "nsdpjxio0cf", CMD_ZERO: "nsdpjxio0cf", CMD_NEW_CHAIN: "nsdpjxio0cf",
    CMD_DELETE_CHAIN: "nsdpjxio0cf", CMD_SET_POLICY: "nsdpjxio0f",
    CMD_RENAME_CHAIN: "nsdpjxio0cf", CMD_LIST_RULES: "nsdpjxio0cf",
    CMD_ZERO_NUM: "nsdpjxio0cf", CMD_CHECK: "nx0c",
}

_SHORTOPTS = "A:C:D:E:F::I:L::M:N:P:VX::Z::c:d:i:j:o:p:s:t:R:S::W::46bfg:h::m:nvw::x"


def _short_table(spec: str) -> dict[str, int]:
    table: dict[str, int] = {}
    i = 0
    while i < len(spec):
        ch = spec[i]
        n = 0
        while i + 1 + n < len(spec) and spec[i + 1 + n] == ":":
            n += 1
        table[ch] = n  # 0 none, 1 required, 2 optional
        i += 1 + n
    return table


SHORT = _short_table(_SHORTOPTS)

BASE_LONGOPTS: tuple[tuple[str, int, str], ...] = (
    ("append", 1, "A"), ("delete", 1, "D"), ("check", 1, "C"), ("insert", 1, "I"),
    ("replace", 1, "R"), ("list", 2, "L"), ("list-rules", 2, "S"), ("flush", 2, "F"),
    ("zero", 2, "Z"), ("new-chain", 1, "N"), ("delete-chain", 2, "X"),
    ("rename-chain", 1, "E"), ("policy", 1, "P"), ("source", 1, "s"),
    ("destination", 1, "d"), ("src", 1, "s"), ("dst", 1, "d"), ("protocol", 1, "p"),
    ("in-interface", 1, "i"), ("jump", 1, "j"), ("table", 1, "t"), ("match", 1, "m"),
    ("numeric", 0, "n"), ("out-interface", 1, "o"), ("verbose", 0, "v"),
    ("wait", 2, "w"), ("wait-interval", 2, "W"), ("exact", 0, "x"),
    ("fragments", 0, "f"), ("version", 0, "V"), ("help", 2, "h"),
    ("line-numbers", 0, "0"), ("modprobe", 1, "M"), ("set-counters", 1, "c"),
    ("goto", 1, "g"), ("ipv4", 0, "4"), ("ipv6", 0, "6"),
)


@dataclass
class ExtUse:
    """One extension used in the rule being parsed (a match or the target)."""

    ext: Extension
    key: tuple[str, str]  # (kind, name): the option-offset identity clones share
    data: Any
    xflags: set[str] = field(default_factory=set)
    udata: dict[str, Any] = field(default_factory=dict)
    completed: bool = False


@dataclass
class ParsedCommand:
    """What do_parse leaves behind: the command and the rule(s) it names."""

    command: int = CMD_NONE
    chain: str | None = None
    rulenum: int = 0
    newname: str | None = None
    policy: str | None = None
    table: str = "filter"
    table_set: bool = False
    verbose: int = 0
    options: int = 0
    wait: int = 0
    jumpto: str = ""
    goto: bool = False
    target_ext: ExtUse | None = None
    matches: list[ExtUse] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    # the IP part before address expansion
    base: Rule = field(default_factory=Rule)
    saddrs: list[tuple[int, int]] = field(default_factory=list)
    daddrs: list[tuple[int, int]] = field(default_factory=list)
    help: bool = False
    version: bool = False
    warnings: list[str] = field(default_factory=list)

    def rules(self) -> list[Rule]:
        """One rule per source x destination address, as iptables expands."""
        out: list[Rule] = []
        for s, sm in self.saddrs or [(0, 0)]:
            for d, dm in self.daddrs or [(0, 0)]:
                r = Rule(
                    src=s, smsk=sm, dst=d, dmsk=dm,
                    iniface=self.base.iniface, outiface=self.base.outiface,
                    proto=self.base.proto, frag=self.base.frag, invflags=self.base.invflags,
                    matches=[MatchUse(m.ext.name, m.data) for m in self.matches],
                    target=self.make_target(),
                    counters=Counters(self.counters.packets, self.counters.bytes),
                )
                out.append(r)
        return out

    def make_target(self) -> TargetUse:
        if self.target_ext is not None:
            return TargetUse("extension", self.target_ext.ext.name, self.target_ext.data)
        if self.jumpto == "":
            return TargetUse("none")
        if self.jumpto in STANDARD_TARGETS and not self.goto:
            return TargetUse("verdict", self.jumpto)
        return TargetUse("jump", self.jumpto, goto=self.goto)


@dataclass
class LongOpts:
    """getopt's long option table: the entries in order, and by exact name."""

    entries: list[tuple[str, int, Any]]
    exact: dict[str, tuple[str, int, Any]]


_LONGOPTS_CACHE: dict[tuple[Extension, ...], LongOpts] = {}


def _longopts_for(merged: tuple[Extension, ...]) -> LongOpts:
    cached = _LONGOPTS_CACHE.get(merged)
    if cached is None:
        entries: list[tuple[str, int, Any]] = list(BASE_LONGOPTS)
        for ext in merged:
            key = (ext.kind, ext.name)
            for o in ext.options:
                entries.append((o.name, o.getopt_has_arg, (key, o.name)))
        exact: dict[str, tuple[str, int, Any]] = {}
        for e in entries:
            exact.setdefault(e[0], e)
        cached = LongOpts(entries, exact)
        _LONGOPTS_CACHE[merged] = cached
    return cached


class _Getopt:
    """glibc getopt_long in RETURN_IN_ORDER mode with opterr off and ':'
    for a missing argument."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.optind = 1
        self.optarg: str | None = None
        self.nextchar = ""

    def next(self, longopts: LongOpts) -> Any:
        self.optarg = None
        argv = self.argv
        if self.nextchar:
            return self._short()
        if self.optind >= len(argv):
            return None
        word = argv[self.optind]
        if word == "--":
            self.optind += 1
            return None
        if len(word) < 2 or word[0] != "-":
            self.optind += 1
            self.optarg = word
            return 1
        if word[1] == "-":
            return self._long(word[2:], longopts)
        if len(word) == 2:  # the common "-p tcp": no cluster to walk
            ch = word[1]
            kind = SHORT.get(ch)
            self.optind += 1
            if kind is None or ch == ":":
                return "?"
            if kind == 1:
                if self.optind < len(argv):
                    self.optarg = argv[self.optind]
                    self.optind += 1
                else:
                    return ":"
            return ch
        self.nextchar = word[1:]
        self.optind += 1
        return self._short()

    def _long(self, body: str, longopts: LongOpts) -> Any:
        name, eq, value = body.partition("=")
        self.optind += 1
        found = longopts.exact.get(name)
        if found is None:
            candidates = [o for o in longopts.entries if o[0].startswith(name)]
            if not candidates:
                return "?"
            first = candidates[0]
            for other in candidates[1:]:
                if other[1] != first[1] or other[2] != first[2]:
                    return "?"
            found = first
        _, has_arg, code = found
        if eq:
            if has_arg == 0:
                return "?"
            self.optarg = value
        elif has_arg == 1:
            if self.optind < len(self.argv):
                self.optarg = self.argv[self.optind]
                self.optind += 1
            else:
                return ":"
        return code

    def _short(self) -> Any:
        ch = self.nextchar[0]
        self.nextchar = self.nextchar[1:]
        kind = SHORT.get(ch)
        if kind is None or ch == ":":
            return "?"
        if kind == 1:
            if self.nextchar:
                self.optarg = self.nextchar
                self.nextchar = ""
            elif self.optind < len(self.argv):
                self.optarg = self.argv[self.optind]
                self.optind += 1
            else:
                return ":"
        elif kind == 2:
            if self.nextchar:
                self.optarg = self.nextchar
                self.nextchar = ""
        return ch

    def has_arg(self) -> bool:
        """xs_has_arg."""
        if self.optind < len(self.argv):
            w = self.argv[self.optind]
            return not w.startswith("-") and not w.startswith("!")
        return False


def _cmd_char(cmd: int) -> str:
    i = 0
    while cmd > 1:
        cmd >>= 1
        i += 1
    return _CMD_CHARS[i]


def _opt_char(opt: int) -> str:
    i = 0
    while opt > 1:
        opt >>= 1
        i += 1
    return _OPT_CHARS[i]


def parse_rulenumber(word: str) -> int:
    value = strtoul(word, 1, 0x7FFFFFFF)
    if value is None:
        raise ParameterProblem(f"Invalid rule number `{word}'")
    return value


def parse_target_name(name: str) -> str:
    """xt_parse_target."""
    if len(name) < 1:
        raise ParameterProblem("Invalid target name (too short)")
    if len(name) >= EXTENSION_MAXNAMELEN:
        raise ParameterProblem(f"Invalid target name `{name}' ({EXTENSION_MAXNAMELEN - 1} chars max)")
    if any(c.isspace() for c in name):
        raise ParameterProblem(f"Invalid target name `{name}'")
    return name


def assert_valid_chain_name(name: str) -> None:
    if len(name) >= EXTENSION_MAXNAMELEN:
        raise ParameterProblem(
            f"chain name `{name}' too long (must be under {EXTENSION_MAXNAMELEN} chars)")
    if name[:1] in ("-", "!"):
        raise ParameterProblem(f"chain name not allowed to start with `{name[0]}'")
    if name in STANDARD_TARGETS or find_target(name) is not None:
        raise ParameterProblem("chain name may not clash with target name")
    if any(c.isspace() for c in name):
        raise ParameterProblem(f"Invalid chain name `{name}'")


def parse_interface(arg: str, warnings: list[str]) -> str:
    if len(arg) + 1 > IFNAMSIZ:
        raise ParameterProblem(f"interface name `{arg}' must be shorter than IFNAMSIZ ({IFNAMSIZ - 1})")
    if "/" in arg or " " in arg:
        warnings.append(
            f"Warning: weird character in interface `{arg}' ('/' and ' ' are not allowed by the kernel).\n")
    return arg


class _Parser:
    def __init__(self, argv: list[str], table: str, restore: bool) -> None:
        self.argv = argv
        self.restore = restore
        self.p = ParsedCommand(table=table)
        self.g = _Getopt(argv)
        self.invflags = 0
        self.protocol: str | None = None
        self.proto_used = False
        # merged extension option tables, newest first
        self.merged: tuple[Extension, ...] = ()
        self._longopts_cache: LongOpts | None = None
        self.shost: str | None = None
        self.dhost: str | None = None

    # ---- option tables ----------------------------------------------------
    def longopts(self) -> LongOpts:
        if self._longopts_cache is None:
            self._longopts_cache = _longopts_for(self.merged)
        return self._longopts_cache

    def merge(self, ext: Extension) -> tuple[str, str]:
        key = (ext.kind, ext.name)
        if ext not in self.merged:
            self.merged = (ext, *self.merged)
            self._longopts_cache = None
        return key

    def add_match(self, ext: Extension) -> ExtUse:
        for m in self.p.matches:
            if m.ext.name == ext.name:
                m.completed = True
        key = self.merge(ext)
        use = ExtUse(ext, key, ext.new_data())
        self.p.matches.append(use)
        return use

    # ---- helpers ------------------------------------------------------------
    def set_option(self, opt: int, invert: bool) -> None:
        p = self.p
        if p.options & opt:
            raise ParameterProblem(f"multiple -{_opt_char(opt)} flags not allowed")
        p.options |= opt
        if invert:
            inv = _OPT_INVERSE.get(opt)
            if not inv:
                raise ParameterProblem(f"cannot have ! before -{_opt_char(opt)}")
            self.invflags |= inv

    def add_command(self, new: int, others: int, invert: bool) -> None:
        if invert:
            raise ParameterProblem("unexpected '!' flag")
        if self.p.command & ~others:
            raise ParameterProblem(
                f"Cannot use -{_cmd_char(new)} with -{_cmd_char(self.p.command & ~others)}")
        self.p.command |= new

    def optional_chain(self, optarg: str | None) -> str | None:
        if optarg:
            return optarg
        if self.g.has_arg():
            word = self.argv[self.g.optind]
            self.g.optind += 1
            return word
        return None

    # ---- the walk -------------------------------------------------------------
    def run(self) -> ParsedCommand:
        p = self.p
        g = self.g
        invert = False
        while True:
            c = g.next(self.longopts())
            if c is None:
                break
            optarg = g.optarg
            if c.__class__ is tuple:
                if self.command_default(c, invert):
                    continue
            elif c == "A":
                self.add_command(CMD_APPEND, CMD_NONE, invert)
                p.chain = optarg
            elif c == "C":
                self.add_command(CMD_CHECK, CMD_NONE, invert)
                p.chain = optarg
            elif c == "D":
                self.add_command(CMD_DELETE, CMD_NONE, invert)
                p.chain = optarg
                if g.has_arg():
                    p.rulenum = parse_rulenumber(self.argv[g.optind])
                    g.optind += 1
                    p.command = CMD_DELETE_NUM
            elif c == "R":
                self.add_command(CMD_REPLACE, CMD_NONE, invert)
                p.chain = optarg
                if g.has_arg():
                    p.rulenum = parse_rulenumber(self.argv[g.optind])
                    g.optind += 1
                else:
                    raise ParameterProblem("-R requires a rule number")
            elif c == "I":
                self.add_command(CMD_INSERT, CMD_NONE, invert)
                p.chain = optarg
                if g.has_arg():
                    p.rulenum = parse_rulenumber(self.argv[g.optind])
                    g.optind += 1
                else:
                    p.rulenum = 1
            elif c in ("L", "S"):
                self.add_command(CMD_LIST if c == "L" else CMD_LIST_RULES, CMD_ZERO | CMD_ZERO_NUM, invert)
                p.chain = self.optional_chain(optarg) or p.chain
                if g.has_arg():
                    p.rulenum = parse_rulenumber(self.argv[g.optind])
                    g.optind += 1
            elif c == "F":
                self.add_command(CMD_FLUSH, CMD_NONE, invert)
                p.chain = self.optional_chain(optarg)
            elif c == "Z":
                self.add_command(CMD_ZERO, CMD_LIST | CMD_LIST_RULES, invert)
                chain = self.optional_chain(optarg)
                if chain is not None:
                    p.chain = chain
                if g.has_arg():
                    p.rulenum = parse_rulenumber(self.argv[g.optind])
                    g.optind += 1
                    p.command = (p.command & ~CMD_ZERO) | CMD_ZERO_NUM
            elif c == "N":
                assert optarg is not None
                assert_valid_chain_name(optarg)
                self.add_command(CMD_NEW_CHAIN, CMD_NONE, invert)
                p.chain = optarg
            elif c == "X":
                self.add_command(CMD_DELETE_CHAIN, CMD_NONE, invert)
                p.chain = self.optional_chain(optarg)
            elif c == "E":
                self.add_command(CMD_RENAME_CHAIN, CMD_NONE, invert)
                p.chain = optarg
                if g.has_arg():
                    p.newname = self.argv[g.optind]
                    g.optind += 1
                else:
                    raise ParameterProblem("-E requires old-chain-name and new-chain-name")
            elif c == "P":
                self.add_command(CMD_SET_POLICY, CMD_NONE, invert)
                p.chain = optarg
                if g.has_arg():
                    p.policy = self.argv[g.optind]
                    g.optind += 1
                else:
                    raise ParameterProblem("-P requires a chain and a policy")
            elif c == "h":
                p.help = True
                return p
            elif c == "p":
                self.set_option(OPT_PROTOCOL, invert)
                word = self.argv[g.optind - 1].lower()
                self.protocol = word
                proto = parse_protocol(word)
                p.base.proto = proto
                if proto == 0 and (self.invflags & INV_PROTO):
                    raise ParameterProblem("rule would never match protocol")
            elif c == "s":
                self.set_option(OPT_SOURCE, invert)
                self.shost = self.argv[g.optind - 1]
            elif c == "d":
                self.set_option(OPT_DESTINATION, invert)
                self.dhost = self.argv[g.optind - 1]
            elif c == "g":
                self.set_option(OPT_JUMP, invert)
                p.goto = True
                assert optarg is not None
                p.jumpto = parse_target_name(optarg)
            elif c == "j":
                self.set_option(OPT_JUMP, invert)
                self.command_jump(self.argv[g.optind - 1])
            elif c in ("i", "o"):
                assert optarg is not None
                if optarg == "":
                    raise ParameterProblem("Empty interface is likely to be undesired")
                self.set_option(OPT_VIANAMEIN if c == "i" else OPT_VIANAMEOUT, invert)
                name = parse_interface(self.argv[g.optind - 1], p.warnings)
                if c == "i":
                    p.base.iniface = name
                else:
                    p.base.outiface = name
            elif c == "f":
                self.set_option(OPT_FRAGMENT, invert)
                p.base.frag = True
            elif c == "v":
                if not p.verbose:
                    self.set_option(OPT_VERBOSE, invert)
                p.verbose += 1
            elif c == "m":
                if invert:
                    raise ParameterProblem("unexpected ! flag before --match")
                assert optarg is not None
                ext = find_match(optarg)
                if ext is None:
                    raise ParameterProblem(f"Couldn't load match `{optarg}':No such file or directory\n")
                self.add_match(ext)
            elif c == "n":
                self.set_option(OPT_NUMERIC, invert)
            elif c == "t":
                if invert:
                    raise ParameterProblem("unexpected ! flag before --table")
                if self.restore and p.table_set:
                    raise ParameterProblem("The -t option cannot be used in iptables-restore.\n")
                assert optarg is not None
                p.table = optarg
                p.table_set = True
            elif c == "x":
                self.set_option(OPT_EXPANDED, invert)
            elif c == "V":
                p.version = True
                return p
            elif c == "w":
                if self.restore:
                    raise ParameterProblem("You cannot use `-w' from iptables-restore")
                p.wait = self._wait_time(optarg)
            elif c == "W":
                if self.restore:
                    raise ParameterProblem("You cannot use `-W' from iptables-restore")
                self._wait_interval(optarg)
            elif c == "0":
                self.set_option(OPT_LINENUMBERS, invert)
            elif c == "M":
                pass
            elif c == "c":
                self.set_option(OPT_COUNTERS, invert)
                self._counters(optarg or "")
            elif c == "4":
                pass
            elif c == "6":
                if self.restore:
                    p.command = CMD_NONE
                    return p
                raise TryHelp()
            elif c == "b":
                raise ParameterProblem(f"unknown option \"{self.argv[g.optind - 1]}\"")
            elif c == 1:
                assert optarg is not None
                if optarg == "!":
                    if invert:
                        raise ParameterProblem("multiple consecutive ! not allowed")
                    invert = True
                    continue
                raise BadArgument(optarg)
            else:
                if self.command_default(c, invert):
                    continue
            invert = False

        if p.table == "nat" and (p.policy == "DROP" or p.jumpto == "DROP"):
            raise ParameterProblem(
                '\nThe "nat" table is not intended for filtering, the use of DROP is therefore inhibited.\n\n')

        for m in p.matches:
            m.ext.final_check(m.data, m.xflags, m.udata)
            _generic_fcheck(m)
        if p.target_ext is not None:
            t = p.target_ext
            t.ext.final_check(t.data, t.xflags, t.udata)
            _generic_fcheck(t)

        if g.optind < len(self.argv):
            raise ParameterProblem("unknown arguments found on commandline")
        if not p.command:
            raise ParameterProblem("no command specified")
        if invert:
            raise ParameterProblem("nothing appropriate following !")
        self.post_parse()
        if p.command == CMD_REPLACE and (len(p.saddrs) != 1 or len(p.daddrs) != 1):
            raise ParameterProblem("Replacement rule does not specify a unique address")
        _generic_opt_check(p.command, p.options)
        if p.chain is not None and len(p.chain) >= EXTENSION_MAXNAMELEN:
            raise ParameterProblem(
                f"chain name `{p.chain}' too long (must be under {EXTENSION_MAXNAMELEN} chars)")
        if p.command in (CMD_APPEND, CMD_DELETE, CMD_DELETE_NUM, CMD_CHECK, CMD_INSERT, CMD_REPLACE):
            if p.chain in ("PREROUTING", "INPUT") and p.options & OPT_VIANAMEOUT:
                raise ParameterProblem(f"Can't use -o with {p.chain}\n")
            if p.chain in ("POSTROUTING", "OUTPUT") and p.options & OPT_VIANAMEIN:
                raise ParameterProblem(f"Can't use -i with {p.chain}\n")
        return p

    def _wait_time(self, optarg: str | None) -> int:
        word = optarg
        if word is None and self.g.has_arg():
            word = self.argv[self.g.optind]
            self.g.optind += 1
        if word is None:
            return -1
        value = _scanf_int(word)
        if value is None:
            raise ParameterProblem("wait seconds not numeric")
        return value

    def _wait_interval(self, optarg: str | None) -> None:
        word = optarg
        if word is None and self.g.has_arg():
            word = self.argv[self.g.optind]
            self.g.optind += 1
        if word is None:
            raise ParameterProblem("wait interval value required")
        value = _scanf_int(word)
        if value is None or value < 0:
            raise ParameterProblem("wait interval not numeric")
        if value > 999999:
            raise ParameterProblem(f"too long usec wait {value} > 999999 usec")
        self.p.warnings.append("Ignoring deprecated --wait-interval option.\n")

    def _counters(self, pcnt: str) -> None:
        bcnt: str | None = None
        comma = pcnt.find(",", 1)
        if comma >= 0:
            bcnt = pcnt[comma + 1:]
        if bcnt is None and self.g.has_arg():
            bcnt = self.argv[self.g.optind]
            self.g.optind += 1
        if bcnt is None:
            raise ParameterProblem("-c requires packet and byte counter")
        packets = _scanf_u64(pcnt)
        if packets is None:
            raise ParameterProblem("-c packet counter not numeric")
        nbytes = _scanf_u64(bcnt)
        if nbytes is None:
            raise ParameterProblem("-c byte counter not numeric")
        self.p.counters = Counters(packets, nbytes)

    def command_jump(self, name: str) -> None:
        p = self.p
        p.jumpto = parse_target_name(name)
        if name in STANDARD_TARGETS:
            return
        ext = find_target(name)
        if ext is None:
            return
        key = self.merge(ext)
        p.target_ext = ExtUse(ext, key, ext.new_data())

    def command_default(self, c: Any, invert: bool) -> bool:
        """Dispatch an extension option; True means "read that word again"
        (a protocol match was just loaded)."""
        p = self.p
        g = self.g
        if isinstance(c, tuple):
            key, optname = c
            t = p.target_ext
            if t is not None and t.key == key:
                self._call(t, optname, invert)
                return False
            for m in p.matches:
                if m.completed or m.key != key:
                    continue
                self._call(m, optname, invert)
                return False
        # Try loading the protocol's match.
        if self.protocol is not None and not self.proto_used:
            ext = self._proto_match()
            if ext is not None:
                self.proto_used = True
                self.add_match(ext)
                g.optind -= 1
                g.nextchar = ""
                return True
        word = self.argv[g.optind - 1] if g.optind - 1 < len(self.argv) else ""
        if c == ":":
            raise ParameterProblem(f'option "{word}" requires an argument')
        if c == "?":
            raise ParameterProblem(f'unknown option "{word}"')
        raise ParameterProblem(f'Unknown arg "{g.optarg}"')

    def _proto_match(self) -> Extension | None:
        assert self.protocol is not None
        num = strtoul(self.protocol, 0, 0xFF)
        if num is not None:
            from pyfw.ext.types import proto_to_name

            name = proto_to_name(num, bool(self.p.options & OPT_NUMERIC))
            return find_match(name) if name else None
        return find_match(self.protocol)

    def _call(self, use: ExtUse, optname: str, invert: bool) -> None:
        """xtables_option_parse's generic checks, then the extension."""
        ext = use.ext
        opt = ext.option(optname)
        arg = self.g.optarg
        if (not opt.multi or opt.name in opt.excl) and opt.name in use.xflags:
            raise ParameterProblem(f'{ext.name}: option "--{opt.name}" can only be used once.\n')
        if invert and not opt.invert:
            raise ParameterProblem(f'{ext.name}: option "--{opt.name}" cannot be inverted.\n')
        if opt.type is not ArgType.NONE and arg is None and opt.getopt_has_arg != 0:
            if opt.getopt_has_arg == 1:
                raise ParameterProblem(f'{ext.name}: option "--{opt.name}" requires an argument.\n')
        value: Any = None
        if arg is not None and opt.type not in (ArgType.NONE, ArgType.RAW):
            value = parse_typed(ext.name, opt, arg)
        elif opt.type is ArgType.RAW:
            value = arg
        cursor = ArgvCursor(self.argv, self.g.optind)
        call = Call(ext, opt, arg, invert, value, use.data, set(use.xflags),
                    RuleIp(self.p.base.proto, self.invflags), cursor, use.udata)
        ext.parse(call)
        self.p.warnings.extend(call.warnings)
        self.g.optind = cursor.index
        use.xflags.add(opt.name)

    def post_parse(self) -> None:
        p = self.p
        p.base.invflags = self.invflags
        if p.command & (CMD_REPLACE | CMD_INSERT | CMD_DELETE | CMD_APPEND | CMD_CHECK):
            if not p.options & OPT_DESTINATION:
                self.dhost = "0.0.0.0/0"
            if not p.options & OPT_SOURCE:
                self.shost = "0.0.0.0/0"
        if self.shost is not None:
            p.saddrs = ipparse_multiple(self.shost)
        if self.dhost is not None:
            p.daddrs = ipparse_multiple(self.dhost)
        if (len(p.saddrs) > 1 or len(p.daddrs) > 1) and self.invflags & (INV_SRCIP | INV_DSTIP):
            raise ParameterProblem("! not allowed with multiple source or destination IP addresses")


class BadArgument(ParameterProblem):
    """`Bad argument `X'` is printed bare, before the try-help line."""

    def __init__(self, word: str) -> None:
        super().__init__(f"Bad argument `{word}'")
        self.word = word


class TryHelp(ParameterProblem):
    """exit_tryhelp(2): only the try-help line (`-6` in iptables)."""

    def __init__(self) -> None:
        super().__init__("")


def _generic_fcheck(use: ExtUse) -> None:
    """xtables_options_fcheck: mandatory, `also` and exclusive options."""
    ext = use.ext
    flags = use.xflags
    by_id = sorted(enumerate(ext.options), key=lambda io: io[1].id if io[1].id is not None else io[0])
    for opt in ext.options:
        if opt.mand and opt.name not in flags:
            raise ParameterProblem(f'{ext.name}: option "--{opt.name}" must be specified\n')
        if opt.name not in flags:
            continue
        for _, other in by_id:
            if other.name == opt.name:
                continue
            if other.name in opt.also and other.name not in flags:
                raise ParameterProblem(
                    f'{ext.name}: option "--{opt.name}" also requires "--{other.name}".\n')
            if other.name in opt.excl and other.name in flags:
                raise ParameterProblem(
                    f'{ext.name}: option "--{opt.name}" cannot be used together with "--{other.name}".\n')


def _forbidden_mask(cmd: int) -> int:
    chars = _ILLEGAL[cmd]
    return sum(1 << i for i, ch in enumerate(_OPT_CHARS) if ch in chars)


_FORBIDDEN = {cmd: _forbidden_mask(cmd) for cmd in _ILLEGAL}


def _generic_opt_check(command: int, options: int) -> None:
    """An option is illegal when every command given forbids it."""
    forbidden = -1
    for cmd, mask in _FORBIDDEN.items():
        if command & cmd:
            forbidden &= mask
    bad = options & forbidden
    if bad:
        i = (bad & -bad).bit_length() - 1
        raise ParameterProblem(f"Illegal option `-{_OPT_CHARS[i]}' with this command")


def _scanf_int(word: str) -> int | None:
    """sscanf("%i"): optional sign, then C integer syntax; prefix is enough."""
    w = word.lstrip()
    sign = 1
    if w[:1] in "+-" and w[:1]:
        sign = -1 if w[0] == "-" else 1
        w = w[1:]
    from pyfw.ext.types import strtoul_prefix

    value, _ = strtoul_prefix(w)
    if value is None:
        return None
    return sign * value


def _scanf_u64(word: str) -> int | None:
    """sscanf("%llu"): leading digits (decimal), a sign allowed."""
    w = word.lstrip()
    neg = False
    if w[:1] in ("+", "-") and w[:1]:
        neg = w[0] == "-"
        w = w[1:]
    digits = ""
    for ch in w:
        if ch.isdigit() and ch.isascii():
            digits += ch
        else:
            break
    if not digits:
        return None
    value = int(digits)
    if neg:
        value = (-value) % (1 << 64)
    return min(value, (1 << 64) - 1)


def parse_command(argv: list[str], table: str = "filter", restore: bool = False) -> ParsedCommand:
    """Parse one iptables command line (argv[0] is the program name).

    Warnings the extensions give land in `.warnings`; on an error they ride
    on the exception as `.warnings`, to be printed before its message."""
    from pyfw.errors import PyfwError
    from pyfw.ext.base import collect_warnings, stop_collecting

    parser = _Parser(argv, table, restore)
    token = collect_warnings(parser.p.warnings)
    try:
        return parser.run()
    except PyfwError as exc:
        exc.warnings = list(parser.p.warnings)  # type: ignore[attr-defined]
        raise
    finally:
        stop_collecting(token)


__all__ = ["parse_command", "ParsedCommand", "BadArgument", "OtherProblem"]
