"""Bulk TCP through the live daemon now that the queue has NFQA_CFG_F_GSO:
veth hands over 64 KB super-packets whose checksum is left to the device
(CHECKSUM_PARTIAL); masqueraded on the way out and de-masqueraded on the way
back, 10 MB each way must arrive byte for byte (sha256), and a UDP answer
too (its checksum completed after NAT).  Namespaces as tests/daemon/test_nfqueue."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

from pyfw.daemon.control import request_stats
from tests.daemon.test_nfqueue import PY, Lab, client, lab, ruleset, sh, start_daemon  # noqa: F401  (lab: a fixture)

SIZE = 10 << 20
SEED = 7

# on wan: port 6001 takes a stream and answers with its length and sha256;
# port 6002 sends SIZE seeded bytes and closes
SINK = r"""
import hashlib, random, socket, sys, threading
size, seed = int(sys.argv[1]), int(sys.argv[2])
def sink(s):
    while True:
        c, _a = s.accept()
        h, n = hashlib.sha256(), 0
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            h.update(d); n += len(d)
        c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
def source(s):
    data = random.Random(seed).randbytes(size)
    while True:
        c, _a = s.accept()
        c.sendall(data); c.close()
socks = []
for port, fn in ((6001, sink), (6002, source)):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(4)
    threading.Thread(target=fn, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

PUSH = r"""
import random, socket, sys
size, seed = int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((sys.argv[1], 6001), timeout=30)
s.sendall(random.Random(seed).randbytes(size)); s.shutdown(socket.SHUT_WR)
print(s.recv(200).decode())
"""

PULL = r"""
import hashlib, socket, sys
s = socket.create_connection((sys.argv[1], 6002), timeout=30)
h, n = hashlib.sha256(), 0
while True:
    d = s.recv(1 << 16)
    if not d:
        break
    h.update(d); n += len(d)
print(n, h.hexdigest())
"""


def test_bulk_tcp_both_ways_intact_through_the_daemon(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    # the offloads the kernel uses between namespaces (on by default; made sure)
    for ns, dev in ((lab.lan, "eth0"), (lab.wan, "eth0"), (lab.gw, lab.gl), (lab.gw, lab.gwn)):
        sh("ethtool", "-K", dev, "tso", "on", "gso", "on", "tx", "on", ns=ns, check=False)
    rules = tmp_path / "rules"
    rules.write_text(ruleset(lab))
    start_daemon(lab, tmp_path, rules, str(tmp_path / "pyfw.sock"))
    p = lab.spawn(lab.wan, PY, "-c", SINK, str(SIZE), str(SEED), stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    want = hashlib.sha256(random.Random(SEED).randbytes(SIZE)).hexdigest()
    env = dict(os.environ)
    up = sh(PY, "-c", PUSH, "203.0.113.2", str(SIZE), str(SEED), ns=lab.lan, env=env).stdout.split()
    assert up == [str(SIZE), want]
    down = sh(PY, "-c", PULL, "203.0.113.2", ns=lab.lan, env=env).stdout.split()
    assert down == [str(SIZE), want]
    stats = request_stats(str(tmp_path / "pyfw.sock"))
    assert stats.get("gso-packets", 0) > 0, stats  # super-packets came whole (and went through the engine)
    lab.server(lab.wan, "wan", "6003")
    assert client(lab, lab.lan, "udp", "203.0.113.2", 5353) == {"ok": "wan 203.0.113.1"}
