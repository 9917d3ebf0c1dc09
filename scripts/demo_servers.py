"""The demo's servers and its UDP client (scripts/demo.sh).

`http ADDR PORT DIR` serves DIR and prints "client ADDR" for each request
(no reverse DNS look-up: the demo's namespaces have no resolver).
`udp ADDR PORT` answers each datagram "A NAME" with "NAME A 198.51.100.80
asked-by PEER", so the client sees which source address the server saw
(the gateway's, after MASQUERADE).  `ask HOST PORT NAME` sends one query
and prints the answer, or "timeout" after a second (and exits 1).
"""

from __future__ import annotations

import functools
import http.server
import socket
import socketserver
import sys


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        print(f"client {self.client_address[0]} {self.requestline}", flush=True)


def http_serve(addr: str, port: int, directory: str) -> None:
    socketserver.TCPServer.allow_reuse_address = True
    handler = functools.partial(_Handler, directory=directory)
    with socketserver.TCPServer((addr, port), handler) as server:
        server.serve_forever()


def udp_serve(addr: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(512)
        words = data.decode(errors="replace").split()
        name = words[1] if len(words) == 2 and words[0] == "A" else "?"
        s.sendto(f"{name} A 198.51.100.80 asked-by {peer[0]}".encode(), peer)


def ask(host: str, port: int, name: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.sendto(f"A {name}".encode(), (host, port))
    try:
        print(s.recv(512).decode(errors="replace"))
    except OSError:
        print("timeout")
        return 1
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    if cmd == "http" and len(args) == 3:
        http_serve(args[0], int(args[1]), args[2])
    elif cmd == "udp" and len(args) == 2:
        udp_serve(args[0], int(args[1]))
    elif cmd == "ask" and len(args) == 3:
        sys.exit(ask(args[0], int(args[1]), args[2]))
    else:
        sys.exit("usage: demo_servers.py http ADDR PORT DIR | udp ADDR PORT | ask HOST PORT NAME")
