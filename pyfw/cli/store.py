"""Where a command's tables live: a ruleset file in iptables-save -c format.

Reading goes through a compiled cache beside the file (a pickle keyed by the
file's content hash), so a CLI call on a large ruleset does not re-parse it.
Writing is atomic (temporary file, fsync, rename) and commands on one file
are serialised by a lock beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pyfw.ruleset.model import Ruleset

CACHE_VERSION = 1


def cache_path(path: Path) -> Path:
    return path.with_name("." + path.name + ".pyfwcache")


def lock_path(path: Path) -> Path:
    return path.with_name("." + path.name + ".lock")


class LockTimeout(Exception):
    pass


@contextlib.contextmanager
def locked(path: Path, wait: int | None = None) -> Iterator[None]:
    """Hold the file's lock; `wait` seconds at most (None: as long as it takes)."""
    lp = lock_path(path)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + max(wait, 0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout() from None
                    time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load(path: Path) -> Ruleset:
    """The ruleset in `path`; a missing file is an empty ruleset."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ruleset()
    digest = _digest(data)
    cp = cache_path(path)
    try:
        with open(cp, "rb") as f:
            version, cached_digest, ruleset = _unpickle(f)
        if version == CACHE_VERSION and cached_digest == digest:
            return ruleset  # type: ignore[no-any-return]
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        pass
    from pyfw.ruleset.restore import RestoreOptions, restore

    opts = RestoreOptions(counters=True, keep_order=True, src_file=str(path))
    ruleset = restore(Ruleset(), data.decode("utf-8", errors="surrogateescape"), opts).ruleset
    _write_cache(cp, digest, ruleset)
    return ruleset


def _unpickle(f: BinaryIO) -> Any:
    """pickle.load with the collector off: every object of the ruleset is
    new and kept, so the collections its allocations would trigger find
    nothing (about 45 ms of a 10,000-rule file's load)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.load(f)
    finally:
        if enabled:
            gc.enable()


def _write_cache(cp: Path, digest: str, ruleset: Ruleset) -> None:
    from pyfw.ruleset.pickling import register_loaded

    register_loaded()
    try:
        blob = pickle.dumps((CACHE_VERSION, digest, ruleset), protocol=pickle.HIGHEST_PROTOCOL)
        _atomic_write(cp, blob, sync=False)
    except OSError:
        pass


def _atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def save(path: Path, ruleset: Ruleset) -> None:
    """Write the ruleset as iptables-save -c text, atomically, and its cache."""
    from pyfw.ruleset.format import save_table

    text = "".join(save_table(t, counters=True, program="pyfw-save") for t in ruleset.ordered_tables())
    data = text.encode("utf-8", errors="surrogateescape")
    _atomic_write(path, data)
    _write_cache(cache_path(path), _digest(data), ruleset)
