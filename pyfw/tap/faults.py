"""Seeded fault injection on the frames the gateway reads (this kernel has
no netem): each frame is lost, duplicated or held back and sent after a
later one, with the given probabilities, from one random.Random(seed) so a
failing run can be repeated."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

HOLD = 0.02  # a held frame goes at the latest after this long (s)


@dataclass
class Faults:
    seed: int = 0
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.held: list[tuple[float, str, bytes]] = []

    @property
    def active(self) -> bool:
        return bool(self.loss or self.dup or self.reorder)

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def ingress(self, iface: str, buf: bytes, now: float) -> list[tuple[str, bytes]]:
        """What reaches the engine instead of this one frame."""
        rng = self.rng
        if rng.random() < self.loss:
            self._count("fault_lost")
            return self.due(now)
        if not self.held and rng.random() < self.reorder:
            self._count("fault_reordered")
            self.held.append((now + HOLD, iface, buf))
            return []
        out = [(iface, buf)]
        if rng.random() < self.dup:
            self._count("fault_duplicated")
            out.append((iface, buf))
        out.extend((i, b) for _, i, b in self.held)  # the held frame comes after this one
        self.held.clear()
        return out

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """Held frames whose time is up."""
        if not self.held or self.held[0][0] > now:
            return []
        out = [(i, b) for _, i, b in self.held]
        self.held.clear()
        return out

    def next_deadline(self) -> float | None:
        return self.held[0][0] if self.held else None
