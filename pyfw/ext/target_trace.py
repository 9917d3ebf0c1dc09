"""TRACE: mark the packet so the kernel logs every rule it traverses.

No options; the kernel registers it for the raw table only (EINVAL
elsewhere).
"""

from __future__ import annotations

from pyfw.ext.base import Target


class Trace(Target):
    name = "TRACE"
    table = "raw"


EXTENSIONS = [Trace()]
