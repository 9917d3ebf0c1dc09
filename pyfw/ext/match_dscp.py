"""dscp: match the DSCP bits of the TOS byte (struct xt_dscp_info), given
as a number 0-63 or a DiffServ class name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.types import strncasecmp_eq

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

DSCP_MAX = 0x3F

# DiffServ class names, in iptables' lookup order (first prefix wins).
DS_CLASSES: tuple[tuple[str, int], ...] = (
    ("CS0", 0x00), ("CS1", 0x08), ("CS2", 0x10), ("CS3", 0x18), ("CS4", 0x20),
    ("CS5", 0x28), ("CS6", 0x30), ("CS7", 0x38), ("BE", 0x00),
    ("AF11", 0x0A), ("AF12", 0x0C), ("AF13", 0x0E), ("AF21", 0x12),
    ("AF22", 0x14), ("AF23", 0x16), ("AF31", 0x1A), ("AF32", 0x1C),
    ("AF33", 0x1E), ("AF41", 0x22), ("AF42", 0x24), ("AF43", 0x26),
    ("EF", 0x2E),
)


def class_to_dscp(name: str) -> int:
    """class_to_dscp: the argument must start with a class name (any case);
    trailing characters are ignored, as in iptables."""
    for cls, value in DS_CLASSES:
        if strncasecmp_eq(name, cls, len(cls)):
            return value
    raise ParameterProblem(f"Invalid DSCP value `{name}'")


@dataclass
class DscpInfo:
    dscp: int = 0
    invert: bool = False


class Dscp(Match):
    name = "dscp"
    options = (
        Opt("dscp", ArgType.UINT8, invert=True, min=0, max=DSCP_MAX, excl=("dscp-class",)),
        Opt("dscp-class", ArgType.STRING, invert=True, excl=("dscp",)),
    )

    def new_data(self) -> DscpInfo:
        return DscpInfo()

    def parse(self, call: Call) -> None:
        d: DscpInfo = call.data
        if call.opt.name == "dscp":
            d.dscp = call.value
        else:
            d.dscp = class_to_dscp(call.arg or "")
        if call.invert:
            d.invert = True

    def final_check(self, data: DscpInfo, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise ParameterProblem("DSCP match: Parameter --dscp is required")

    def check(self, data: DscpInfo, ctx: CheckContext) -> None:
        if data.dscp > DSCP_MAX:
            raise KernelError(EINVAL)

    def save(self, data: DscpInfo, ip: RuleIp) -> str:
        return f"{' !' if data.invert else ''} --dscp 0x{data.dscp:02x}"

    def print(self, data: DscpInfo, ip: RuleIp, numeric: bool) -> str:
        return f" DSCP match {'!' if data.invert else ''}0x{data.dscp:02x}"

    def compile(self, data: DscpInfo, env: Env) -> MatchFn:
        """dscp_mt: the upper six bits of the TOS byte, `!` inverts."""
        dscp, invert = data.dscp, data.invert

        def match(pkt: Packet) -> bool:
            return ((pkt.tos >> 2) == dscp) != invert

        return match


EXTENSIONS = [Dscp()]
