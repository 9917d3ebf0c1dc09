"""Servers for the TAP lab: HTTP on each port of PORTS answering
"NAME PEER-ADDRESS", and UDP on 5353 answering the same."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{NAME} {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def udp() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5353))
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(f"{NAME} {a[0]}".encode(), a)


for port in map(int, sys.argv[2].split(",")):
    srv = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
