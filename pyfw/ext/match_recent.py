"""recent: remember addresses in a named list and match on them.

Revision 1 (with --mask), struct xt_recent_mtinfo_v1.  Exactly one of
--set/--rcheck/--update/--remove is needed (iptables says so); the kernel
refuses --seconds/--hitcount with --set/--remove, --reap without --seconds,
a hit count of 65536 or more, and bad list names ("", ".", "..", "a/b").
-S prints seconds and hit count as C's %d does, so large values go negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.types import ip_to_str

CHECK = 1 << 0
SET = 1 << 1
UPDATE = 1 << 2
REMOVE = 1 << 3
TTL = 1 << 4
REAP = 1 << 5
MODIFIERS = TTL | REAP
COMMANDS = SET | CHECK | UPDATE | REMOVE

SOURCE = 0
DEST = 1

NAME_LEN = 200
MAX_NSTAMPS = 65536  # the kernel's XT_RECENT_MAX_NSTAMPS on the reference machine

_OPS = ("set", "rcheck", "update", "remove")
_OP_BITS = {"set": SET, "rcheck": CHECK, "update": UPDATE, "remove": REMOVE}


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass
class RecentData:
    seconds: int = 0
    hit_count: int = 0
    check_set: int = 0
    invert: bool = False
    name: str = "DEFAULT"
    side: int = SOURCE
    mask: int = 0xFFFFFFFF


class Recent(Match):
    name = "recent"
    revision = 1
    options = (
        Opt("set", invert=True, excl=_OPS),
        Opt("rcheck", invert=True, excl=_OPS),
        Opt("update", invert=True, excl=_OPS),
        Opt("remove", invert=True, excl=_OPS),
        Opt("seconds", ArgType.UINT32, min=1),
        Opt("reap", also=("seconds",)),
        Opt("hitcount", ArgType.UINT32),
        Opt("rttl", excl=("set", "remove")),
        Opt("name", ArgType.STRING),
        Opt("rsource"),
        Opt("rdest"),
        Opt("mask", ArgType.HOST),
    )

    def new_data(self) -> RecentData:
        return RecentData()

    def parse(self, call: Call) -> None:
        data: RecentData = call.data
        opt = call.opt.name
        if opt in _OP_BITS:
            data.check_set |= _OP_BITS[opt]
            if call.invert:
                data.invert = True
        elif opt == "seconds":
            data.seconds = call.value
        elif opt == "reap":
            data.check_set |= REAP
        elif opt == "hitcount":
            data.hit_count = call.value
        elif opt == "rttl":
            data.check_set |= TTL
        elif opt == "name":
            raw = call.value.encode("utf-8", "surrogateescape")[:NAME_LEN - 1]
            data.name = raw.decode("utf-8", "surrogateescape")
        elif opt == "rsource":
            data.side = SOURCE
        elif opt == "rdest":
            data.side = DEST
        elif opt == "mask":
            data.mask = call.value

    def final_check(self, data: RecentData, xflags: set[str], udata: dict[str, Any]) -> None:
        if not xflags & set(_OPS):
            raise ParameterProblem(
                "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'")

    def check(self, data: RecentData, ctx: CheckContext) -> None:
        if (data.check_set & COMMANDS).bit_count() != 1:
            raise KernelError(EINVAL)
        if data.check_set & (SET | REMOVE) and (
                data.seconds or data.hit_count or data.check_set & MODIFIERS):
            raise KernelError(EINVAL)
        if data.check_set & REAP and not data.seconds:
            raise KernelError(EINVAL)
        if data.hit_count >= MAX_NSTAMPS:
            raise KernelError(EINVAL)
        if data.name in ("", ".", "..") or "/" in data.name:
            raise KernelError(EINVAL)

    def _words(self, data: RecentData, save: bool) -> list[str]:
        out = []
        if data.invert:
            out.append("!")
        if save:
            out += [f"--{op}" for op in _OPS if data.check_set & _OP_BITS[op]]
        else:
            out.append("recent:")
            out += [w for w, bit in (("SET", SET), ("CHECK", CHECK), ("UPDATE", UPDATE),
                                     ("REMOVE", REMOVE)) if data.check_set & bit]
        if data.seconds:
            out.append(f"--seconds {_signed32(data.seconds)}" if save
                       else f"seconds: {_signed32(data.seconds)}")
        if data.check_set & REAP:
            out.append("--reap" if save else "reap")
        if data.hit_count:
            out.append(f"--hitcount {_signed32(data.hit_count)}" if save
                       else f"hit_count: {_signed32(data.hit_count)}")
        if data.check_set & TTL:
            out.append("--rttl" if save else "TTL-Match")
        side = "--rsource" if data.side == SOURCE else "--rdest" if data.side == DEST else ""
        if save:
            out += [f"--name {data.name}", f"--mask {ip_to_str(data.mask)}"]
            if side:
                out.append(side)
        else:
            out.append(f"name: {data.name}")
            if side:
                out.append("side: source" if data.side == SOURCE else "side: dest")
            out.append(f"mask: {ip_to_str(data.mask)}")
        return out

    def save(self, data: RecentData, ip: RuleIp) -> str:
        return "".join(" " + w for w in self._words(data, True))

    def print(self, data: RecentData, ip: RuleIp, numeric: bool) -> str:
        return "".join(" " + w for w in self._words(data, False))


EXTENSIONS = [Recent()]
