"""`pyfw daemon --nfqueue NUM --workers N`: N packet processes and one parent.

The parent owns what is shared: the control socket, the signals, the
kernel rules (pyfw.daemon.steer sends every connection to one worker) and
the authoritative copy of the ruleset.  Worker k binds queue NUM+k and runs
its own LiveEngine, so it owns the connections steered to it.  They talk
over one pipe each, the parent asking and the worker answering:

- `hold`: the worker answers with its rule counters and then serves only
  the pipe until `go`.  The parent holds every worker around each control
  command, so a command (and a restore) acts between two packets of every
  worker at once, as in the single process: the packets wait in the
  kernel's queues meanwhile.
- `apply` (while held): a new ruleset, swapped in by all before any goes on.
- `call`: a function `module:name(worker, *args)` run in each worker, one
  answer per worker (the connection table's union is built from these,
  pyfw.daemon.ctworkers); a worker's event socket carries `conntrack -E`
  lines to the parent.
- `stop`: the worker answers with its statistics, unbinds and exits.

Counters: each worker counts its own packets.  The union is the per-rule
sum, rules identified by their position (table, chain, index) in a
ruleset all workers share; a new ruleset goes to worker 0 with the counters
the parent holds and to the others zeroed, so the sum stays the total.
The connection table's limit (nf_conntrack_max, --conntrack-max) is the
gateway's: each worker holds up to its N-th part.

A worker that dies is started again with the ruleset and the counters it
had at the last command (its connections are gone, as after a flush of its
share); one that keeps dying stops the daemon.  A parent that dies leaves
its workers a closed pipe, on which they exit.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import importlib
import os
import pickle
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from pyfw.ruleset.model import Ruleset

ANSWER_TIMEOUT = 30.0
RESTART_WINDOW = 60.0  # more than MAX_RESTARTS worker deaths in this many seconds stop the daemon
MAX_RESTARTS = 5


# ------------------------------------------------------------------ counters
def counter_shape(ruleset: Ruleset) -> list[tuple[str, str, int]]:
    """(table, chain, rules) in order: two rulesets of one shape align rule by rule."""
    return [(t.name, c.name, len(c.rules)) for t in ruleset.tables.values() for c in t.chains.values()]


def dump_counters(ruleset: Ruleset) -> tuple[list[tuple[str, str, int]], list[int]]:
    """The shape of the ruleset and its counters flat: per chain the
    policy's packets and bytes, then each rule's."""
    flat: list[int] = []
    for t in ruleset.tables.values():
        for c in t.chains.values():
            flat += (c.counters.packets, c.counters.bytes)
            for r in c.rules:
                flat += (r.counters.packets, r.counters.bytes)
    return counter_shape(ruleset), flat


def load_counters(ruleset: Ruleset, flat: list[int]) -> None:
    it = iter(flat)
    for t in ruleset.tables.values():
        for c in t.chains.values():
            c.counters.packets, c.counters.bytes = next(it), next(it)
            for r in c.rules:
                r.counters.packets, r.counters.bytes = next(it), next(it)


def zero_counters(ruleset: Ruleset) -> None:
    for t in ruleset.tables.values():
        for c in t.chains.values():
            c.counters.zero()
            for r in c.rules:
                r.counters.zero()


# ------------------------------------------------------------------ worker side
def _by_fields(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    """A dataclass instance pickled as the call that makes it again."""
    return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init)


def _picklable_hosts() -> None:
    """A Host goes to the workers over their pipes (set_host).  Compiled
    (mypyc), its classes have no __dict__ and their frozen dataclasses
    refuse the setattr of pickle's default way: each is pickled as the
    constructor call that makes it again (Host's caches rebuilt by its
    __post_init__), the same compiled or not."""
    from pyfw.engine import host as host_module

    for cls in vars(host_module).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == host_module.__name__:
            copyreg.pickle(cls, _by_fields)


_picklable_hosts()


def set_host(worker: Worker, host: Any) -> None:
    """The host read again after a netlink event (a `call` function takes the worker)."""
    engine: Any = worker.engine
    engine.set_host(host)


def _resolve(name: str) -> Callable[..., Any]:
    module, _, func = name.rpartition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module or __name__), func)
    return fn


class Worker:
    """The process behind queue num+k."""

    def __init__(self, k: int, num: int, conn: Connection, ruleset: Ruleset, host: Any, debug: Any,
                 opts: dict[str, Any] | None = None, events: socket.socket | None = None) -> None:
        from pyfw.daemon.logsink import LogSink
        from pyfw.daemon.nfqueue import QUEUE_LEN, Adapter, LiveEngine
        from pyfw.daemon.steer import post_mark

        opts = opts or {}

        self.k = k
        self.conn = conn
        self.events = events  # datagrams to the parent: `conntrack -E` lines (pyfw.daemon.ctworkers)
        if events is not None:
            events.setblocking(False)
        self.subs: dict[int, Any] = {}  # the -E readers' listeners on this worker's table
        self.engine = LiveEngine(ruleset, host)
        workers = int(opts.get("workers") or 1)
        ct_max = self.engine.ct.cfg.max
        if workers > 1 and ct_max > 0:
            # nf_conntrack_max bounds the gateway, not each share of it
            self.engine.ct.set_sysctl("net.netfilter.nf_conntrack_max", -(-ct_max // workers))
        self.adapter = Adapter(num + k, self.engine, fail_open=bool(opts.get("fail_open")),
                               queue_len=opts.get("queue_len") or QUEUE_LEN)
        self.adapter.post_mark = post_mark(k)
        if opts.get("one_pass"):
            from pyfw.daemon.localsrc import LocalSource

            self.adapter.local_source = LocalSource()
        self.sink = self.adapter.sink = LogSink(opts.get("syslog"))  # LOG/NFLOG lines of this worker
        for problem in self.adapter.problems:
            self.sink.error(f"worker {k}, queue {num + k}: {problem}")
        if debug:
            self.adapter.debug = lambda text: debug(f"worker {k}: {text}")

    def stats(self) -> dict[str, int]:
        ct = {f"conntrack-{k}": v for k, v in self.engine.ct.stat.as_dict().items()
              if v and k in ("drop", "early_drop")}
        return {**self.adapter.stats, **self.engine.stats, **self.sink.stats, **ct}

    def serve(self, msg: tuple[Any, ...]) -> tuple[Any, ...]:
        """One request of the parent; its answer."""
        what = msg[0]
        if what == "hold":
            return ("held", *dump_counters(self.engine.ruleset))
        if what == "apply":
            ruleset: Ruleset = pickle.loads(msg[1])
            if self.k:
                zero_counters(ruleset)
            self.engine.load(ruleset)
            return ("ok",)
        if what == "call":
            try:
                return ("ok", _resolve(msg[1])(self, *msg[2]))
            except Exception as exc:
                return ("error", f"{type(exc).__name__}: {exc}")
        if what == "stats":
            return ("ok", self.stats())
        return ("error", f"unknown request {what!r}")

    def run(self) -> None:
        from pyfw.daemon.nfqueue import settle_gc

        settle_gc()
        waitables: list[Any] = [self.adapter, self.conn]
        while True:
            try:
                ready, _, _ = select.select(waitables, [], [], 1.0)
            except InterruptedError:
                continue
            if self.adapter in ready:
                self.adapter.run_ready()
            if self.conn in ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    return  # the parent is gone
                if msg[0] == "stop":
                    self.conn.send(("ok", self.stats()))
                    return
                if msg[0] == "go":
                    continue  # the release of a hold this worker never got
                self.conn.send(self.serve(msg))
                if msg[0] == "hold":
                    if not self._held():
                        return

    def _held(self) -> bool:
        """Serve the pipe only, until `go` (False: the parent is gone or stops us)."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return False
            if msg[0] == "go":
                return True
            if msg[0] == "stop":
                self.conn.send(("ok", self.stats()))
                return False
            self.conn.send(self.serve(msg))


def _worker_main(k: int, num: int, conn: Connection, ruleset: Ruleset, host: Any, debug: bool,
                 zero: bool, parent_ends: list[Any], opts: dict[str, Any] | None = None,
                 events: socket.socket | None = None) -> None:
    # the parent's ends of the pipes (and its control socket) came along
    # with the fork: without closing them a worker would not see its parent go
    for end in parent_ends:
        end.close()
    if zero:
        zero_counters(ruleset)
    # the parent stops the workers; a signal to the whole group must not
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    log = _log_line if debug else None
    try:
        worker = Worker(k, num, conn, ruleset, host, log, opts, events)
    except Exception as exc:
        conn.send(("error", f"cannot bind NFQUEUE {num + k}: {exc}"))
        return
    conn.send(("ready",))
    try:
        worker.run()
    finally:
        with contextlib.suppress(Exception):
            worker.adapter.close()


def _log_line(text: str) -> None:
    import sys

    sys.stderr.write(f"pyfw daemon: {text}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------ parent side
class WorkerDied(Exception):
    pass


class WorkerPool:
    """The parent's handle on its workers."""

    def __init__(self, num: int, n: int, ruleset: Ruleset, host: Any, debug: bool = False,
                 opts: dict[str, Any] | None = None) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("fork")
        self.num = num
        self.host = host
        self.debug = debug
        self.conns: list[Connection] = []
        self.events: list[socket.socket] = []  # each worker's event datagrams (conntrack -E)
        self.procs: list[Any] = []
        # each worker's counters as of the last hold or apply, for a respawn
        self.last: list[tuple[list[tuple[str, str, int]], list[int]] | None] = [None] * n
        self.close_in_child: list[Any] = []  # the parent's sockets a worker must not keep open
        self.held_now = False
        self.opts = opts  # the daemon's options a worker uses (fail mode, queue length, syslog)
        for k in range(n):
            self._spawn(k, ruleset, zero=k > 0)
        try:
            self._ready(range(n))
        except (OSError, WorkerDied):
            self.stop()
            raise

    def _spawn(self, k: int, ruleset: Ruleset, zero: bool) -> None:
        parent, child = self.ctx.Pipe()
        ev_parent, ev_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        inherited = [*self.conns, *self.events, parent, ev_parent, *self.close_in_child]
        p = self.ctx.Process(target=_worker_main, name=f"pyfw-worker-{k}", daemon=True,
                             args=(k, self.num, child, ruleset, self.host, self.debug, zero, inherited, self.opts,
                                   ev_child))
        p.start()
        child.close()
        ev_child.close()
        if k < len(self.conns):
            self.conns[k], self.events[k], self.procs[k] = parent, ev_parent, p
        else:
            self.conns.append(parent)
            self.events.append(ev_parent)
            self.procs.append(p)

    def _ready(self, which: Iterable[int]) -> None:
        for k in which:
            conn = self.conns[k]
            try:
                answer = conn.recv() if conn.poll(ANSWER_TIMEOUT) else ("error", f"worker {k} did not start")
            except (EOFError, OSError):
                answer = ("error", f"worker {k} exited at start")
            if answer[0] != "ready":
                raise OSError(answer[1])

    def dead(self) -> list[int]:
        """The workers that exited (their pipe at its end)."""
        out = []
        for k, (conn, p) in enumerate(zip(self.conns, self.procs, strict=True)):
            gone = not p.is_alive()
            if not gone:
                try:
                    while conn.poll(0):
                        conn.recv()  # nothing is asked: a stray answer
                except (EOFError, OSError):
                    gone = True
            if gone:
                out.append(k)
        return out

    def respawn(self, k: int, ruleset: Ruleset) -> int:
        """A new worker k with `ruleset` and the counters k had; the exit
        status of the old one.  Its connections are gone."""
        old = self.procs[k]
        old.join(timeout=2.0)
        if old.is_alive():
            old.kill()
            old.join(timeout=5.0)
        self.conns[k].close()
        self.events[k].close()
        copy: Ruleset = pickle.loads(pickle.dumps(ruleset, protocol=pickle.HIGHEST_PROTOCOL))
        last = self.last[k]
        if last is not None and last[0] == counter_shape(copy):
            load_counters(copy, last[1])
        else:
            zero_counters(copy)
        self._spawn(k, copy, zero=False)
        self._ready([k])
        return int(old.exitcode if old.exitcode is not None else -1)

    def __len__(self) -> int:
        return len(self.conns)

    def _answers(self) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for k, conn in enumerate(self.conns):
            try:
                if not conn.poll(ANSWER_TIMEOUT):
                    raise WorkerDied(f"worker {k} does not answer")
                out.append(conn.recv())
            except (EOFError, OSError) as exc:
                raise WorkerDied(f"worker {k} is gone") from exc
        return out

    def _ask(self, *msg: Any) -> list[tuple[Any, ...]]:
        for k, conn in enumerate(self.conns):
            try:
                conn.send(msg)
            except OSError as exc:
                raise WorkerDied(f"worker {k} is gone") from exc
        return self._answers()

    @contextlib.contextmanager
    def held(self, ruleset: Ruleset) -> Iterator[None]:
        """Every worker paused between two packets; `ruleset`'s counters set
        to the sum of theirs first."""
        if self.held_now:
            yield
            return
        try:
            answers = self._ask("hold")
        except WorkerDied:
            self._release()  # the others must not wait for a `go` that never comes
            raise
        self.held_now = True
        try:
            self.last = [(a[1], a[2]) for a in answers]
            shape = counter_shape(ruleset)
            if all(a[1] == shape for a in answers):
                total = [sum(col) for col in zip(*(a[2] for a in answers), strict=True)]
                load_counters(ruleset, total)
            yield
        finally:
            self.held_now = False
            self._release()

    def _release(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("go",))

    def apply(self, ruleset: Ruleset) -> None:
        """Swap in a new ruleset in every worker (call it while held)."""
        blob = pickle.dumps(ruleset, protocol=pickle.HIGHEST_PROTOCOL)
        shape, flat = dump_counters(ruleset)
        self.last = [(shape, flat if k == 0 else [0] * len(flat)) for k in range(len(self.conns))]
        for a in self._ask("apply", blob):
            if a[0] != "ok":
                raise WorkerDied(f"a worker refused the ruleset: {a[1:]}")

    def call_one(self, k: int, func: str, *args: Any) -> Any:
        """`func(worker, *args)` in worker k; its answer."""
        try:
            self.conns[k].send(("call", func, args))
            if not self.conns[k].poll(ANSWER_TIMEOUT):
                raise WorkerDied(f"worker {k} does not answer")
            a = self.conns[k].recv()
        except (EOFError, OSError) as exc:
            raise WorkerDied(f"worker {k} is gone") from exc
        if a[0] != "ok":
            raise RuntimeError(str(a[1]))
        return a[1]

    def call(self, func: str, *args: Any) -> list[Any]:
        """`func(worker, *args)` in each worker; the answers in worker order."""
        out = []
        for a in self._ask("call", func, args):
            if a[0] != "ok":
                raise RuntimeError(str(a[1]))
            out.append(a[1])
        return out

    def stats(self) -> list[dict[str, int]]:
        return [a[1] for a in self._ask("stats")]

    def stop(self) -> list[dict[str, int]]:
        """Stop every worker; their last statistics (of those that answered)."""
        out: list[dict[str, int]] = []
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for conn in self.conns:
            with contextlib.suppress(EOFError, OSError):
                if conn.poll(5.0):
                    a = conn.recv()
                    if a[0] == "ok":
                        out.append(a[1])
        for p in self.procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=5.0)
        for conn in self.conns:
            conn.close()
        for ev in self.events:
            ev.close()
        return out


def union_stats(stats: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stats:
        for key, v in s.items():
            out[key] = out.get(key, 0) + v
    return out


# ------------------------------------------------------------------ the parent's loop
def _one_pass(args: Any, accept_local: int | None, log: Callable[..., None]) -> tuple[Any, bool]:
    """Source NAT in one pass for the workers (pyfw.daemon.localsrc): the
    memo rule keeping the user's accept_local goes in first, then the
    sysctl is set, before any worker starts; (the memo's KernelRules or
    None, whether the sysctl was set)."""
    from pyfw.daemon import localsrc
    from pyfw.daemon.steering import KernelRules, Steering

    if accept_local is None or accept_local == 1:
        return None, False
    steering = Steering(args.nfqueue, fail_open=args.fail_open, ipv6=args.ipv6, accept_local=accept_local)
    memo = KernelRules(steering, steering.memo_rules())
    try:
        memo.install()
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"cannot keep accept_local in a kernel rule, source NAT takes the second pass: {exc}", error=True)
        return None, False
    if not localsrc.write_sysctl(localsrc.ACCEPT_LOCAL, 1):
        log("cannot set accept_local: source NAT takes the second pass", error=True)
        memo.remove()
        return None, False
    return memo, True


def run(args: Any, ruleset: Ruleset, host: Any, log: Callable[..., None],
        reload: Callable[[str | None, Any], None], accept_local: int | None = None) -> int:
    """The daemon with args.workers worker processes (args as main parses them);
    `accept_local` the user's (None: source NAT takes the second pass), as
    pyfw.daemon.main read it."""
    from pyfw.daemon.control import ControlServer, LiveStore
    from pyfw.daemon.ctworkers import EventRelay, merge
    from pyfw.daemon.steer import read_topology, worker_steering
    from pyfw.daemon.steering import remove_rules, stale_rules

    n = args.workers
    if args.nfqueue + n - 1 > 65535:
        log(f"queues {args.nfqueue}-{args.nfqueue + n - 1} out of range 0-65535", error=True)
        return 2
    try:
        topo = read_topology(args.outside or ())
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        log(f"cannot steer to workers: {exc}", error=True)
        return 1
    for dev in topo.outside:
        try:
            socket.if_nametoindex(dev)
        except OSError:
            log(f"outside interface {dev} does not exist (yet): its packets are steered once it does", error=True)
    last = args.nfqueue + n - 1
    rules = worker_steering(args.nfqueue, n, topo, args.fail_open, args.ipv6)
    steering = rules.steering
    memo, set_local = _one_pass(args, accept_local, log)
    opts = {"fail_open": args.fail_open, "queue_len": args.queue_len, "syslog": args.syslog, "workers": n,
            "one_pass": accept_local == 1 or set_local}

    def put_back() -> None:
        """accept_local as the user had it, then its memo rule goes."""
        from pyfw.daemon import localsrc

        if set_local and accept_local is not None:
            localsrc.write_sysctl(localsrc.ACCEPT_LOCAL, accept_local)
        if memo is not None:
            memo.remove()

    try:
        pool = WorkerPool(args.nfqueue, n, ruleset, host, debug=bool(os.environ.get("PYFW_DAEMON_DEBUG")), opts=opts)
    except (OSError, WorkerDied) as exc:
        log(str(exc), error=True)
        put_back()
        return 1
    restarts: list[float] = []
    generation = 0

    def resteer() -> None:
        """New routes may move the outside or add inside prefixes: the new
        steering goes in front of the old, then the old goes."""
        nonlocal rules, topo, generation
        try:
            new_topo = read_topology(args.outside or ())
        except (ValueError, OSError, subprocess.CalledProcessError) as exc:
            log(f"cannot steer by the new routes, keeping the old steering: {exc}", error=True)
            return
        if new_topo == topo:
            return
        generation += 1
        new_rules = worker_steering(args.nfqueue, n, new_topo, args.fail_open, args.ipv6,
                                    generation=generation, owner=steering.owner)
        try:
            new_rules.install()
        except (subprocess.CalledProcessError, OSError) as exc:
            log(f"cannot install the new steering, keeping the old: {exc}", error=True)
            return
        rules.remove()
        rules, topo = new_rules, new_topo
        log(f"steering follows the routes: outside {','.join(topo.outside)}, "
            f"inside {','.join(topo.inside_prefixes) or '(none)'}")

    def respawn_dead() -> bool:
        """Replace the workers that died; False when they keep dying."""
        for k in pool.dead():
            now = time.monotonic()
            restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if len(restarts) > MAX_RESTARTS:
                log(f"worker {k} died again, {len(restarts)} restarts in {RESTART_WINDOW:.0f}s: stopping", error=True)
                return False
            try:
                status = pool.respawn(k, live.ruleset)
            except (OSError, WorkerDied) as exc:
                log(f"worker {k} died and cannot be restarted: {exc}: stopping", error=True)
                return False
            log(f"worker {k} (queue {args.nfqueue + k}) exited with status {status}, restarted; "
                "its connections are lost", error=True)
            relay.resubscribe(k)
        return True

    live = LiveStore(ruleset, pool.apply)
    relay = EventRelay(pool)

    class PoolServer(ControlServer):
        def run(self, argv: list[str], stdin: str | None) -> dict[str, Any]:
            with pool.held(live.ruleset):
                return super().run(argv, stdin)

        def _conntrack(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
            """`pyfw conntrack`: the union of the workers' tables."""
            if req.get("conntrack", {}).get("command") == "E":
                relay.subscribe(conn, req)
                return None
            try:
                return merge(pool.call("pyfw.daemon.ctworkers:request", req))
            except RuntimeError as exc:
                return {"rc": 1, "error": f"pyfw daemon: {exc}\n"}

        def close(self) -> None:
            relay.close()
            super().close()

    stopping = False
    want_reload = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def hup(signum: int, frame: Any) -> None:
        nonlocal want_reload
        want_reload = True

    server = None
    rc = 0
    try:
        try:
            server = PoolServer(args.socket, live)
        except OSError as exc:
            log(f"cannot listen on {args.socket}: {exc}", error=True)
            return 1
        pool.close_in_child.append(server.sock)

        def stats() -> dict[str, int]:
            from pyfw.daemon.steering import queue_counters

            counts = union_stats(pool.stats())
            v6 = rules.ipv6_dropped()
            if v6 is not None:
                counts["ipv6-dropped"] = v6
            counts.update({k: v for k, v in queue_counters(range(args.nfqueue, args.nfqueue + n)).items() if v})
            return counts

        server.stats = stats
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        try:
            rules.install()
        except subprocess.CalledProcessError as exc:
            log(f"cannot install the kernel rules: {(exc.stderr or '').strip()}", error=True)
            return 1
        stale = stale_rules(args.nfqueue, keep_owner=steering.owner)
        took = remove_rules(stale)
        log(f"started: queues {args.nfqueue}-{last} ({n} workers, outside {','.join(topo.outside)}), "
            f"socket {args.socket}, ruleset {args.ruleset or '(empty)'}, "
            f"{'fail-open' if args.fail_open else 'fail-closed'}, forwarded IPv6 {args.ipv6}, "
            f"source NAT in {'one pass' if opts['one_pass'] else 'two passes'}"
            + (f", took over from a stopped daemon ({took} stale kernel rules removed)" if stale else ""))
        from pyfw.daemon.main import _new_host, _watch
        from pyfw.daemon.notify import notify

        notify("READY=1")
        overrides = {} if args.conntrack_max is None else {"net.netfilter.nf_conntrack_max": args.conntrack_max}
        if accept_local is not None:
            overrides["net.ipv4.conf.all.accept_local"] = accept_local  # the user's, not the daemon's
        watch = _watch(overrides)
        while not stopping:
            try:
                waitables: list[Any] = [server, *pool.conns, *relay.waitables(), *([watch] if watch else [])]
                wait = watch.timeout(time.monotonic(), 1.0) if watch else 1.0
                ready, _, _ = select.select(waitables, [], [], wait)
            except InterruptedError:
                continue
            try:
                if want_reload:
                    want_reload = False
                    with pool.held(live.ruleset):
                        reload(args.ruleset, live)
                if server in ready:
                    server.handle_one()
                relay.ready(ready)
                if watch is not None:
                    if watch in ready:
                        watch.readable()
                    new_host = _new_host(watch)
                    if new_host is not None:
                        pool.host = new_host  # for a respawned worker too
                        pool.call("pyfw.daemon.workers:set_host", new_host)
                        resteer()
            except WorkerDied as exc:
                log(str(exc), error=True)
            if not respawn_dead():
                rc = 1
                break
        return rc
    finally:
        v6 = rules.ipv6_dropped()
        rules.remove()
        counts = union_stats(pool.stop())
        put_back()
        if v6 is not None:
            counts["ipv6-dropped"] = v6
        text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        log(f"stopped ({text or 'no packets'})")
        if server is not None:
            server.close()
