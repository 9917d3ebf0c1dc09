"""`pyfw daemon --nfqueue NUM [--ruleset FILE] [--socket PATH] [--fail-open] [--ipv6 drop|accept]`
(and `--tap --host HOST.toml`, pyfw.tap.main).

Start-up order keeps the machine untouched on any failure: the ruleset is
loaded first (a file that does not restore stops here with pyfw-restore's
message and exit status), then the host is read, the queue bound and the
socket opened, and only then are the kernel rules installed that hand
packets to the queue (pyfw.daemon.steering).  They carry a pyfw comment
and are removed one by one, exactly as added, at SIGTERM/SIGINT or on an
error.  After a SIGKILL they stay, holding the fail mode; the next start
on the same queue takes them over, `--cleanup` removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from pyfw.cli.main import DEFAULT_SOCKET
from pyfw.daemon import localsrc
from pyfw.daemon.logsink import DEV_LOG, LogSink
from pyfw.daemon.notify import notify
from pyfw.daemon.steering import KernelRules, Steering, owner_alive, remove_rules, stale_rules

_sink: LogSink | None = None

def _log(text: str, error: bool = False) -> None:
    """One line about the daemon (syslog and stderr once the sink is up)."""
    if _sink is None:
        sys.stderr.write(f"pyfw daemon: {text}\n")
        sys.stderr.flush()
    elif error:
        _sink.error(text)
    else:
        _sink.event(text)


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
    notify("RELOADING=1")
    try:
        _reload_file(path, live)
    finally:
        notify("READY=1")


def _reload_file(path: str | None, live: Any) -> None:
    if path is None:
        _log("reload: no ruleset file to reload")
        return
    ruleset, message, _ = _load_ruleset(path)
    if ruleset is None:
        one_line = " / ".join(part for part in message.splitlines() if part.strip())
        _log(f"reload of {path} failed, the live ruleset is unchanged: {one_line}", error=True)
        return
    live.save(None, ruleset)
    _log(f"reloaded {path}")


def _cleanup(num: int | None) -> int:
    """`--cleanup`: remove the kernel rules of daemons that are gone (and
    put back the accept_local one of them changed, unless another running
    daemon still needs it)."""
    stale = stale_rules(num)
    alive = [r for r in stale if owner_alive(r.owner)]
    dead = [r for r in stale if not owner_alive(r.owner)]
    memo = localsrc.original(r.comment for r in dead) if any(
        localsrc.memo_value(r.comment) is not None for r in dead) else None
    gone = remove_rules(dead)
    if memo is not None and not any(localsrc.memo_value(r.comment) is not None
                                    for r in stale_rules(None) if owner_alive(r.owner)):
        localsrc.write_sysctl(localsrc.ACCEPT_LOCAL, memo)
    which = f"queue {num}" if num is not None else "any queue"
    _log(f"cleanup: removed {gone} kernel rule(s) of {which}"
         + (f"; {len(alive)} of running daemons left alone" if alive else ""))
    return 0 if gone == len(stale) - len(alive) else 1


def _parser() -> argparse.ArgumentParser:
    from pyfw.tap.main import add_arguments

    ap = argparse.ArgumentParser(prog="pyfw daemon")
    ap.add_argument("--nfqueue", type=int, metavar="NUM")
    ap.add_argument("--tap", action="store_true", help="be the gateway on TAP devices (--host HOST.toml)")
    ap.add_argument("--ruleset", metavar="FILE")
    ap.add_argument("--socket", default=os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET, metavar="PATH")
    ap.add_argument("--workers", type=int, default=1, metavar="N",
                    help="N packet processes on queues NUM..NUM+N-1 (pyfw.daemon.workers)")
    ap.add_argument("--outside", action="append", metavar="IF",
                    help="an interface facing the outside, for --workers steering (default: the default route's)")
    ap.add_argument("--fail-open", action="store_true",
                    help="let packets through while no daemon reads the queue or it is full (default: drop)")
    ap.add_argument("--ipv6", choices=("drop", "accept"), default="drop",
                    help="forwarded IPv6: dropped and counted (default) or left to the kernel")
    ap.add_argument("--nat-two-pass", action="store_true",
                    help="queue a packet whose source NAT changes twice (rewritten at POSTROUTING) "
                         "instead of setting accept_local while the daemon runs (pyfw.daemon.localsrc)")
    ap.add_argument("--queue-len", type=int, default=None, metavar="N",
                    help="packets the kernel holds for the daemon before the fail mode applies")
    ap.add_argument("--conntrack-max", type=int, default=None, metavar="N",
                    help="the engine's connection table size (default: the kernel's nf_conntrack_max)")
    ap.add_argument("--syslog", default=os.environ.get("PYFW_SYSLOG", DEV_LOG), metavar="PATH|none",
                    help=f"the syslog socket (default {DEV_LOG}, used when present)")
    ap.add_argument("--cleanup", action="store_true",
                    help="remove the kernel rules a killed daemon left (of queue NUM, or of all) and exit")
    ap.add_argument("--stats", action="store_true",
                    help="print the counters of the daemon listening on --socket and exit")
    add_arguments(ap)
    return ap


def main(argv: list[str]) -> int:
    global _sink
    args = _parser().parse_args(argv)
    if args.cleanup:
        return _cleanup(args.nfqueue)
    if args.stats:
        return _print_stats(args.socket)
    if args.tap:
        if args.nfqueue is not None:
            _log("--tap and --nfqueue exclude each other")
            return 2
        from pyfw.tap.main import run

        return run(args)
    if args.nfqueue is None:
        _log("--nfqueue NUM or --tap is required")
        return 2
    if not 0 <= args.nfqueue <= 65535:
        _log(f"queue number {args.nfqueue} out of range 0-65535")
        return 2

    ruleset, message, rc = _load_ruleset(args.ruleset)
    if ruleset is None:
        sys.stderr.write(message)
        return rc

    from pyfw.daemon.control import ControlServer, LiveStore
    from pyfw.daemon.ctops import CtSource
    from pyfw.daemon.hostinfo import read_host
    from pyfw.daemon.nfqueue import QUEUE_LEN, Adapter, LiveEngine, settle_gc

    _sink = sink = LogSink(args.syslog)
    try:
        overrides = {} if args.conntrack_max is None else {"net.netfilter.nf_conntrack_max": args.conntrack_max}
        accept_local = _user_accept_local(args)
        if accept_local is not None:
            overrides[localsrc.ACCEPT_LOCAL] = accept_local  # the engine judges by the user's value
        host = read_host(overrides)
    except Exception as exc:
        _log(f"cannot read the host's interfaces and routes: {exc}", error=True)
        return 1
    if args.workers != 1:
        if not 2 <= args.workers <= 256:
            _log(f"--workers {args.workers} out of range 1-256")
            return 2
        from pyfw.daemon import workers

        return workers.run(args, ruleset, host, _log, _reload, accept_local=accept_local)
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
    one_pass = accept_local is not None and accept_local != 1
    steering = Steering(args.nfqueue, fail_open=args.fail_open, ipv6=args.ipv6,
                        accept_local=accept_local if one_pass else None)
    rules = KernelRules(steering)
    set_local = False
    try:
        try:
            adapter = Adapter(args.nfqueue, engine, fail_open=args.fail_open,
                              queue_len=args.queue_len or QUEUE_LEN)
        except Exception as exc:
            _log(f"cannot bind NFQUEUE {args.nfqueue}: {exc}", error=True)
            return 1
        adapter.sink = sink
        for problem in adapter.problems:
            _log(f"queue {args.nfqueue}: {problem}", error=True)
        if os.environ.get("PYFW_DAEMON_DEBUG"):
            adapter.debug = _log
        try:
            server = ControlServer(args.socket, live, CtSource(lambda: [engine.ct], time.monotonic))
        except OSError as exc:
            _log(f"cannot listen on {args.socket}: {exc}", error=True)
            return 1
        server.stats = lambda: _count_dict(adapter, engine, rules, sink)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        try:
            rules.install()
        except subprocess.CalledProcessError as exc:
            _log(f"cannot install the kernel rules: {(exc.stderr or '').strip()}", error=True)
            return 1
        if accept_local is not None:
            # the memo rule is in: from now on a SIGKILL leaves what --cleanup needs
            set_local = one_pass and localsrc.write_sysctl(localsrc.ACCEPT_LOCAL, 1)
            if one_pass and not set_local:
                _log("cannot set accept_local: source NAT takes the second pass", error=True)
            if accept_local == 1 or set_local:
                adapter.local_source = localsrc.LocalSource()
        # ours are in front now: the rules a killed daemon left can go
        stale = stale_rules(args.nfqueue, keep_owner=steering.owner)
        took = remove_rules(stale)
        _log(f"started: queue {args.nfqueue}, socket {args.socket}, ruleset {args.ruleset or '(empty)'}, "
             f"{'fail-open' if args.fail_open else 'fail-closed'}, forwarded IPv6 {args.ipv6}, "
             f"source NAT in {'one pass' if adapter.local_source is not None else 'two passes'}"
             + (f", took over from a stopped daemon ({took} stale kernel rules removed)" if stale else ""))
        settle_gc()
        notify("READY=1")
        watch = _watch(overrides)
        # descriptors, not objects: select would call each one's fileno() at every wakeup
        queue_fd, server_fd = adapter.fileno(), server.fileno()
        watch_fd = watch.fileno() if watch else -1
        waitables = [queue_fd, server_fd, *([watch_fd] if watch else [])]
        while not stopping:
            try:
                wait = watch.timeout(time.monotonic(), 1.0) if watch else 1.0
                ready, _, _ = select.select(waitables, [], [], wait)
            except InterruptedError:
                continue
            if reload:
                reload = False
                _reload(args.ruleset, live)
            if watch is not None:
                if watch_fd in ready:
                    watch.readable()
                new_host = _new_host(watch)
                if new_host is not None:
                    engine.set_host(new_host)
            if queue_fd in ready:
                adapter.run_ready()
            if server_fd in ready:
                server.handle_one()
        notify("STOPPING=1")
        _log(f"stopped ({_counts(adapter, engine, rules, sink)})")
        return 0
    except Exception as exc:
        _log(f"stopped on an error: {type(exc).__name__}: {exc}", error=True)
        return 1
    finally:
        if set_local and accept_local is not None:
            localsrc.write_sysctl(localsrc.ACCEPT_LOCAL, accept_local)
        rules.remove()
        if server is not None:
            server.close()
        if adapter is not None:
            with contextlib.suppress(Exception):
                adapter.close()
        _sink = None
        sink.close()


def _user_accept_local(args: Any) -> int | None:
    """accept_local as the user has it (from a killed daemon's memo if one
    changed it); None: source NAT keeps its second pass (asked so, or
    policy routing that may route by the source)."""
    if args.nat_two_pass or localsrc.policy_routing():
        return None
    return localsrc.original(r.comment for r in stale_rules(None))


def _watch(overrides: dict[str, int]) -> Any:
    """The netlink watch keeping the host current (None if it cannot be had)."""
    from pyfw.daemon.hostinfo import read_host
    from pyfw.daemon.hostwatch import HostWatch

    try:
        return HostWatch(lambda: read_host(overrides))
    except OSError as exc:
        _log(f"no netlink events, the host is read only at start: {exc}", error=True)
        return None


def _new_host(watch: Any) -> Any:
    """The host read again once its events settled (None: not now, or it failed)."""
    try:
        host = watch.poll()
    except Exception as exc:
        _log(f"cannot read the host again after a change, keeping the old view: {exc}", error=True)
        return None
    if host is not None:
        _log("host changed: interfaces, addresses and routes read again")
    return host


def _print_stats(path: str) -> int:
    """`pyfw daemon --stats`: one "name value" line per counter."""
    from pyfw.daemon.control import request_stats

    try:
        stats = request_stats(path)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"pyfw daemon: cannot reach the pyfw daemon at {path}: {exc}\n")
        return 1
    sys.stdout.write("".join(f"{k} {v}\n" for k, v in sorted(stats.items())))
    return 0


def _count_dict(adapter: Any, engine: Any, rules: KernelRules, sink: LogSink) -> dict[str, int]:
    """The daemon's counters: verdicts, the engine's drops by reason, the
    connection table's drops, forwarded IPv6 dropped, the kernel's queue drops."""
    from pyfw.daemon.steering import queue_counters

    ct = {f"conntrack-{k}": v for k, v in engine.ct.stat.as_dict().items() if v and k in ("drop", "early_drop")}
    counts = {**adapter.stats, **engine.stats, **sink.stats, **ct}
    v6 = rules.ipv6_dropped()
    if v6 is not None:
        counts["ipv6-dropped"] = v6
    counts.update({k: v for k, v in queue_counters([rules.steering.num]).items() if v})
    return counts


def _counts(adapter: Any, engine: Any, rules: KernelRules, sink: LogSink) -> str:
    counts = _count_dict(adapter, engine, rules, sink)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no packets"
