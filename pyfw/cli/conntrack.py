"""`pyfw conntrack`: conntrack-tools' `conntrack` against the live daemon.

The command line is read as conntrack 1.4.7 reads it (getopt_long with
optional arguments, unambiguous long-option prefixes, the protocol's own
options once `-p` named it, the table of options each command allows) and
every message and exit status is conntrack's, so scripts written for the
kernel's table work on pyfw's.  The parsed query travels to the daemon's
control socket (pyfw.daemon.ctops does the work between two packets); the
entry text comes back formatted, the counting messages are printed here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pyfw.cli.main import DEFAULT_SOCKET, Result, _extract_where

VERSION = "1.4.7"
HEAD = f"conntrack v{VERSION} (conntrack-tools): "
TRY_HELP = "Try `conntrack -h' or 'conntrack --help' for more information.\n"

# option names as conntrack reports them, in its table's column order
OPT_NAMES = ("src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status", "zero", "event-mask",
             "tuple-src", "tuple-dst", "mask-src", "mask-dst", "nat-range", "mark", "id", "family", "src-nat",
             "dst-nat", "output", "secmark", "buffer-size", "any-nat", "zone", "label", "label-add", "label-del",
             "orig-zone", "reply-zone")
# which options each command allows (0 illegal, 1 compulsory, 2 optional, 3 coupled)
_LEGAL: dict[str, str] = {
    "L": "22222022000220202222202220022",
    "I": "33331120000000220022000020202",
    "U": "22222220000220222222000022200",
    "D": "22222220000220222222000222002",
    "G": "33331000000000020002000020000",
    "F": "00000000000000000000000000000",
    "E": "22222000200220200222222220022",
    "V": "00000000000000000000000000000",
    "h": "00002000000000000000000000000",
    "EL": "00000000000000002002000000000",
    "EF": "00000000000000000000000000000",
    "EE": "00000000000000000002000000000",
    "C": "00000000000000000000000000000",
    "EC": "00000000000000000000000000000",
    "S": "00000000000000000000000000000",
    "ES": "00000000000000000000000000000",
}
_COMMAND_LETTERS = "LIUDGFEVhCS"
# getopt_long's table: long name -> (short letter or own key, has_arg 0/1/2)
_LONG: dict[str, tuple[str, int]] = {
    "dump": ("L", 2), "create": ("I", 2), "delete": ("D", 2), "update": ("U", 2), "get": ("G", 2),
    "flush": ("F", 2), "event": ("E", 2), "counter": ("C", 2), "stats": ("S", 0), "version": ("V", 0),
    "help": ("h", 0), "orig-src": ("s", 1), "src": ("s", 1), "orig-dst": ("d", 1), "dst": ("d", 1),
    "reply-src": ("r", 1), "reply-dst": ("q", 1), "protonum": ("p", 1), "timeout": ("t", 1),
    "status": ("u", 1), "zero": ("z", 0), "event-mask": ("e", 1), "tuple-src": ("[", 1),
    "tuple-dst": ("]", 1), "mask-src": ("{", 1), "mask-dst": ("}", 1), "nat-range": ("a", 1),
    "mark": ("m", 1), "secmark": ("c", 1), "id": ("i", 2), "family": ("f", 1), "src-nat": ("n", 2),
    "dst-nat": ("g", 2), "output": ("o", 1), "buffer-size": ("b", 1), "any-nat": ("j", 2), "zone": ("w", 1),
    "label": ("l", 1), "label-add": ("<", 1), "label-del": (">", 2), "orig-zone": ("(", 1),
    "reply-zone": (")", 1),
}
_SHORT = {"L": 2, "I": 2, "U": 2, "D": 2, "G": 2, "E": 2, "F": 2, "h": 0, "V": 0, "s": 1, "d": 1, "r": 1,
          "q": 1, "p": 1, "t": 1, "u": 1, "e": 1, "a": 1, "z": 0, "m": 1, "i": 1, "f": 1, "o": 1, "n": 2,
          "g": 2, "c": 1, "b": 1, "C": 2, "S": 0, "j": 2, "w": 1, "l": 1}
_OPT_OF = {"s": "src", "d": "dst", "r": "reply-src", "q": "reply-dst", "p": "protonum", "t": "timeout",
           "u": "status", "z": "zero", "e": "event-mask", "[": "tuple-src", "]": "tuple-dst",
           "{": "mask-src", "}": "mask-dst", "a": "nat-range", "m": "mark", "i": "id", "f": "family",
           "n": "src-nat", "g": "dst-nat", "o": "output", "c": "secmark", "b": "buffer-size", "j": "any-nat",
           "w": "zone", "l": "label", "<": "label-add", ">": "label-del", "(": "orig-zone", ")": "reply-zone"}

# the protocols conntrack has a handler for, and their own long options
_PORT_OPTS = {"orig-port-src": "sport", "sport": "sport", "orig-port-dst": "dport", "dport": "dport",
              "reply-port-src": "reply_sport", "reply-port-dst": "reply_dport", "mask-port-src": "",
              "mask-port-dst": "", "tuple-port-src": "", "tuple-port-dst": ""}
_PROTO_OPTS: dict[str, dict[str, str]] = {
    "tcp": {**_PORT_OPTS, "state": "tcp_state"},
    "udp": _PORT_OPTS, "udplite": _PORT_OPTS, "sctp": {**_PORT_OPTS, "state": ""},
    "dccp": {**_PORT_OPTS, "state": "", "role": ""},
    "icmp": {"icmp-type": "icmp_type", "icmp-code": "icmp_code", "icmp-id": "icmp_id"},
    "icmpv6": {"icmpv6-type": "", "icmpv6-code": "", "icmpv6-id": ""},
    "gre": {"srckey": "", "dstkey": ""}, "unknown": {},
}
_PROTO_NUMS = {"tcp": 6, "udp": 17, "udplite": 136, "sctp": 132, "dccp": 33, "icmp": 1, "icmpv6": 58,
               "gre": 47}
TCP_STATES = {"NONE": 0, "SYN_SENT": 1, "SYN_RECV": 2, "ESTABLISHED": 3, "FIN_WAIT": 4, "CLOSE_WAIT": 5,
              "LAST_ACK": 6, "TIME_WAIT": 7, "CLOSE": 8, "LISTEN": 9, "SYN_SENT2": 9}
_STATUS_WORDS = (("ASSURED", 1 << 2), ("SEEN_REPLY", 1 << 1), ("UNSET", 0), ("FIXED_TIMEOUT", 1 << 10),
                 ("EXPECTED", 1 << 0))
_EVENT_WORDS = (("ALL", 7), ("NEW", 1), ("UPDATES", 2), ("DESTROY", 4))
_OUTPUT_WORDS = (("xml", 1), ("extended", 2), ("timestamp", 4), ("id", 8), ("ktimestamp", 16), ("labels", 32))
OUT_XML, OUT_EXT, OUT_TMS, OUT_ID = 1, 2, 4, 8
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n'
XML_TAIL = "</conntrack>\n"
EVENT_BITS = {"NEW": 1, "UPDATE": 2, "DESTROY": 4}


# `conntrack -h` (1.4.7), word for word
USAGE = """Command line interface for the connection tracking system. Version 1.4.7
Usage: conntrack [commands] [options]

Commands:
  -L [table] [options]\t\tList conntrack or expectation table
  -G [table] parameters\t\tGet conntrack or expectation
  -D [table] parameters\t\tDelete conntrack or expectation
  -I [table] parameters\t\tCreate a conntrack or expectation
  -U [table] parameters\t\tUpdate a conntrack
  -E [table] [options]\t\tShow events
  -F [table]\t\t\tFlush table
  -C [table]\t\t\tShow counter
  -S\t\t\t\tShow statistics

Tables: conntrack, expect, dying, unconfirmed

Conntrack parameters and options:
  -n, --src-nat ip\t\t\tsource NAT ip
  -g, --dst-nat ip\t\t\tdestination NAT ip
  -j, --any-nat ip\t\t\tsource or destination NAT ip
  -m, --mark mark\t\t\tSet mark
  -c, --secmark secmark\t\t\tSet selinux secmark
  -e, --event-mask eventmask\t\tEvent mask, eg. NEW,DESTROY
  -z, --zero \t\t\t\tZero counters while listing
  -o, --output type[,...]\t\tOutput format, eg. xml
  -l, --label label[,...]\t\tconntrack labels

Expectation parameters and options:
  --tuple-src ip\tSource address in expect tuple
  --tuple-dst ip\tDestination address in expect tuple

Updating parameters and options:
  --label-add label\tAdd label
  --label-del label\tDelete label

Common parameters and options:
  -s, --src, --orig-src ip\t\tSource address from original direction
  -d, --dst, --orig-dst ip\t\tDestination address from original direction
  -r, --reply-src ip\t\tSource addres from reply direction
  -q, --reply-dst ip\t\tDestination address from reply direction
  -p, --protonum proto\t\tLayer 4 Protocol, eg. 'tcp'
  -f, --family proto\t\tLayer 3 Protocol, eg. 'ipv6'
  -t, --timeout timeout\t\tSet timeout
  -u, --status status\t\tSet status, eg. ASSURED
  -w, --zone value\t\tSet conntrack zone
  --orig-zone value\t\tSet zone for original direction
  --reply-zone value\t\tSet zone for reply direction
  -b, --buffer-size\t\tNetlink socket buffer size
  --mask-src ip\t\t\tSource mask address
  --mask-dst ip\t\t\tDestination mask address

"""


class ParameterProblem(Exception):
    """conntrack's PARAMETER_PROBLEM: the message, the try-help line, exit 2."""


class OtherProblem(Exception):
    """conntrack's OTHER_PROBLEM: the message, exit 1."""


@dataclass
class Query:
    """What to act on: a command and conntrack's filter template."""

    command: str = ""                  # L D F C S E (I U G V h): E-prefixed for the expect table
    options: list[str] = field(default_factory=list)
    orig_src: list[int] | None = None   # [address, netmask] (netmask 0xffffffff: exact)
    orig_dst: list[int] | None = None
    reply_src: int | None = None
    reply_dst: int | None = None
    proto: int | None = None
    sport: int | None = None
    dport: int | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None
    tcp_state: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    mark: list[int] | None = None        # [value, mask]
    status: int | None = None
    zone: int | None = None
    orig_zone: int | None = None
    reply_zone: int | None = None
    secmark: int | None = None
    src_nat: list[int | None] | None = None  # [address or None, port or None]
    dst_nat: list[int | None] | None = None
    any_nat: list[int | None] | None = None
    family: int = 2                    # AF_INET; 10 lists nothing (pyfw tracks IPv4 only)
    output: int = 0
    event_mask: int = 7
    zero: bool = False
    table: str = "conntrack"           # conntrack, expect, dying, unconfirmed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- C conversions
def _strtoul(s: str) -> tuple[int, str]:
    """strtoul(s, &end, 0) on a 64-bit machine: (value, the rest)."""
    i = 0
    while i < len(s) and s[i] in " \t\n\r\f\v":
        i += 1
    neg = False
    if i < len(s) and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    base = 10
    if s[i:i + 2].lower() == "0x" and i + 2 < len(s) and s[i + 2] in "0123456789abcdefABCDEF":
        base, i = 16, i + 2
    elif s[i:i + 1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    j = i
    while j < len(s) and s[j].lower() in digits:
        j += 1
    if j == i:
        return 0, s
    v = min(int(s[i:j], base), 2 ** 64 - 1)
    return ((-v) & (2 ** 64 - 1) if neg else v), s[j:]


def _atoi(s: str) -> int:
    """atoi: leading blanks, a sign, decimal digits; 0 when none."""
    t = s.lstrip(" \t\n\r\f\v")
    sign = 1
    if t[:1] in ("+", "-"):
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    n = 0
    for ch in t:
        if not ch.isdigit():
            break
        n = n * 10 + int(ch)
    return sign * n


def _inet_aton(s: str) -> int | None:
    """inet_aton: 1 to 4 parts, each decimal, octal or hex; None if invalid."""
    if not s or s.strip() != s and not s.endswith((" ", "\t", "\n")):
        return None
    s = s.split(None, 1)[0] if s.strip() else s
    parts = s.split(".")
    if len(parts) > 4 or any(p == "" for p in parts):
        return None
    vals = []
    for p in parts:
        try:
            if p.lower().startswith("0x"):
                v = int(p[2:], 16) if len(p) > 2 else 0
            elif p.startswith("0") and len(p) > 1:
                v = int(p, 8)
            else:
                if not p.isdigit():
                    return None
                v = int(p)
        except ValueError:
            return None
        vals.append(v)
    *head, last = vals
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    addr = 0
    for i, v in enumerate(head):
        addr |= v << (24 - 8 * i)
    return addr | last


def _is_ipv6(s: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, s)
    except (OSError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- parsing
class _Args:
    """getopt_long over argv (no permutation needed: words that are not
    options end up ignored, as GNU getopt moves them to the end)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = ["conntrack", *argv]
        self.optind = 1
        self.nextchar = ""
        self.longs: dict[str, tuple[str, int]] = dict(_LONG)
        self.proto_longs: dict[str, str] = {}

    def next(self) -> tuple[str, str | None] | None:
        """(key, optarg) of the next option; None at the end."""
        argv = self.argv
        if not self.nextchar:
            while self.optind < len(argv) and (not argv[self.optind].startswith("-") or argv[self.optind] == "-"):
                self.optind += 1  # a non-option word: GNU getopt permutes it away
            if self.optind >= len(argv):
                return None
            word = argv[self.optind]
            if word == "--":
                self.optind = len(argv)
                return None
            if word.startswith("--"):
                return self._long(word)
            self.nextchar = word[1:]
            self.optind += 1
        ch, self.nextchar = self.nextchar[0], self.nextchar[1:]
        has = _SHORT.get(ch)
        if has is None:
            culprit = argv[self.optind - 1] if not self.nextchar else argv[self.optind - 2]
            raise ParameterProblem(f"unknown option `{culprit}'")
        if has == 0:
            return ch, None
        if self.nextchar:
            arg, self.nextchar = self.nextchar, ""
            return ch, arg
        if has == 2:
            return ch, None
        if self.optind >= len(argv):
            raise ParameterProblem(f"option `{argv[self.optind - 1]}' requires an argument")
        self.optind += 1
        return ch, argv[self.optind - 1]

    def _long(self, word: str) -> tuple[str, str | None]:
        self.optind += 1
        name, eq, value = word[2:].partition("=")
        table = {**{k: v for k, v in self.longs.items()},
                 **{k: ("proto:" + k, 1) for k in self.proto_longs}}
        if name in table:
            key, has = table[name]
        else:
            hits = {table[k] for k in table if k.startswith(name)} if name else set()
            if len(hits) != 1:
                raise ParameterProblem(f"unknown option `{word}'")
            key, has = next(iter(hits))
        if has == 0:
            if eq:
                raise ParameterProblem(f"unknown option `{word}'")
            return key, None
        if eq:
            return key, value
        if has == 2:
            return key, None
        if self.optind >= len(self.argv):
            raise ParameterProblem(f"option `{word}' requires an argument")
        self.optind += 1
        return key, self.argv[self.optind - 1]

    def optional(self, optarg: str | None) -> str | None:
        """get_optional_arg: the next word when it is not an option."""
        if optarg is not None:
            return None
        if self.optind < len(self.argv) and not self.argv[self.optind].startswith(("-", "!")):
            self.optind += 1
            return self.argv[self.optind - 1]
        return None


def _parse_words(arg: str, words: tuple[tuple[str, int], ...], warn: list[str]) -> int:
    """parse_parameter: comma-separated words, each a case-insensitive prefix."""
    value = 0
    pieces = arg.split(",")
    for n, piece in enumerate(pieces):
        shown = ",".join(pieces[n:])
        if not piece:
            raise ParameterProblem(f"Bad parameter `{shown}'")
        low = piece.lower()
        if "src_nat".startswith(low):
            warn.append("WARNING: ignoring SRC_NAT, use --src-nat instead\n")
            continue
        if "dst_nat".startswith(low):
            warn.append("WARNING: ignoring DST_NAT, use --dst-nat instead\n")
            continue
        for word, bit in words:
            if word.lower().startswith(low):
                value |= bit
                break
        else:
            raise ParameterProblem(f"Bad parameter `{shown}'")
    return value


def _find_proto(name: str) -> tuple[str, int] | None:
    low = name.lower()
    if low in _PROTO_NUMS or low == "unknown":
        return low, _PROTO_NUMS.get(low, 0)
    try:
        num = socket.getprotobyname(name)
    except OSError:
        num = _atoi(name)
        if not 0 < num <= 256:
            return None
    for pname, pnum in _PROTO_NUMS.items():
        if pnum == num:
            return pname, num
    return "unknown", num


class _Parsed:
    def __init__(self) -> None:
        self.q = Query()
        self.opts: set[str] = set()
        self.family = 0
        self.warnings: list[str] = []
        self.proto_name: str | None = None
        self.mask_src = 0xFFFFFFFF
        self.mask_dst = 0xFFFFFFFF


def _set_family(p: _Parsed, family: int) -> None:
    if p.family and p.family != family:
        raise ParameterProblem("mismatched address family")
    p.family = family


def _addr(p: _Parsed, key: str, arg: str, cidr: bool) -> tuple[int, int] | None:
    """nfct_parse_addr_from_opt: (address, netmask), None for IPv6."""
    text, slash, masktext = arg.partition("/")
    mask = -1
    if slash:
        try:
            mask = int(masktext, 10) if masktext.lstrip("+-").isdigit() or masktext == "" else -2
        except ValueError:
            mask = -2
        if masktext == "" or mask < 0:
            mask = -2
    a = _inet_aton(text)
    if a is None:
        if not _is_ipv6(text):
            raise ParameterProblem(f"Invalid IP address `{arg}'")
        _set_family(p, 10)
        if mask > 128:
            mask = -2
    else:
        _set_family(p, 2)
        if mask > 32:
            mask = -2
    if mask != -1 and not cidr:
        raise ParameterProblem(f"CIDR notation unavailable for `--{_OPT_OF[key]}'")
    if mask == -2:
        raise ParameterProblem("Invalid netmask")
    if a is None:
        return None
    netmask = 0xFFFFFFFF if mask in (-1, 32) else (0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF
    return a, netmask


def _nat(p: _Parsed, key: str, arg: str) -> list[int | None]:
    """--src-nat/--dst-nat/--any-nat [IP[:PORT]]"""
    address, port = arg, None
    if "[" in arg:
        start = arg.index("[") + 1
        end = arg.find("]", start)
        if end == start:
            raise ParameterProblem("No IPv6 address specified")
        if end < 0:
            raise ParameterProblem("No closing ']' around IPv6 address")
        rest = arg[end:]
        if ":" in rest:
            address, port = arg[start:end], rest[rest.index(":") + 1:]
    elif ":" in arg and ":" not in arg[arg.index(":") + 1:]:
        address, port = arg[:arg.index(":")], arg[arg.index(":") + 1:]
    if port is not None:
        if port == "":
            raise ParameterProblem("No port specified after `:'")
        if not port.isdigit() or int(port) > 65535:
            raise ParameterProblem(f"Invalid port number `{port}'")
    if address == "":
        raise ParameterProblem("No IP specified")
    got = _addr(p, key, address, False)
    return [got[0] if got else None, _atoi(port) & 0xFFFF if port is not None else None]


def parse(argv: list[str]) -> tuple[Query, list[str]]:
    """argv (after `conntrack`) -> the query and any warnings; raises
    ParameterProblem / OtherProblem with conntrack's message."""
    p = _Parsed()
    q = p.q
    args = _Args(argv)
    command = ""
    while True:
        got = args.next()
        if got is None:
            break
        key, optarg = got
        if key in _COMMAND_LETTERS:
            table = "conntrack"
            if key not in ("V", "h", "S"):
                word = args.optional(optarg)
                if word is not None:
                    for name in ("expect", "conntrack", "dying", "unconfirmed"):
                        if name.startswith(word):
                            table = name
                            break
                    else:
                        raise ParameterProblem(f"unknown type `{word}'")
            if table in ("dying", "unconfirmed") and key != "L":
                raise ParameterProblem("Can't do that command with tables `dying' and `unconfirmed'")
            if key == "U" and table == "expect":
                raise ParameterProblem("Can't update expectations")
            if command:
                raise ParameterProblem("Invalid commands combination")
            command = ("E" + key) if table == "expect" and key not in ("V", "h") else key
            q.table = table
            continue
        if key.startswith("proto:"):
            _proto_option(p, key[6:], optarg or "")
            continue
        opt = _OPT_OF.get(key)
        if opt is None:
            raise ParameterProblem("parse error")
        if key in ("s", "d", "r", "q"):
            got_addr = _addr(p, key, optarg or "", key in ("s", "d"))
            p.opts.add(opt)
            if got_addr is not None:
                if key == "s":
                    q.orig_src = list(got_addr)
                elif key == "d":
                    q.orig_dst = list(got_addr)
                elif key == "r":
                    q.reply_src = got_addr[0]
                else:
                    q.reply_dst = got_addr[0]
        elif key in ("{", "}"):
            got_addr = _addr(p, key, optarg or "", False)
            p.opts.add(opt)
            if got_addr is not None:
                if key == "{":
                    p.mask_src = got_addr[0]
                else:
                    p.mask_dst = got_addr[0]
        elif key in ("[", "]"):
            _addr(p, key, optarg or "", True)
            p.opts.add(opt)
        elif key == "p":
            p.opts.add(opt)
            found = _find_proto(optarg or "")
            if found is None:
                raise ParameterProblem(f"`{optarg}' unsupported protocol")
            p.proto_name, q.proto = found
            args.proto_longs.update(_PROTO_OPTS[found[0]])
        elif key == "t":
            p.opts.add(opt)
        elif key == "u":
            p.opts.add(opt)
            q.status = (q.status or 0) | _parse_words(optarg or "", _STATUS_WORDS, p.warnings)
        elif key == "e":
            p.opts.add(opt)
            q.event_mask = _parse_words(optarg or "", _EVENT_WORDS, p.warnings)
        elif key == "o":
            p.opts.add(opt)
            q.output |= _parse_words(optarg or "", _OUTPUT_WORDS, p.warnings)
        elif key == "z":
            p.opts.add(opt)
            q.zero = True
        elif key in ("n", "g", "j"):
            p.opts.add(opt)
            word = args.optional(optarg)
            nat: list[int | None] = [None, None]
            if word is not None:
                nat = _nat(p, key, word)
            if key == "n":
                q.src_nat = nat
            elif key == "g":
                q.dst_nat = nat
            else:
                q.any_nat = nat
        elif key in ("w", "(", ")"):
            p.opts.add(opt)
            v = _strtoul(optarg or "")[0] & 0xFFFF
            if key == "w":
                q.zone = v
            elif key == "(":
                q.orig_zone = v
            else:
                q.reply_zone = v
        elif key in ("i", "c"):
            p.opts.add(opt)
            if key == "c":
                q.secmark = _strtoul(optarg or "")[0] & 0xFFFFFFFF
        elif key == "m":
            p.opts.add(opt)
            value, rest = _strtoul(optarg or "")
            mask = _strtoul(rest[1:])[0] if rest.startswith("/") else 0xFFFFFFFF
            q.mark = [value & 0xFFFFFFFF, mask & 0xFFFFFFFF]
        elif key in ("l", "<", ">"):
            p.opts.add(opt)
            raise ParameterProblem(f"unknown label '{(args.optional(optarg) if key == '>' else optarg) or ''}'")
        elif key == "a":
            p.warnings.append("WARNING: ignoring -a, deprecated option.\n")
        elif key == "f":
            p.opts.add(opt)
            text = optarg or ""
            if text.startswith("ipv4"):
                _set_family(p, 2)
            elif text.startswith("ipv6"):
                _set_family(p, 10)
            else:
                raise ParameterProblem(f"`{text}' unsupported protocol")
        elif key == "b":
            p.opts.add(opt)
    if not p.family:
        p.family = 2
    q.family = p.family
    if "any-nat" in p.opts and ("src-nat" in p.opts or "dst-nat" in p.opts):
        raise ParameterProblem("cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
    q.command = command or "h"
    legal = _LEGAL.get(q.command, _LEGAL["h"])
    for i, name in enumerate(OPT_NAMES):
        given = name in p.opts
        if not given and legal[i] == "1":
            raise ParameterProblem(f"You need to supply the `--{name}' option for this command")
        if given and legal[i] == "0":
            raise ParameterProblem(f"Illegal option `--{name}' with this command")
    if "3" in legal and not ({"src", "dst"} <= p.opts or {"reply-src", "reply-dst"} <= p.opts):
        if p.opts & {"reply-src", "reply-dst"} and not p.opts & {"src", "dst"}:
            raise ParameterProblem("you have to specify `--reply-src' and `--reply-dst'")
        raise ParameterProblem("you have to specify `--src' and `--dst'")
    if "mask-src" in p.opts:
        if "src" not in p.opts:
            raise ParameterProblem("Can't use --mask-src without --src")
        if q.orig_src is not None:
            q.orig_src[1] = p.mask_src
    if "mask-dst" in p.opts:
        if "dst" not in p.opts:
            raise ParameterProblem("Can't use --mask-dst without --dst")
        if q.orig_dst is not None:
            q.orig_dst[1] = p.mask_dst
    comparing = p.opts & {"protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark", "status",
                          "id", "zone", "label", "orig-zone", "reply-zone"}
    if q.command == "L" and comparing and q.zero:
        raise ParameterProblem("Can't use -z with filtering parameters")
    q.options = sorted(p.opts)
    return q, p.warnings


def _proto_option(p: _Parsed, name: str, arg: str) -> None:
    """The protocol's own options (libct_proto_tcp/udp/icmp parse_opts)."""
    q = p.q
    target = _PROTO_OPTS.get(p.proto_name or "unknown", {}).get(name, "")
    if target in ("sport", "dport", "reply_sport", "reply_dport"):
        setattr(q, target, _atoi(arg) & 0xFFFF)
    elif target == "tcp_state":
        if arg not in TCP_STATES:
            raise ParameterProblem(f"unknown TCP state `{arg}'")
        q.tcp_state = TCP_STATES[arg]
    elif target == "icmp_type":
        q.icmp_type = _atoi(arg) & 0xFF
    elif target == "icmp_code":
        q.icmp_code = _atoi(arg) & 0xFF
    elif target == "icmp_id":
        q.icmp_id = _atoi(arg) & 0xFFFF


# ---------------------------------------------------------------- talking to the daemon
def _socket_path(where_socket: str | None) -> str:
    return where_socket or os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET


def _connect(path: str, query: Query, timeout: float | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"conntrack": query.to_json(), "portid": os.getpid()}).encode())
        s.shutdown(socket.SHUT_WR)
    except OSError:
        s.close()
        raise
    return s


def _unreachable(path: str, exc: Exception) -> Result:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Result(1, "", f"pyfw conntrack: cannot reach the pyfw daemon at {path}: {reason}; give --socket PATH "
                         "(or set PYFW_SOCKET) for a running pyfw daemon\n")


def request(path: str, query: Query, timeout: float = 30.0) -> dict[str, Any]:
    """One conntrack operation on the daemon at `path` (raises OSError/ValueError)."""
    with _connect(path, query, timeout) as s:
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    answer: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    return answer


def _usage() -> str:
    return USAGE


def run(argv: list[str]) -> Result:
    """`pyfw conntrack ARGS` for every command but -E, in-process."""
    rest, where, error = _extract_where(argv)
    if error:
        return Result(2, "", f"{HEAD}{error}\n{TRY_HELP}")
    if where.file:
        return Result(2, "", "pyfw conntrack: the connection table lives in the daemon: give --socket PATH, "
                             "not --file\n")
    try:
        q, warnings = parse(rest)
    except ParameterProblem as exc:
        return Result(2, "", f"{HEAD}{exc}\n{TRY_HELP}")
    warn = "".join(warnings)
    if q.command == "V":
        return Result(0, f"conntrack v{VERSION} (conntrack-tools)\n", warn)
    if q.command == "h":
        return Result(0, _usage(), warn)
    if q.command == "E":
        return Result(2, "", "pyfw conntrack: -E follows events: run it from the command line\n")
    if q.command in ("I", "U", "EI", "ED", "EG", "EE"):
        return Result(1, "", f"{warn}{HEAD}Operation failed: not supported by pyfw\n")
    if q.command == "EL":
        return Result(0, "", f"{warn}{HEAD}0 expectations have been shown.\n")
    if q.command == "EC":
        return Result(0, "0\n", warn)
    path = _socket_path(where.socket)
    try:
        answer = request(path, q)
    except (OSError, ValueError) as exc:
        return _unreachable(path, exc)
    problem = answer.get("error") or answer.get("err")
    if problem:
        return Result(int(answer.get("rc", 1)), "", f"{warn}{problem}")
    lines = "".join(line + "\n" for line in answer.get("lines", []))
    if q.command == "L" and q.output & OUT_XML and lines:
        lines = XML_HEAD + lines + XML_TAIL
    if q.command == "EF":
        return Result(0, "", f"{warn}{HEAD}expectation table has been emptied.\n")
    if q.command == "F":
        return Result(0, "", f"{warn}{HEAD}connection tracking table has been emptied.\n")
    if q.command == "C":
        return Result(0, f"{answer.get('count', 0)}\n", warn)
    if q.command in ("S", "ES"):
        return Result(0, lines, warn)
    n = len(answer.get("lines", []))
    if q.command == "G":
        return Result(0 if n else 1, lines, f"{warn}{HEAD}{n} flow entries have been shown.\n")
    if q.command == "L":
        if q.status == 0 and "status" in q.options:
            return Result(1, "", f"{warn}{HEAD}Operation failed: invalid parameters\n")
        return Result(0, lines, f"{warn}{HEAD}{n} flow entries have been shown.\n")
    # D
    return Result(0 if n else 1, lines, f"{warn}{HEAD}{n} flow entries have been deleted.\n")


def follow(argv: list[str], out: Any = None, err: Any = None) -> int:
    """`pyfw conntrack -E`: print the daemon's events until SIGINT/SIGTERM."""
    out = out or sys.stdout
    err = err or sys.stderr
    rest, where, _error = _extract_where(argv)
    q, warnings = parse(rest)
    err.write("".join(warnings))
    path = _socket_path(where.socket)
    try:
        s = _connect(path, q, 30.0)
    except OSError as exc:
        err.write(_unreachable(path, exc).err)
        return 1
    shown = 0

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = [signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)]
    rc = 0
    try:
        s.settimeout(None)
        f = s.makefile("rb")
        ack = f.readline()
        answer = json.loads(ack or b"{}")
        if "error" in answer:
            err.write(answer["error"])
            return int(answer.get("rc", 1))
        for raw in f:
            line = _with_progname(raw.decode("utf-8", "replace"))
            if q.output & OUT_XML and not shown:
                out.write(XML_HEAD)
            if q.output & OUT_TMS and not q.output & OUT_XML:
                t = time.time()
                line = f"[{int(t):08d}.{int(t * 1e6) % 1000000:06d}]\t{line}"
            out.write(line)
            out.flush()
            shown += 1
        err.write("pyfw conntrack: the pyfw daemon closed the event stream\n")
        rc = 1
    except KeyboardInterrupt:
        pass
    finally:
        if q.output & OUT_XML and shown:
            out.write(XML_TAIL)
            out.flush()
        for sig, handler in zip((signal.SIGTERM, signal.SIGINT), old):
            signal.signal(sig, handler)
        s.close()
    err.write(f"{HEAD}{shown} flow events have been shown.\n")
    return rc


def _with_progname(line: str) -> str:
    """conntrack -E names the program behind a user's delete (portid=PID)
    when that process is still there to ask."""
    head, sep, pid = line.rstrip("\n").rpartition(" [USERSPACE] portid=")
    if not sep or not pid.isdigit():
        return line
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
    except OSError:
        return line
    return f"{head}{sep}{pid} progname={name}\n" if name else line


def main(argv: list[str]) -> int:
    rest, _where, _error = _extract_where(argv)
    try:
        q, _warnings = parse(rest)
    except ParameterProblem:
        q = Query()
    if q.command == "E":
        return follow(argv)
    r = run(argv)
    if r.out:
        sys.stdout.write(r.out)
        sys.stdout.flush()
    if r.err:
        sys.stderr.write(r.err)
    return r.rc
