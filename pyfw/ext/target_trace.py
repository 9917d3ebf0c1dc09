"""TRACE: mark the packet so the kernel logs every rule it traverses.

No options; the kernel registers it for the raw table only (EINVAL
elsewhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.ext.base import Target

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet



class Trace(Target):
    name = "TRACE"
    table = "raw"

    def compile(self, data: object, env: Env) -> TargetFn:
        """trace_tg: set nf_trace; the engine logs each rule the packet
        then hits (pyfw.engine.logtext.format_trace)."""
        from pyfw.engine.api import XT_CONTINUE

        def target(pkt: Packet) -> int:
            pkt.trace = True
            return XT_CONTINUE

        return target


EXTENSIONS = [Trace()]
