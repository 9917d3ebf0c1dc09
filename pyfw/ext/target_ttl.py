"""TTL: set, increment or decrement the IP header's TTL.

The kernel allows TTL in the mangle table only (xt_HL); it refuses an
increment or decrement by 0, which iptables already refuses (min 1).
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


# enum IPT_TTL_*
MODE_SET = 0
MODE_INC = 1
MODE_DEC = 2

_OPS = ("ttl-set", "ttl-dec", "ttl-inc")
# Option ids (O_TTL_*), which order the "cannot be used together" search.
_ID_ORDER = ("ttl-set", "ttl-inc", "ttl-dec")
_SAVE = {MODE_SET: " --ttl-set", MODE_DEC: " --ttl-dec", MODE_INC: " --ttl-inc"}
_PRINT = {MODE_SET: "set to", MODE_DEC: "decrement by", MODE_INC: "increment by"}


def _excl(name: str) -> tuple[str, ...]:
    return tuple(o for o in _OPS if o != name)


@dataclass
class TTLData:
    mode: int = MODE_SET
    ttl: int = 0


class TTL(Target):
    name = "TTL"
    table = "mangle"
    # Table order of TTL_opts (set, dec, inc): it decides which conflict is reported.
    options = (
        Opt("ttl-set", ArgType.UINT8, excl=_excl("ttl-set")),
        Opt("ttl-dec", ArgType.UINT8, min=1, excl=_excl("ttl-dec")),
        Opt("ttl-inc", ArgType.UINT8, min=1, excl=_excl("ttl-inc")),
    )

    def new_data(self) -> TTLData:
        return TTLData()

    def parse(self, call: Call) -> None:
        mode = {"ttl-set": MODE_SET, "ttl-dec": MODE_DEC, "ttl-inc": MODE_INC}[call.opt.name]
        call.data.mode = mode
        call.data.ttl = call.value

    def final_check(self, data: TTLData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags & set(_OPS):
            raise fail("TTL: You must specify an action")
        fcheck_excl_id_order(self.name, self.options, _ID_ORDER, xflags)

    def check(self, data: TTLData, ctx: CheckContext) -> None:
        if data.mode > MODE_DEC or (data.mode != MODE_SET and data.ttl == 0):
            raise KernelError(EINVAL)

    def save(self, data: TTLData, ip: RuleIp) -> str:
        return f"{_SAVE.get(data.mode, '')} {data.ttl}"

    def print(self, data: TTLData, ip: RuleIp, numeric: bool) -> str:
        return f" TTL {_PRINT.get(data.mode, '')} {data.ttl}"

    def compile(self, data: TTLData, env: Env) -> TargetFn:
        """ttl_tg: set, or add/subtract clamped to 0..255; the header
        checksum updated with csum_replace2 over the TTL/protocol word."""
        from pyfw.engine.api import XT_CONTINUE
        from pyfw.ext._csum import csum_replace2

        mode, value = data.mode, data.ttl

        def target(pkt: Packet) -> int:
            d = pkt.data
            old = d[8]
            if mode == MODE_SET:
                new = value
            elif mode == MODE_INC:
                new = min(old + value, 255)
            elif mode == MODE_DEC:
                new = max(old - value, 0)
            else:
                new = old
            if new != old:
                check = csum_replace2(d[10] << 8 | d[11], old << 8, new << 8)
                d[8] = new
                d[10], d[11] = check >> 8, check & 0xFF
                pkt.ttl = new
            return XT_CONTINUE

        return target


EXTENSIONS = [TTL()]
