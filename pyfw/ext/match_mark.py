"""mark: match the packet's nfmark (revision 1, struct xt_mark_mtinfo1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet


@dataclass
class MarkInfo:
    """Matches when (nfmark & mask) == mark, negated by invert."""

    mark: int = 0
    mask: int = 0xFFFFFFFF
    invert: bool = False


def mark_mask_text(value: int, mask: int) -> str:
    """xtables_print_mark_mask: " 0xV/0xM", or " 0xV" for a full mask."""
    if mask != 0xFFFFFFFF:
        return f" 0x{value:x}/0x{mask:x}"
    return f" 0x{value:x}"


class Mark(Match):
    name = "mark"
    revision = 1
    options = (Opt("mark", ArgType.MARKMASK32, invert=True, mand=True),)

    def new_data(self) -> MarkInfo:
        return MarkInfo()

    def parse(self, call: Call) -> None:
        d: MarkInfo = call.data
        d.mark, d.mask = call.value
        if call.invert:
            d.invert = True

    def save(self, data: MarkInfo, ip: RuleIp) -> str:
        bang = " !" if data.invert else ""
        return f"{bang} --mark{mark_mask_text(data.mark, data.mask)}"

    def print(self, data: MarkInfo, ip: RuleIp, numeric: bool) -> str:
        bang = " !" if data.invert else ""
        return f" mark match{bang}{mark_mask_text(data.mark, data.mask)}"

    def compile(self, data: MarkInfo, env: Env) -> MatchFn:
        """mark_mt: (nfmark & mask) == mark, `!` inverts."""
        mark, mask, invert = data.mark, data.mask, data.invert

        def match(pkt: Packet) -> bool:
            return ((pkt.mark & mask) == mark) != invert

        return match


EXTENSIONS = [Mark()]
