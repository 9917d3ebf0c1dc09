"""connmark: match the mark of the packet's connection (revision 1,
struct xt_connmark_mtinfo1).  The kernel check only takes a conntrack
reference; any table and hook is fine."""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.match_mark import mark_mask_text


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


EXTENSIONS = [Connmark()]
