"""length: the IP packet's total length (`-m length --length 1000:1500`).

XTTYPE_UINT16RC: "n", "a:b", ":b", "a:", ":" (0:65535); 1.8.9 does not check
a <= b.  No kernel check beyond the option itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet


@dataclass
class LengthData:
    min: int = 0
    max: int = 0
    invert: bool = False


class Length(Match):
    name = "length"
    options = (Opt("length", ArgType.UINT16RC, mand=True, invert=True),)

    def new_data(self) -> LengthData:
        return LengthData()

    def parse(self, call: Call) -> None:
        data: LengthData = call.data
        values: tuple[int, ...] = call.value
        data.min = values[0]
        data.max = values[1] if len(values) >= 2 else values[0]
        if call.invert:
            data.invert = True

    def _range(self, data: LengthData) -> str:
        return str(data.min) if data.min == data.max else f"{data.min}:{data.max}"

    def save(self, data: LengthData, ip: RuleIp) -> str:
        return f"{' !' if data.invert else ''} --length {self._range(data)}"

    def print(self, data: LengthData, ip: RuleIp, numeric: bool) -> str:
        return f" length {'!' if data.invert else ''}{self._range(data)}"

    def compile(self, data: LengthData, env: Env) -> MatchFn:
        """length_mt: the IP total length within [min, max], `!` inverts (a
        reversed range holds nothing)."""
        lo, hi, invert = data.min, data.max, data.invert

        def match(pkt: Packet) -> bool:
            return (lo <= pkt.tot_len <= hi) != invert

        return match


EXTENSIONS = [Length()]
