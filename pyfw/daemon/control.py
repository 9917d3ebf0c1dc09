"""The daemon's control socket: `pyfw`, `pyfw-save` and `pyfw-restore`
against the live ruleset.

One request per connection: a JSON object {"argv": [...], "stdin": ...}
(the client shuts its writing side down after it), answered with
{"rc", "out", "err"}.  The daemon serves it from its packet loop, so a
command runs between two packets and a restore swaps the whole ruleset
at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pyfw.cli import store as file_store
from pyfw.ruleset.model import Ruleset

MAX_REQUEST = 64 * 1024 * 1024


class LiveStore:
    """An in-memory ruleset with the interface of pyfw.cli.store: commands
    change a copy, and a command that succeeds installs its copy."""

    LockTimeout = file_store.LockTimeout

    def __init__(self, ruleset: Ruleset, on_change: Callable[[Ruleset], None]) -> None:
        self.ruleset = ruleset
        self._on_change = on_change

    @contextlib.contextmanager
    def locked(self, path: Path, wait: int | None = None) -> Iterator[None]:
        yield  # commands are served one at a time by the packet loop

    def load(self, path: Path) -> Ruleset:
        # a copy with the counters of this moment: a failing command leaves
        # the live ruleset untouched
        copy: Ruleset = pickle.loads(pickle.dumps(self.ruleset, protocol=pickle.HIGHEST_PROTOCOL))
        return copy

    def save(self, path: Path, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._on_change(ruleset)


def _recv_all(conn: socket.socket) -> bytes:
    chunks = []
    total = 0
    while True:
        b = conn.recv(65536)
        if not b:
            break
        chunks.append(b)
        total += len(b)
        if total > MAX_REQUEST:
            raise ValueError("request too large")
    return b"".join(chunks)


def request_stats(path: str, timeout: float = 10.0) -> dict[str, int]:
    """The daemon's counters (`pyfw daemon --stats`); OSError/ValueError if it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"stats": True}).encode())
        s.shutdown(socket.SHUT_WR)
        answer = json.loads(_recv_all(s) or b"{}")
    return {str(k): int(v) for k, v in dict(answer.get("stats", {})).items()}


def request(path: str, argv: list[str], stdin: str | None = None, timeout: float = 30.0) -> Any:
    """Run one command on the daemon at `path` (pyfw.cli.main.Result)."""
    from pyfw.cli.main import Result

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"argv": argv, "stdin": stdin}).encode())
            s.shutdown(socket.SHUT_WR)
            answer = json.loads(_recv_all(s) or b"{}")
    except (OSError, ValueError) as exc:
        prog = os.path.basename(argv[0]) if argv else "pyfw"
        return Result(1, "", f"{prog}: cannot reach the pyfw daemon at {path}: {exc}\n")
    return Result(int(answer.get("rc", 1)), str(answer.get("out", "")), str(answer.get("err", "")))


class ControlServer:
    """Listens on `path` (mode 0600); `handle_one` serves a ready client."""

    def __init__(self, path: str, live: LiveStore, conntrack: Any = None) -> None:
        from pyfw.cli.main import LIVE_STORES

        self.path = path
        self.live = live
        self.conntrack = conntrack  # a pyfw.daemon.ctops.CtSource: serves `pyfw conntrack`
        self.stats: Callable[[], dict[str, int]] | None = None  # serves `pyfw daemon --stats`
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(path):
                self._refuse_if_alive(path)
                os.unlink(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)
        LIVE_STORES[path] = live

    @staticmethod
    def _refuse_if_alive(path: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
            except OSError:
                return  # a stale socket of a dead daemon
        raise OSError(f"another pyfw daemon is listening on {path}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle_one(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.settimeout(5.0)
            try:
                req = json.loads(_recv_all(conn))
                answer: dict[str, Any] | None
                if "stats" in req:
                    answer = {"rc": 0, "stats": self.stats() if self.stats else {}}
                elif "conntrack" in req:
                    answer = self._conntrack(conn, req)
                    if answer is None:
                        return  # -E: ctops keeps (a copy of) the connection
                else:
                    answer = self.run(list(map(str, req["argv"])), req.get("stdin"))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                answer = {"rc": 1, "out": "", "err": f"pyfw daemon: bad request: {exc}\n"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(answer).encode())

    def _conntrack(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
        if self.conntrack is None:
            return {"rc": 1, "error": "pyfw daemon: this daemon keeps no connection table\n"}
        from pyfw.daemon.ctops import serve

        return serve(conn, req, self.conntrack)

    def run(self, argv: list[str], stdin: str | None) -> dict[str, Any]:
        from pyfw.cli.main import run

        if not argv:
            return {"rc": 2, "out": "", "err": "pyfw daemon: empty command\n"}
        prog = os.path.basename(argv[0])
        if prog not in ("pyfw", "pyfw-save", "pyfw-restore", "iptables", "iptables-save", "iptables-restore"):
            return {"rc": 2, "out": "", "err": f"pyfw daemon: unknown program {prog}\n"}
        # the live store is reached through --socket; any --file is refused by run's own check
        r = run([argv[0], "--socket", self.path, *argv[1:]], stdin if stdin is not None else "")
        return {"rc": r.rc, "out": r.out, "err": r.err}

    def close(self) -> None:
        from pyfw.cli.main import LIVE_STORES

        LIVE_STORES.pop(self.path, None)
        hub = getattr(self.conntrack, "hub", None)
        if hub is not None:
            hub.close()
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
