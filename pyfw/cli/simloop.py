"""The per-frame loop of `pyfw simulate` (pyfw.cli.simulate does the
arguments and the files around it).  A module of its own so that mypyc
compiles it with the engine and the pcap reader and writer
(pyfw._native.NATIVE_MODULES): the loop runs once per frame of captures of
millions, and compiled its calls into them are direct."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from pyfw.engine.engine import Engine, Result
from pyfw.io.pcap import PcapReader, PcapWriter

__all__ = ["replay"]


def replay(engine: Engine, reader: PcapReader, default_iface: str, want_json: bool, want_trace: bool,
           out_dir: Path | None, writers: dict[str, PcapWriter], out: TextIO) -> None:
    """The frames through the engine, in order: what each interface sent
    to ``out_dir/<iface>.pcap`` (the writers made on the way are left in
    `writers`, for the caller to close), one JSON line per frame on `out`
    with `want_json`, the rules each passed with `want_trace`."""
    index = 0
    for ts, name, frame in reader:
        index += 1
        iface = name or default_iface
        res: Result
        if iface == "local":
            res = engine.send(frame[14:], ts, want_trace)
        else:
            res = engine.receive(frame, iface, ts, want_trace)
        if out_dir is not None:
            for em in res.emitted:
                w = writers.get(em.iface)
                if w is None:
                    w = writers[em.iface] = PcapWriter(out_dir / f"{em.iface}.pcap")
                w.write(ts, em.frame)
        if want_json:
            out.write(json.dumps(_record(index, iface, res, want_trace)) + "\n")


def _record(index: int, iface: str, res: Result, want_trace: bool) -> dict[str, Any]:
    """A frame's JSON object (its keys in this order)."""
    obj: dict[str, Any] = {
        "index": index, "in": iface, "verdict": res.verdict, "path": res.path,
        "out": res.out, "emitted": len(res.emitted),
    }
    if res.reason:
        obj["reason"] = res.reason
    if want_trace:
        obj["trace"] = [s.label() for s in res.trace]
        obj["trace_src"] = [f"{s.src[0]}:{s.src[1]}" if s.src[0] is not None else None
                            for s in res.trace]
    return obj
