"""`pyfw daemon --nfqueue NUM [--ruleset FILE] [--socket PATH]`.

Start-up order keeps the machine untouched on any failure: the ruleset is
loaded first (a file that does not restore stops here with pyfw-restore's
message), then the host is read, the queue bound and the socket opened,
and only then are the kernel rules installed that hand packets to the
queue.  They carry a pyfw comment and are removed one by one, exactly as
added, at SIGTERM/SIGINT or on an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
from typing import Any

from pyfw.cli.main import DEFAULT_SOCKET

IPTABLES = os.environ.get("PYFW_IPTABLES", "iptables-legacy")


def kernel_rules(num: int) -> list[tuple[str, list[str]]]:
    """([table:]chain, rule-spec) of the rules (raw table unless named) that queue packets to `num`:
    NOTRACK keeps the kernel's conntrack and NAT out of traffic pyfw
    handles; lo's PREROUTING is skipped (the engine sees loopback at OUTPUT);
    the daemon's own replies carry OWN_MARK and are not queued again; packets
    whose source the engine rewrote come back at mangle POSTROUTING."""
    from pyfw.daemon.nfqueue import OWN_MARK, OWN_MASK, POST_MARK

    tag = ["-m", "comment", "--comment", f"pyfw-daemon queue {num}"]
    queue = ["-j", "NFQUEUE", "--queue-num", str(num)]
    return [
        ("PREROUTING", [*tag, "-j", "NOTRACK"]),
        ("PREROUTING", ["!", "-i", "lo", *tag, *queue]),
        ("OUTPUT", [*tag, "-j", "NOTRACK"]),
        ("OUTPUT", ["-m", "mark", "!", "--mark", f"{OWN_MARK:#x}/{OWN_MASK:#x}", *tag, *queue]),
        ("mangle:POSTROUTING", ["-m", "mark", "--mark", f"{POST_MARK:#x}/{OWN_MASK:#x}", *tag, *queue]),
    ]


class KernelRules:
    """The rules this daemon added, to remove exactly those."""

    def __init__(self, num: int) -> None:
        self.num = num
        self.added: list[tuple[str, list[str]]] = []

    def install(self) -> None:
        positions: dict[str, int] = {}
        for chain, spec in kernel_rules(self.num):
            pos = positions.get(chain, 0) + 1
            positions[chain] = pos
            table, _, name = chain.rpartition(":")
            subprocess.run([IPTABLES, "-w", "-t", table or "raw", "-I", name, str(pos), *spec],
                           check=True, capture_output=True, text=True)
            self.added.append((chain, spec))

    def remove(self) -> None:
        while self.added:
            chain, spec = self.added.pop()
            table, _, name = chain.rpartition(":")
            subprocess.run([IPTABLES, "-w", "-t", table or "raw", "-D", name, *spec],
                           capture_output=True, text=True)


def _log(text: str) -> None:
    sys.stderr.write(f"pyfw daemon: {text}\n")
    sys.stderr.flush()


def _load_ruleset(path: str | None) -> Any:
    """The ruleset in FILE as pyfw-restore reads it; (None, message, rc) on failure."""
    from pyfw.cli.main import _format_error
    from pyfw.errors import PyfwError
    from pyfw.ruleset.model import Ruleset
    from pyfw.ruleset.restore import RestoreOptions, restore

    if path is None:
        return Ruleset(), None, 0
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        return None, f"Can't open {path}: {exc.strerror}\n", 1
    try:
        result = restore(Ruleset(), text, RestoreOptions(src_file=path), program="pyfw-restore")
    except PyfwError as exc:
        rc, err = _format_error(exc, "pyfw-restore")
        return None, err, rc
    return result.ruleset, None, 0


def _reload(path: str | None, live: Any) -> None:
    """SIGHUP: FILE replaces the live tables as pyfw-restore would (the
    connection table stays); a file that does not load changes nothing."""
    if path is None:
        _log("reload: no ruleset file to reload")
        return
    ruleset, message, _ = _load_ruleset(path)
    if ruleset is None:
        _log(f"reload of {path} failed, the live ruleset is unchanged: {message.strip()}")
        return
    live.save(None, ruleset)
    _log(f"reloaded {path}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="pyfw daemon")
    ap.add_argument("--nfqueue", type=int, required=True, metavar="NUM")
    ap.add_argument("--ruleset", metavar="FILE")
    ap.add_argument("--socket", default=os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET, metavar="PATH")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="N packet processes on queues NUM..NUM+N-1 (pyfw.daemon.workers)")
    ap.add_argument("--outside", action="append", metavar="IF",
                    help="an interface facing the outside, for --workers steering (default: the default route's)")
    args = ap.parse_args(argv)
    if not 0 <= args.nfqueue <= 65535:
        _log(f"queue number {args.nfqueue} out of range 0-65535")
        return 2

    ruleset, message, rc = _load_ruleset(args.ruleset)
    if ruleset is None:
        sys.stderr.write(message)
        return rc

    from pyfw.daemon.control import ControlServer, LiveStore
    from pyfw.daemon.hostinfo import read_host
    from pyfw.daemon.nfqueue import Adapter, LiveEngine

    try:
        host = read_host()
    except Exception as exc:
        _log(f"cannot read the host's interfaces and routes: {exc}")
        return 1
    if args.workers != 1:
        if not 2 <= args.workers <= 256:
            _log(f"--workers {args.workers} out of range 1-256")
            return 2
        from pyfw.daemon import workers

        return workers.run(args, ruleset, host, _log, _reload)
    engine = LiveEngine(ruleset, host)
    live = LiveStore(engine.ruleset, engine.load)
    stopping = False

    reload = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def hup(signum: int, frame: Any) -> None:
        nonlocal reload
        reload = True

    adapter = server = None
    rules = KernelRules(args.nfqueue)
    try:
        try:
            adapter = Adapter(args.nfqueue, engine)
        except Exception as exc:
            _log(f"cannot bind NFQUEUE {args.nfqueue}: {exc}")
            return 1
        if os.environ.get("PYFW_DAEMON_DEBUG"):
            adapter.debug = _log
        try:
            server = ControlServer(args.socket, live)
        except OSError as exc:
            _log(f"cannot listen on {args.socket}: {exc}")
            return 1
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        try:
            rules.install()
        except subprocess.CalledProcessError as exc:
            _log(f"cannot install the kernel rules: {(exc.stderr or '').strip()}")
            return 1
        _log(f"started: queue {args.nfqueue}, socket {args.socket}, ruleset {args.ruleset or '(empty)'}")
        waitables: list[Any] = [adapter, server]
        while not stopping:
            try:
                ready, _, _ = select.select(waitables, [], [], 1.0)
            except InterruptedError:
                continue
            if reload:
                reload = False
                _reload(args.ruleset, live)
            if adapter in ready:
                adapter.run_ready()
            if server in ready:
                server.handle_one()
        counts = ", ".join(f"{k} {v}" for k, v in sorted({**adapter.stats, **engine.stats}.items()))
        _log(f"stopped ({counts or 'no packets'})")
        return 0
    finally:
        rules.remove()
        if server is not None:
            server.close()
        if adapter is not None:
            with contextlib.suppress(Exception):
                adapter.close()
