"""MARK: set, clear or flip bits of the packet's nfmark.

iptables 1.8.9 uses revision 2 (xt_mark_tginfo2): every option is reduced
to one (mark, mask) pair, the new nfmark being (nfmark & ~mask) ^ mark, and
`-S` always prints it back as `--set-xmark MARK/MASK`.  The kernel allows
MARK in every table and hook and has no checkentry for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.ext.base import ArgType, Call, Opt, RuleIp, Target, fail
from pyfw.ext.types import fcheck_excl_id_order

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


_OPS = ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark")
# Option ids (O_*), which order the "cannot be used together" search.
_ID_ORDER = ("set-mark", "and-mark", "or-mark", "xor-mark", "set-xmark")


def _excl(name: str) -> tuple[str, ...]:
    return tuple(o for o in _OPS if o != name)


@dataclass
class MarkData:
    """xt_mark_tginfo2: nfmark = (nfmark & ~mask) ^ mark."""

    mark: int = 0
    mask: int = 0


class Mark(Target):
    name = "MARK"
    revision = 2
    # Table order of mark_tg_opts (it decides which conflict is reported).
    options = (
        Opt("set-xmark", ArgType.MARKMASK32, excl=_excl("set-xmark")),
        Opt("set-mark", ArgType.MARKMASK32, excl=_excl("set-mark")),
        Opt("and-mark", ArgType.UINT32, excl=_excl("and-mark")),
        Opt("or-mark", ArgType.UINT32, excl=_excl("or-mark")),
        Opt("xor-mark", ArgType.UINT32, excl=_excl("xor-mark")),
    )

    def new_data(self) -> MarkData:
        return MarkData()

    def parse(self, call: Call) -> None:
        data: MarkData = call.data
        name = call.opt.name
        if name == "set-xmark":
            data.mark, data.mask = call.value
        elif name == "set-mark":
            # OR semantics: clear the mask bits, then the value's bits too.
            mark, mask = call.value
            data.mark, data.mask = mark, mark | mask
        elif name == "and-mark":
            data.mark, data.mask = 0, ~call.value & 0xFFFFFFFF
        elif name == "or-mark":
            data.mark = data.mask = call.value
        elif name == "xor-mark":
            data.mark, data.mask = call.value, 0

    def final_check(self, data: MarkData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise fail("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
        fcheck_excl_id_order(self.name, self.options, _ID_ORDER, xflags)

    def save(self, data: MarkData, ip: RuleIp) -> str:
        return f" --set-xmark 0x{data.mark:x}/0x{data.mask:x}"

    def print(self, data: MarkData, ip: RuleIp, numeric: bool) -> str:
        if data.mark == 0:
            return f" MARK and 0x{~data.mask & 0xFFFFFFFF:x}"
        if data.mark == data.mask:
            return f" MARK or 0x{data.mark:x}"
        if data.mask == 0:
            return f" MARK xor 0x{data.mark:x}"
        if data.mask == 0xFFFFFFFF:
            return f" MARK set 0x{data.mark:x}"
        return f" MARK xset 0x{data.mark:x}/0x{data.mask:x}"

    def compile(self, data: MarkData, env: Env) -> TargetFn:
        """mark_tg: nfmark = (nfmark & ~mask) ^ mark."""
        from pyfw.engine.api import XT_CONTINUE

        keep, flip = ~data.mask & 0xFFFFFFFF, data.mark

        def target(pkt: Packet) -> int:
            pkt.mark = (pkt.mark & keep) ^ flip
            return XT_CONTINUE

        return target


EXTENSIONS = [Mark()]
