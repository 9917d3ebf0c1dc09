"""A minimal HTTP/1.1 server on pyfw.stack connections: the gateway's
status page.

    GET /             the status as an HTML page
    GET /status.json  the status as JSON
    GET /bytes?n=N    N bytes of a fixed pattern (byte i is i % 256), for
                      throughput tests; streamed as the send buffer drains
    POST /upload      reads the body (Content-Length) and answers its length
                      and sha256 as JSON: the receive path's throughput test

HEAD works on each.  Content-Length on every response; keep-alive by
default on HTTP/1.1, close on "Connection: close" and on HTTP/1.0 without
"Connection: keep-alive"; pipelined requests are answered in order.
Other request bodies (Content-Length) are read and ignored; chunked request
bodies, oversized headers and malformed requests get an error and a close.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pyfw.stack.tcp import Connection

MAX_HEADER = 16384
MAX_BYTES = 1 << 30
#: Keep this much of a streamed body queued in the connection.
STREAM_FILL = 4 << 20
_CHUNK = 1 << 20
_PATTERN = bytes(range(256)) * ((_CHUNK >> 8) + 1)
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 501: "Not Implemented"}


def pattern_bytes(n: int, offset: int = 0) -> bytes:
    """Bytes offset..offset+n of the /bytes body (tests compare against it)."""
    out = bytearray()
    while n > 0:
        k = min(n, _CHUNK)
        start = offset & 0xFF
        out += _PATTERN[start:start + k]
        offset += k
        n -= k
    return bytes(out)


#: Idle keep-alive connections are closed after this long (nginx's default is 75 s).
IDLE_TIMEOUT = 75.0


def status_app(get_status: Callable[[], dict[str, Any]],
               idle_timeout: float | None = IDLE_TIMEOUT) -> Callable[[Connection], HttpServer]:
    """An app_factory for Stack.listen serving `get_status()`."""
    def factory(conn: Connection) -> HttpServer:
        conn.idle_timeout = idle_timeout
        return HttpServer(get_status)
    return factory


class HttpServer:
    """One connection's HTTP server."""

    def __init__(self, get_status: Callable[[], dict[str, Any]]) -> None:
        self.get_status = get_status
        self.buf = bytearray()
        self.body_left = 0          # request body bytes still to read
        self.upload: Any = None     # the sha256 of a POST /upload body being read
        self.upload_len = 0
        self.upload_extra: dict[str, str] = {}
        self.stream_left = 0        # /bytes body bytes still to queue
        self.stream_off = 0
        self.close_after = False
        self.peer_closed = False
        self.closed = False

    # ---------------------------------------------------------------- stack callbacks
    def on_data(self, conn: Connection, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        self._process(conn)

    def on_writable(self, conn: Connection) -> None:
        if self.stream_left:
            self._fill(conn)
            if not self.stream_left:
                self._after_response(conn)

    def on_close(self, conn: Connection) -> None:
        self.peer_closed = True
        if not self.stream_left:
            self._close(conn)

    # ---------------------------------------------------------------- requests
    def _process(self, conn: Connection) -> None:
        while not self.closed and not self.stream_left:
            if self.body_left:
                k = min(self.body_left, len(self.buf))
                if self.upload is not None:
                    self.upload.update(memoryview(self.buf)[:k])
                del self.buf[:k]
                self.body_left -= k
                if self.body_left:
                    return
            if self.upload is not None:
                body = json.dumps({"bytes": self.upload_len, "sha256": self.upload.hexdigest()}).encode() + b"\n"
                self.upload = None
                self._respond(conn, 200, body, "application/json", self.upload_extra, False)
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER:
                    self._error(conn, 431)
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self._request(conn, head)

    def _request(self, conn: Connection, head: bytes) -> None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if not _:
                    raise ValueError(line)
                headers[name.strip().lower()] = value.strip()
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            length = int(headers.get("content-length", "0"))
            if length < 0:
                raise ValueError("content-length")
        except ValueError:
            self._error(conn, 400)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._error(conn, 501)
            return
        self.body_left = length
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        self.close_after = not keep
        extra = {"Connection": "keep-alive"} if keep and version == "HTTP/1.0" else {}
        if not keep:
            extra = {"Connection": "close"}
        url = urlsplit(target)
        expect = headers.get("expect", "").lower() == "100-continue" and length > 0
        if method == "POST" and url.path == "/upload":
            if expect:
                # RFC 9110 10.1.1: the client waits for this before the body
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.upload = hashlib.sha256()
            self.upload_len = length
            self.upload_extra = extra
            return
        if expect:
            # a final answer before a body that may never come: close after it
            self.close_after = True
            extra = {"Connection": "close"}
        if method not in ("GET", "HEAD"):
            self._respond(conn, 405, b"method not allowed\n", "text/plain", {**extra, "Allow": "GET, HEAD"}, False)
            return
        head_only = method == "HEAD"
        if url.path == "/":
            body = self._html().encode()
            self._respond(conn, 200, body, "text/html; charset=utf-8", extra, head_only)
        elif url.path == "/status.json":
            body = json.dumps(self.get_status(), default=str, indent=1).encode() + b"\n"
            self._respond(conn, 200, body, "application/json", extra, head_only)
        elif url.path == "/bytes":
            try:
                n = int(parse_qs(url.query).get("n", ["0"])[0])
            except ValueError:
                self._error(conn, 400)
                return
            n = max(0, min(n, MAX_BYTES))
            self._head(conn, 200, n, "application/octet-stream", extra)
            if not head_only and n:
                self.stream_left = n
                self.stream_off = 0
                self._fill(conn)
            if not self.stream_left:
                self._after_response(conn)
        else:
            self._respond(conn, 404, b"not found\n", "text/plain", extra, head_only)

    def _head(self, conn: Connection, status: int, length: int, ctype: str, extra: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {ctype}", f"Content-Length: {length}",
                 "Server: pyfw"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _respond(self, conn: Connection, status: int, body: bytes, ctype: str, extra: dict[str, str],
                 head_only: bool) -> None:
        self._head(conn, status, len(body), ctype, extra)
        if not head_only and body:
            conn.send(body)
        self._after_response(conn)

    def _error(self, conn: Connection, status: int) -> None:
        self.close_after = True
        self.buf.clear()
        self._respond(conn, status, f"{_REASONS[status].lower()}\n".encode(), "text/plain",
                      {"Connection": "close"}, False)

    def _after_response(self, conn: Connection) -> None:
        if self.close_after or self.peer_closed:
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if not self.closed:
            self.closed = True
            conn.close()

    def _fill(self, conn: Connection) -> None:
        while self.stream_left and conn.send_queue < STREAM_FILL:
            k = min(self.stream_left, _CHUNK)
            start = self.stream_off & 0xFF
            conn.send(memoryview(_PATTERN)[start:start + k])
            self.stream_off += k
            self.stream_left -= k
        if not self.stream_left and not self.closed:
            # pipelined requests that waited behind the body
            self._after_response(conn)
            if not self.closed and self.buf:
                self._process(conn)

    # ---------------------------------------------------------------- the page
    def _html(self) -> str:
        status = self.get_status()
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>pyfw status</title></head><body>",
                 "<h1>pyfw status</h1>"]
        for key, value in status.items():
            parts.append(f"<h2>{html.escape(str(key))}</h2>")
            parts.append(_render(value))
        parts.append("</body></html>\n")
        return "".join(parts)


def _render(value: Any) -> str:
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols: list[str] = []
        for row in value:
            cols += [k for k in row if k not in cols]
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in cols) + "</tr>"
                       for row in value)
        return f"<table><tr>{head}</tr>{body}</table>"
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{html.escape(str(v))}</li>" for v in value) + "</ul>"
    return f"<p>{html.escape(str(value))}</p>"
