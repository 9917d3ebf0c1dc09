"""Bulk TCP for the TAP lab: `serve PORT NBYTES SEED` sends NBYTES of seeded
random data to each connection; `fetch HOST PORT [TIMEOUT [nohash]]` reads one
connection to the end and prints {"bytes", "sha256", "seconds"}; `sink PORT` answers each connection with the sha256 of
what it sent; `push HOST PORT NBYTES SEED` sends seeded data to a sink and
prints its answer; `expect NBYTES SEED` prints the sha256 the data should have."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import threading
import time

CHUNK = 1 << 20


def data(nbytes: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(nbytes)


def serve(port: int, nbytes: int, seed: int) -> None:
    payload = data(nbytes, seed)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    print("ready", flush=True)

    def one(c: socket.socket) -> None:
        with c:
            try:
                c.sendall(payload)
            except OSError:
                pass

    while True:
        c, _ = s.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def sink(port: int) -> None:
    """Read each connection to its end, answer the sha256 of what came."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(8)
    print("ready", flush=True)

    def one(c: socket.socket) -> None:
        with c:
            h = hashlib.sha256()
            while b := c.recv(CHUNK):
                h.update(b)
            c.sendall(h.hexdigest().encode())

    while True:
        c, _ = s.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def push(host: str, port: int, nbytes: int, seed: int) -> None:
    payload = data(nbytes, seed)
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=60) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        answer = c.recv(100).decode()
    print(json.dumps({"bytes": nbytes, "sha256": answer, "seconds": time.monotonic() - t0}))


def fetch(host: str, port: int, timeout: float, hashing: bool = True) -> None:
    h = hashlib.sha256()
    n = 0
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as c:
        while True:
            b = c.recv(CHUNK)
            if not b:
                break
            n += len(b)
            if hashing:
                h.update(b)
    print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "seconds": time.monotonic() - t0}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "sink":
        sink(int(sys.argv[2]))
    elif cmd == "push":
        push(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "fetch":
        fetch(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 30.0,
              hashing=sys.argv[5:6] != ["nohash"])
    else:
        print(hashlib.sha256(data(int(sys.argv[2]), int(sys.argv[3]))).hexdigest())
