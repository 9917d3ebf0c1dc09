"""A rule's or a policy's packet and byte counters.

In a module of their own so that mypyc compiles them (pyfw/_native.py):
every chain walk and every replayed established packet adds to them, and
a compiled class's fields are read and written natively by the compiled
walks, not through generic attribute lookups.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # (slots: the chain walks count in them)
class Counters:
    packets: int = 0
    bytes: int = 0

    def zero(self) -> None:
        self.packets = 0
        self.bytes = 0
