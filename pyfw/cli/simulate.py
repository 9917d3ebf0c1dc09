"""`pyfw simulate`: a pcap through a ruleset on a described host, offline
(contract: shared/contracts/simulate.md).  This is the only I/O around the
engine: read the pcap and the files, write the outputs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_RULESET = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with a clear message
        self.print_usage(sys.stderr)
        sys.stderr.write(f"pyfw simulate: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyfw simulate", description="Run a pcap through a ruleset on a described host.")
    p.add_argument("--ruleset", required=True, help="rules in iptables-save format")
    p.add_argument("--host", required=True, help="HOST.toml")
    p.add_argument("--pcap", required=True, help="input pcap or pcapng (Ethernet)")
    p.add_argument("--iface", required=True, help="interface the frames arrive on")
    p.add_argument("--out-dir", help="write DIR/<iface>.pcap for each egress interface")
    p.add_argument("--counters", help="write the counters as iptables-save -c text")
    p.add_argument("--conntrack", help="write the connection table as conntrack -L prints it")
    p.add_argument("--log", help="write the LOG target's lines")
    p.add_argument("--json", action="store_true", help="one JSON object per input frame on stdout")
    p.add_argument("--trace", action="store_true", help="with --json: the rules each frame passed")
    return p


def load_ruleset(path: str) -> Any:
    """The ruleset as pyfw-restore reads it; exits 1 with its message."""
    from pyfw.cli.main import _format_error
    from pyfw.errors import PyfwError
    from pyfw.ruleset.model import Ruleset
    from pyfw.ruleset.restore import RestoreOptions, restore

    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        sys.stderr.write(f"pyfw simulate: cannot read ruleset {path}: {exc.strerror}\n")
        raise SystemExit(EXIT_USAGE) from None
    try:
        return restore(Ruleset(), text, RestoreOptions(counters=True, src_file=path)).ruleset
    except PyfwError as exc:
        _rc, err = _format_error(exc, "pyfw-restore")
        sys.stderr.write(err)
        raise SystemExit(EXIT_RULESET) from None


def _replay(engine: Any, frames: Any, args: argparse.Namespace, out_dir: Path | None,
            writers: dict[str, Any]) -> None:
    """The frames through the engine, in order; what each interface sent to
    its pcap, one JSON line per frame.  Everything the loop touches is a
    local: this runs once per frame of captures of millions."""
    from pyfw.io.pcap import PcapWriter

    receive, send = engine.receive, engine.send
    default_iface = args.iface
    want_json = bool(args.json)
    want_trace = bool(args.json and args.trace)
    write_out = out_dir is not None
    get_writer = writers.get
    out = sys.stdout
    dumps = json.dumps
    index = 0
    for ts, name, frame in frames:
        index += 1
        iface = name or default_iface
        if iface == "local":
            res = send(frame[14:], ts, want_trace)
        else:
            res = receive(frame, iface, ts, want_trace)
        if write_out:
            for em in res.emitted:
                w = get_writer(em.iface)
                if w is None:
                    assert out_dir is not None
                    w = writers[em.iface] = PcapWriter(out_dir / f"{em.iface}.pcap")
                w.write(ts, em.frame)
        if want_json:
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
            out.write(dumps(obj) + "\n")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import gc

    gc.disable()
    ruleset = load_ruleset(args.ruleset)
    from pyfw.engine.host import HostError, load_host

    try:
        host = load_host(args.host)
    except HostError as exc:
        sys.stderr.write(f"pyfw simulate: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"pyfw simulate: {args.host}: {exc.strerror}\n")
        return EXIT_USAGE
    from pyfw.engine.engine import Engine
    from pyfw.io.pcap import PcapError, read_frames

    try:
        engine = Engine(ruleset, host)
    except NotImplementedError as exc:
        sys.stderr.write(f"pyfw simulate: {exc}\n")
        return EXIT_RULESET
    writers: dict[str, Any] = {}
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _replay(engine, read_frames(args.pcap), args, out_dir, writers)
    except PcapError as exc:
        sys.stderr.write(f"pyfw simulate: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        sys.stderr.write(f"pyfw simulate: cannot read {args.pcap}: {exc.strerror}\n")
        return EXIT_USAGE
    finally:
        for w in writers.values():
            w.close()
    if args.counters:
        from pyfw.ruleset.format import save_table

        text = "".join(save_table(t, counters=True, program="pyfw-save") for t in ruleset.ordered_tables())
        Path(args.counters).write_text(text)
    if args.conntrack:
        Path(args.conntrack).write_text(engine.ct.format(engine.now))
    if args.log:
        Path(args.log).write_text("".join(f"[{ts:12.6f}] {line}\n" for ts, line in engine.logs))
    return EXIT_OK
