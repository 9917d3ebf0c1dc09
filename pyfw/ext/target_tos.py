"""TOS: rewrite the IP header's TOS byte.

iptables 1.8.9 uses revision 1 (xt_tos_target_info): every option reduces
to (value, mask), the new TOS being (tos & ~mask) ^ value, and `-S` prints
`--set-tos 0xVV/0xMM`.  A symbolic name implies mask 0x3f (the 6 DSCP bits).
The kernel allows TOS in the mangle table only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.ext.base import ArgType, Call, Opt, RuleIp, Target, fail
from pyfw.ext.types import TOS_SYMBOLS

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


_OPS = ("set-tos", "and-tos", "or-tos", "xor-tos")


def _excl(name: str) -> tuple[str, ...]:
    return tuple(o for o in _OPS if o != name)


@dataclass
class TosData:
    value: int = 0
    mask: int = 0


def _symbolic(value: int, mask: int) -> str | None:
    """tos_try_print_symbolic: a name only for mask 0x3f."""
    if mask != 0x3F:
        return None
    for num, name in TOS_SYMBOLS:
        if num == value:
            return name
    return None


class Tos(Target):
    name = "TOS"
    revision = 1
    table = "mangle"
    options = (
        # max is the mask a symbolic name gets (XTTYPE_TOSMASK convention).
        Opt("set-tos", ArgType.TOSMASK, max=0x3F, excl=_excl("set-tos")),
        Opt("and-tos", ArgType.UINT8, excl=_excl("and-tos")),
        Opt("or-tos", ArgType.UINT8, excl=_excl("or-tos")),
        Opt("xor-tos", ArgType.UINT8, excl=_excl("xor-tos")),
    )

    def new_data(self) -> TosData:
        return TosData()

    def parse(self, call: Call) -> None:
        d: TosData = call.data
        name = call.opt.name
        if name == "set-tos":
            d.value, d.mask = call.value
        elif name == "and-tos":
            d.value, d.mask = 0, ~call.value & 0xFF
        elif name == "or-tos":
            d.value = d.mask = call.value
        elif name == "xor-tos":
            d.value, d.mask = call.value, 0

    def final_check(self, data: TosData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags & set(_OPS):
            raise fail("TOS: An action is required")

    def save(self, data: TosData, ip: RuleIp) -> str:
        return f" --set-tos 0x{data.value:02x}/0x{data.mask:02x}"

    def print(self, data: TosData, ip: RuleIp, numeric: bool) -> str:
        v, m = data.value, data.mask
        if numeric:
            return f" TOS set 0x{v:02x}/0x{m:02x}"
        name = _symbolic(v, m)
        if name is not None:
            # iptables prints the prefix " TOS set" after a space and then
            # the name without one: "  TOS setMinimize-Delay".
            return f"  TOS set{name}"
        if v == 0:
            return f" TOS and 0x{~m & 0xFF:02x}"
        if v == m:
            return f" TOS or 0x{v:02x}"
        if m == 0:
            return f" TOS xor 0x{v:02x}"
        return f" TOS set 0x{v:02x}/0x{m:02x}"

    def compile(self, data: TosData, env: Env) -> TargetFn:
        """tos_tg: TOS = (TOS & ~mask) ^ value, the header checksum updated
        the way ipv4_change_dsfield does it."""
        from pyfw.engine.api import XT_CONTINUE
        from pyfw.ext._csum import change_dsfield

        keep, flip = ~data.mask & 0xFF, data.value

        def target(pkt: Packet) -> int:
            d = pkt.data
            orig = d[1]
            new = (orig & keep) ^ flip
            if new != orig:
                check = change_dsfield(d[10] << 8 | d[11], orig, new)
                d[1] = new
                d[10], d[11] = check >> 8, check & 0xFF
                pkt.tos = new
            return XT_CONTINUE

        return target


EXTENSIONS = [Tos()]
