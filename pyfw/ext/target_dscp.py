"""DSCP: rewrite the DSCP bits of the IP header's TOS byte.

The value is given as a number (0-63) or a DiffServ class name; both end up
as the one number that `-S` prints.  The kernel allows DSCP in the mangle
table only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.ext.base import ArgType, Call, Opt, RuleIp, Target, fail

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


DSCP_MAX = 0x3F

# DiffServ class names, in the order iptables tries them (dscp_helper.c).
DS_CLASSES: tuple[tuple[str, int], ...] = (
    ("CS0", 0x00), ("CS1", 0x08), ("CS2", 0x10), ("CS3", 0x18),
    ("CS4", 0x20), ("CS5", 0x28), ("CS6", 0x30), ("CS7", 0x38),
    ("BE", 0x00),
    ("AF11", 0x0A), ("AF12", 0x0C), ("AF13", 0x0E),
    ("AF21", 0x12), ("AF22", 0x14), ("AF23", 0x16),
    ("AF31", 0x1A), ("AF32", 0x1C), ("AF33", 0x1E),
    ("AF41", 0x22), ("AF42", 0x24), ("AF43", 0x26),
    ("EF", 0x2E),
)


def class_to_dscp(name: str) -> int:
    """The first class whose name starts `name` (case-blind): iptables
    compares only the class name's length, so "CS7foo" is CS7."""
    for cls, value in DS_CLASSES:
        if name[:len(cls)].lower() == cls.lower():
            return value
    raise fail(f"Invalid DSCP value `{name}'")


@dataclass
class DscpData:
    dscp: int = 0


class Dscp(Target):
    name = "DSCP"
    table = "mangle"
    options = (
        Opt("set-dscp", ArgType.UINT8, min=0, max=DSCP_MAX, excl=("set-dscp-class",)),
        Opt("set-dscp-class", ArgType.STRING, excl=("set-dscp",)),
    )

    def new_data(self) -> DscpData:
        return DscpData()

    def parse(self, call: Call) -> None:
        if call.opt.name == "set-dscp":
            call.data.dscp = call.value
        else:
            call.data.dscp = class_to_dscp(call.value if call.value is not None else "")

    def final_check(self, data: DscpData, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise fail("DSCP target: Parameter --set-dscp is required")

    def save(self, data: DscpData, ip: RuleIp) -> str:
        return f" --set-dscp 0x{data.dscp:02x}"

    def print(self, data: DscpData, ip: RuleIp, numeric: bool) -> str:
        return f" DSCP set 0x{data.dscp:02x}"

    def compile(self, data: DscpData, env: Env) -> TargetFn:
        """dscp_tg: the six DSCP bits replaced (ECN kept), checksum updated
        as ipv4_change_dsfield does; nothing when they already match."""
        from pyfw.engine.api import XT_CONTINUE
        from pyfw.ext._csum import change_dsfield

        dscp = data.dscp

        def target(pkt: Packet) -> int:
            d = pkt.data
            orig = d[1]
            if orig >> 2 != dscp:
                new = (orig & 0x03) | (dscp << 2)
                check = change_dsfield(d[10] << 8 | d[11], orig, new)
                d[1] = new
                d[10], d[11] = check >> 8, check & 0xFF
                pkt.tos = new
            return XT_CONTINUE

        return target


EXTENSIONS = [Dscp()]
