"""CONNMARK: set the connection's mark, or copy it to/from the nfmark.

iptables 1.8.9 uses revision 2 (xt_connmark_tginfo2), which adds an optional
shift of the copied value.  All set-like options reduce to
ctmark = (ctmark & ~ctmask) ^ value (`--set-xmark`); save and restore always
print both masks.  The kernel allows CONNMARK in every table and hook, but
its checkentry refuses a shift of 32 bits or more (EINVAL) although
iptables accepts up to 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target, fail
from pyfw.ext.types import fcheck_excl_id_order

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


# enum XT_CONNMARK_*
MODE_SET = 0
MODE_SAVE = 1
MODE_RESTORE = 2
# shift directions (D_SHIFT_*)
SHIFT_LEFT = 0
SHIFT_RIGHT = 1

_U32 = 0xFFFFFFFF
_OPS = ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark")
# Option ids (O_*), which order the "cannot be used together" search.
_ID_ORDER = ("set-mark", "save-mark", "restore-mark", "and-mark", "or-mark", "xor-mark",
             "left-shift-mark", "right-shift-mark", "set-xmark", "ctmask", "nfmask", "mask")


def _excl(name: str) -> tuple[str, ...]:
    return tuple(o for o in _OPS if o != name)


@dataclass
class ConnmarkData:
    """xt_connmark_tginfo2; the masks default to all ones (tg_init)."""

    ctmark: int = 0
    ctmask: int = _U32
    nfmask: int = _U32
    shift_dir: int = SHIFT_LEFT
    shift_bits: int = 0
    mode: int = MODE_SET


class Connmark(Target):
    name = "CONNMARK"
    revision = 2
    # Table order of connmark_tg_opts_v2 (it decides which conflict is reported).
    options = (
        Opt("set-xmark", ArgType.MARKMASK32, excl=_excl("set-xmark")),
        Opt("set-mark", ArgType.MARKMASK32, excl=_excl("set-mark")),
        Opt("and-mark", ArgType.UINT32, excl=_excl("and-mark")),
        Opt("or-mark", ArgType.UINT32, excl=_excl("or-mark")),
        Opt("xor-mark", ArgType.UINT32, excl=_excl("xor-mark")),
        Opt("save-mark", ArgType.NONE, excl=_excl("save-mark")),
        Opt("restore-mark", ArgType.NONE, excl=_excl("restore-mark")),
        Opt("left-shift-mark", ArgType.UINT8, min=0, max=32),
        Opt("right-shift-mark", ArgType.UINT8, min=0, max=32),
        Opt("ctmask", ArgType.UINT32, excl=("mask",)),
        Opt("nfmask", ArgType.UINT32, excl=("mask",)),
        Opt("mask", ArgType.UINT32, excl=("ctmask", "nfmask")),
    )

    def new_data(self) -> ConnmarkData:
        return ConnmarkData()

    def parse(self, call: Call) -> None:
        d: ConnmarkData = call.data
        name = call.opt.name
        v = call.value
        if name == "set-xmark":
            d.mode, (d.ctmark, d.ctmask) = MODE_SET, v
        elif name == "set-mark":
            d.mode, d.ctmark, d.ctmask = MODE_SET, v[0], v[0] | v[1]
        elif name == "and-mark":
            d.mode, d.ctmark, d.ctmask = MODE_SET, 0, ~v & _U32
        elif name == "or-mark":
            d.mode, d.ctmark, d.ctmask = MODE_SET, v, v
        elif name == "xor-mark":
            d.mode, d.ctmark, d.ctmask = MODE_SET, v, 0
        elif name == "save-mark":
            d.mode = MODE_SAVE
        elif name == "restore-mark":
            d.mode = MODE_RESTORE
        elif name == "ctmask":
            d.ctmask = v
        elif name == "nfmask":
            d.nfmask = v
        elif name == "mask":
            d.ctmask = d.nfmask = v
        elif name == "left-shift-mark":
            d.shift_dir, d.shift_bits = SHIFT_LEFT, v
        elif name == "right-shift-mark":
            d.shift_dir, d.shift_bits = SHIFT_RIGHT, v

    def final_check(self, data: ConnmarkData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags & set(_OPS):
            raise fail("CONNMARK target: No operation specified")
        fcheck_excl_id_order(self.name, self.options, _ID_ORDER, xflags)

    def check(self, data: ConnmarkData, ctx: CheckContext) -> None:
        if data.shift_bits > 31:
            raise KernelError(EINVAL)

    def _shift(self, data: ConnmarkData, prefix: str) -> str:
        if data.mode <= MODE_RESTORE and data.shift_bits != 0:
            op = "left-shift-mark" if data.shift_dir == SHIFT_LEFT else "right-shift-mark"
            return f" {prefix}{op} {data.shift_bits}"
        return ""

    def save(self, data: ConnmarkData, ip: RuleIp) -> str:
        if data.mode == MODE_SET:
            text = f" --set-xmark 0x{data.ctmark:x}/0x{data.ctmask:x}"
        elif data.mode == MODE_SAVE:
            text = f" --save-mark --nfmask 0x{data.nfmask:x} --ctmask 0x{data.ctmask:x}"
        elif data.mode == MODE_RESTORE:
            text = f" --restore-mark --nfmask 0x{data.nfmask:x} --ctmask 0x{data.ctmask:x}"
        else:
            text = " ERROR: UNKNOWN CONNMARK MODE"
        return text + self._shift(data, "--")

    def print(self, data: ConnmarkData, ip: RuleIp, numeric: bool) -> str:
        d = data
        if d.mode == MODE_SET:
            if d.ctmark == 0:
                text = f" CONNMARK and 0x{~d.ctmask & _U32:x}"
            elif d.ctmark == d.ctmask:
                text = f" CONNMARK or 0x{d.ctmark:x}"
            elif d.ctmask == 0:
                text = f" CONNMARK xor 0x{d.ctmark:x}"
            elif d.ctmask == _U32:
                text = f" CONNMARK set 0x{d.ctmark:x}"
            else:
                text = f" CONNMARK xset 0x{d.ctmark:x}/0x{d.ctmask:x}"
        elif d.mode == MODE_SAVE:
            if d.nfmask == _U32 and d.ctmask == _U32:
                text = " CONNMARK save"
            elif d.nfmask == d.ctmask:
                text = f" CONNMARK save mask 0x{d.nfmask:x}"
            else:
                text = f" CONNMARK save nfmask 0x{d.nfmask:x} ctmask ~0x{d.ctmask:x}"
        elif d.mode == MODE_RESTORE:
            if d.ctmask == _U32 and d.nfmask == _U32:
                text = " CONNMARK restore"
            elif d.ctmask == d.nfmask:
                text = f" CONNMARK restore mask 0x{d.ctmask:x}"
            else:
                text = f" CONNMARK restore ctmask 0x{d.ctmask:x} nfmask ~0x{d.nfmask:x}"
        else:
            text = " ERROR: UNKNOWN CONNMARK MODE"
        return text + self._shift(d, "")

    def compile(self, data: ConnmarkData, env: Env) -> TargetFn:
        """connmark_tg_shift: set, save or restore with masks and a shift;
        nothing for a packet without a connection (untracked, INVALID)."""
        from pyfw.engine.api import XT_CONTINUE

        mode = data.mode
        ctmark, ctkeep = data.ctmark, ~data.ctmask & _U32
        ctmask, nfmask, nfkeep = data.ctmask, data.nfmask, ~data.nfmask & _U32
        bits = data.shift_bits
        right = data.shift_dir == SHIFT_RIGHT

        def shift(v: int) -> int:
            return v >> bits if right else (v << bits) & _U32

        def target(pkt: Packet) -> int:
            ct = pkt.ct
            if ct is None:
                return XT_CONTINUE
            if mode == MODE_SET:
                ct.mark = shift((ct.mark & ctkeep) ^ ctmark)
            elif mode == MODE_SAVE:
                ct.mark = (ct.mark & ctkeep) ^ shift(pkt.mark & nfmask)
            elif mode == MODE_RESTORE:
                pkt.mark = (pkt.mark & nfkeep) ^ shift(ct.mark & ctmask)
            return XT_CONTINUE

        return target


EXTENSIONS = [Connmark()]
