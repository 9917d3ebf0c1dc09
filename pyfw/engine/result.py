"""What the engine returns for one frame: its verdict and path, the frames
it sends (`Emitted`), the rule trace.  One is made per frame (by the
engine, its fast path and its new-flow path), in this compiled module of
their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from pyfw.engine.tables import TraceStep


# (init=False and a written-out __init__: mypyc compiles it, the one
# dataclasses would generate runs interpreted; same fields, and defaults
# for all: copy and deepcopy make a compiled one through cls.__new__(cls),
# which runs it)
@mypyc_attr(allow_interpreted_subclasses=True)  # pyfw.tap's TapEmitted adds the vnet header
@dataclass(slots=True, init=False)
class Emitted:
    iface: str
    frame: bytes

    def __init__(self, iface: str = "", frame: bytes = b"") -> None:
        self.iface = iface
        self.frame = frame


@dataclass(slots=True, init=False)
class Result:
    """What became of one input frame (slots: one is made per frame)."""

    verdict: str | None
    path: str
    out: str | None
    emitted: list[Emitted]
    trace: list[TraceStep]
    reason: str | None  # why a malformed frame was dropped

    def __init__(self, verdict: str | None = None, path: str = "", out: str | None = None,
                 emitted: list[Emitted] | None = None, trace: list[TraceStep] | None = None,
                 reason: str | None = None) -> None:
        self.verdict = verdict
        self.path = path
        self.out = out
        self.emitted = [] if emitted is None else emitted
        self.trace = [] if trace is None else trace
        self.reason = reason
