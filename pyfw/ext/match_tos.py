"""tos: match the IPv4 TOS field under a mask (revision 1,
struct xt_tos_match_info).  A symbolic name implies the mask 0x3f."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.types import TOS_SYMBOLS

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet


@dataclass
class TosInfo:
    """Matches when (tos & tos_mask) == tos_value, negated by invert."""

    tos_value: int = 0
    tos_mask: int = 0
    invert: bool = False


def tos_symbol(value: int, mask: int) -> str | None:
    """tos_try_print_symbolic: a name only for mask 0x3f."""
    if mask != 0x3F:
        return None
    for num, name in TOS_SYMBOLS:
        if num == value:
            return name
    return None


class Tos(Match):
    name = "tos"
    revision = 1
    # `max` is the mask a symbolic name gets (the revision's default).
    options = (Opt("tos", ArgType.TOSMASK, invert=True, mand=True, max=0x3F),)

    def new_data(self) -> TosInfo:
        return TosInfo()

    def parse(self, call: Call) -> None:
        d: TosInfo = call.data
        d.tos_value, d.tos_mask = call.value
        if call.invert:
            d.invert = True

    def save(self, data: TosInfo, ip: RuleIp) -> str:
        bang = " !" if data.invert else ""
        return f"{bang} --tos 0x{data.tos_value:02x}/0x{data.tos_mask:02x}"

    def print(self, data: TosInfo, ip: RuleIp, numeric: bool) -> str:
        # iptables prints no space between "match", "!" and a numeric value.
        out = " tos match" + ("!" if data.invert else "")
        name = None if numeric else tos_symbol(data.tos_value, data.tos_mask)
        if name is not None:
            return out + " " + name
        return out + f"0x{data.tos_value:02x}/0x{data.tos_mask:02x}"

    def compile(self, data: TosInfo, env: Env) -> MatchFn:
        """tos_mt: (tos & mask) == value, `!` inverts."""
        value, mask, invert = data.tos_value, data.tos_mask, data.invert

        def match(pkt: Packet) -> bool:
            return ((pkt.tos & mask) == value) != invert

        return match


EXTENSIONS = [Tos()]
