"""`pyfw conntrack` against a daemon with workers: the union of their tables.

Each worker owns a share of the connections (pyfw.daemon.steer), so the
parent asks every worker and joins the answers: -L and -D list the entries
of all (each worker choosing with pyfw.daemon.ctops, as the single-process
daemon does), -C adds the counts, -S prints one line per worker (a worker
is what a CPU is to the kernel: `cpu=K`), -F flushes every share.

-E: every worker listens on its own table for each reader and sends the
reader's event lines to the parent over its event socket (a datagram each,
sent without waiting: a line the parent cannot take at once is counted as
lost, never a stall of the packet loop); the parent writes them to the
reader's socket as ctops' hub does.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from dataclasses import dataclass, field
from typing import Any

MAX_BACKLOG = 1 << 20  # bytes a slow -E reader may fall behind before it is dropped
SUB_ID = 4  # bytes of the reader's id in front of each event line


# ---------------------------------------------------------------- in a worker
def request(worker: Any, req: dict[str, Any]) -> dict[str, Any]:
    """One non-E request on this worker's table."""
    from pyfw.daemon.ctops import CtSource, serve, stats_line

    if req.get("conntrack", {}).get("command") == "S":
        return {"lines": [stats_line(worker.k, worker.engine.ct)]}
    answer = serve(None, req, CtSource(lambda: [worker.engine.ct], time.monotonic))  # type: ignore[arg-type]
    return answer or {"lines": []}


def subscribe(worker: Any, sub_id: int, req: dict[str, Any]) -> None:
    """Send the events the reader's query takes to the parent."""
    from pyfw.cli.conntrack import EVENT_BITS, Query
    from pyfw.daemon.ctops import event_line, matches

    q = Query(**req["conntrack"])
    ct = worker.engine.ct
    head = sub_id.to_bytes(SUB_ID, "big")

    def listener(kind: str, c: Any, portid: int) -> None:
        if q.event_mask & EVENT_BITS[kind] and matches(q, c):
            try:
                worker.events.send(head + (event_line(q, kind, c, ct.now, portid) + "\n").encode())
            except OSError:  # BlockingIOError too: the parent is behind
                worker.adapter.stats["conntrack-event-lost"] = worker.adapter.stats.get("conntrack-event-lost", 0) + 1

    unsubscribe(worker, sub_id)
    ct.listeners.append(listener)
    worker.subs[sub_id] = listener


def unsubscribe(worker: Any, sub_id: int) -> None:
    listener = worker.subs.pop(sub_id, None)
    if listener is not None:
        with contextlib.suppress(ValueError):
            worker.engine.ct.listeners.remove(listener)


# ---------------------------------------------------------------- in the parent
def merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' answers to one request as one answer."""
    errors = [a for a in answers if "error" in a]
    # -G finds an entry at one worker only: "doesn't exist" from the others
    # is no error when one of them has it
    hard = [a for a in errors if "doesn't exist" not in a["error"]]
    if hard:
        return hard[0]
    if errors and len(errors) == len(answers):
        return errors[0]
    answers = [a for a in answers if "error" not in a]
    if answers and all("count" in a for a in answers):
        return {"count": sum(int(a["count"]) for a in answers)}
    return {"lines": [line for a in answers for line in a.get("lines", [])]}


@dataclass
class _Reader:
    sock: socket.socket
    req: dict[str, Any]
    backlog: bytearray = field(default_factory=bytearray)


class EventRelay:
    """The -E readers of a daemon with workers."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.readers: dict[int, _Reader] = {}
        self._ids = itertools.count(1)

    def subscribe(self, conn: socket.socket, req: dict[str, Any]) -> None:
        sock = conn.dup()
        sock.setblocking(False)
        sub_id = next(self._ids)
        self.readers[sub_id] = reader = _Reader(sock, req)
        self._write(sub_id, reader, b'{"ok": true}\n')
        if sub_id in self.readers:
            self.pool.call("pyfw.daemon.ctworkers:subscribe", sub_id, req)

    def resubscribe(self, k: int) -> None:
        """A new worker k takes up the readers there are."""
        for sub_id, reader in self.readers.items():
            self.pool.call_one(k, "pyfw.daemon.ctworkers:subscribe", sub_id, reader.req)

    def waitables(self) -> list[Any]:
        # (not the readers' sockets: a reader shuts its sending side after
        # the request, so theirs read as ended from the start; one that went
        # away is dropped when a write to it fails, as ctops' hub does)
        return list(self.pool.events)

    def ready(self, ready: list[Any]) -> None:
        """Relay what the workers sent."""
        for ev in self.pool.events:
            if ev not in ready:
                continue
            while True:
                try:
                    msg = ev.recv(65536, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if len(msg) <= SUB_ID:
                    break
                sub_id = int.from_bytes(msg[:SUB_ID], "big")
                reader = self.readers.get(sub_id)
                if reader is not None:
                    self._write(sub_id, reader, msg[SUB_ID:])

    def _write(self, sub_id: int, reader: _Reader, data: bytes) -> None:
        reader.backlog += data
        try:
            n = reader.sock.send(reader.backlog)
            del reader.backlog[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(sub_id)
            return
        if len(reader.backlog) > MAX_BACKLOG:
            self.drop(sub_id)

    def drop(self, sub_id: int) -> None:
        reader = self.readers.pop(sub_id, None)
        if reader is None:
            return
        with contextlib.suppress(OSError):
            reader.sock.close()
        with contextlib.suppress(Exception):
            self.pool.call("pyfw.daemon.ctworkers:unsubscribe", sub_id)

    def close(self) -> None:
        for reader in self.readers.values():
            with contextlib.suppress(OSError):
                reader.sock.close()
        self.readers.clear()
