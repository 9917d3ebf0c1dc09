"""connmark: match the mark of the packet's connection (revision 1,
struct xt_connmark_mtinfo1).  The kernel check only takes a conntrack
reference; any table and hook is fine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.match_mark import mark_mask_text

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet


@dataclass
class ConnmarkInfo:
    """Matches when (ctmark & mask) == mark, negated by invert."""

    mark: int = 0
    mask: int = 0xFFFFFFFF
    invert: bool = False


class Connmark(Match):
    name = "connmark"
    revision = 1
    options = (Opt("mark", ArgType.MARKMASK32, invert=True, mand=True),)

    def new_data(self) -> ConnmarkInfo:
        return ConnmarkInfo()

    def parse(self, call: Call) -> None:
        d: ConnmarkInfo = call.data
        d.mark, d.mask = call.value
        if call.invert:
            d.invert = True

    def save(self, data: ConnmarkInfo, ip: RuleIp) -> str:
        bang = " !" if data.invert else ""
        return f"{bang} --mark{mark_mask_text(data.mark, data.mask)}"

    def print(self, data: ConnmarkInfo, ip: RuleIp, numeric: bool) -> str:
        # iptables prints "connmark match " and then "!" with no space.
        bang = "!" if data.invert else ""
        return f" connmark match {bang}{mark_mask_text(data.mark, data.mask)}"

    def compile(self, data: ConnmarkInfo, env: Env) -> MatchFn:
        """connmark_mt: (ctmark & mask) == mark, `!` inverts; a packet
        without a connection (INVALID, UNTRACKED) never matches, even with
        `!`.  A CT template (raw table, before conntrack) has mark 0."""
        mark, mask, invert = data.mark, data.mask, data.invert

        def match(pkt: Packet) -> bool:
            ct = pkt.ct
            if ct is None:
                if pkt.ct_template is None or pkt.notrack:
                    return False
                return (mark == 0) != invert
            return ((ct.mark & mask) == mark) != invert

        return match


EXTENSIONS = [Connmark()]
