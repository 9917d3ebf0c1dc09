"""`pyfw simulate`: a pcap through a ruleset on a described host, offline
(contract: shared/contracts/simulate.md).  This is the only I/O around the
engine: read the pcap and the files, write the outputs."""

from __future__ import annotations

import argparse
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
    from pyfw.cli.simloop import replay
    from pyfw.engine.engine import Engine
    from pyfw.io.pcap import PcapError, PcapReader

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
        with PcapReader(args.pcap) as reader:
            replay(engine, reader, args.iface, bool(args.json), bool(args.json and args.trace), out_dir,
                   writers, sys.stdout)
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
