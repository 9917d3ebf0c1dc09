"""A TAP device in a throw-away namespace with pyfw.stack behind it: the
Linux side is the namespace's kernel (curl, its TCP), the other side a
Stack fed by this process.  A minimal ARP responder answers for the stack's
address; IPv4 frames go to the stack when it wants them.

    with TapLink(stack) as link:
        proc = link.popen(["curl", ...])
        link.pump(lambda: proc.poll() is not None, timeout=30)
"""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/oracle.py

from oracle import Netns, in_netns  # noqa: E402

from pyfw.stack import Stack  # noqa: E402
from pyfw.stack.stack import format_addr, parse_addr  # noqa: E402
from pyfw.wire import arp, ethernet  # noqa: E402

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
_counter = itertools.count()

LINUX_ADDR = parse_addr("10.77.0.1")
STACK_ADDR = parse_addr("10.77.0.2")
STACK_MAC = bytes.fromhex("020000770002")


class TapLink:
    """`loss`, `dup`, `reorder`: seeded faults on IPv4 frames both ways (a
    reordered frame is held back until the next one in its direction)."""

    def __init__(self, stack: Stack, mtu: int = 1500, loss: float = 0.0, dup: float = 0.0, reorder: float = 0.0,
                 seed: int = 1) -> None:
        self.stack = stack
        self.mtu = mtu
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.held: list[bytes | None] = [None, None]   # [to the stack, to Linux]
        self.faulted = 0
        self.ns = Netns()
        self.ifname = f"pst{os.getpid() % 100000}x{next(_counter)}"
        self.fd = -1
        self.peer_mac: bytes | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.ignored = 0

    def __enter__(self) -> TapLink:
        self.ns.__enter__()
        try:
            with in_netns(self.ns.name):
                self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
                fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", self.ifname.encode(), IFF_TAP | IFF_NO_PI))
            for argv in (["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                         ["ip", "link", "set", "lo", "up"],
                         ["ip", "link", "set", self.ifname, "mtu", str(self.mtu), "up"],
                         ["ip", "addr", "add", f"{format_addr(LINUX_ADDR)}/24", "dev", self.ifname]):
                proc = self.ns.run(argv)
                if proc.rc != 0:
                    raise RuntimeError(f"{argv}: {proc.err}")
            # the Linux side's MAC, so that the stack may speak first (active open)
            link = self.ns.run(["cat", f"/sys/class/net/{self.ifname}/address"])
            self.peer_mac = bytes.fromhex(link.out.strip().replace(":", ""))
            # and ours in its neighbour table, so that it need not ask
            self.ns.run(["ip", "neigh", "replace", format_addr(STACK_ADDR), "lladdr",
                         ":".join(f"{b:02x}" for b in STACK_MAC), "dev", self.ifname])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.ns.close()

    def popen(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns.name, *argv],  # type: ignore[call-overload]
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    # ---------------------------------------------------------------- the loop
    def _handle(self, frame: bytes, now: float) -> None:
        if len(frame) < 14:
            return
        etype = frame[12] << 8 | frame[13]
        if etype == ethernet.ETH_P_ARP:
            req = frame[14:14 + arp.LEN]
            if (len(req) == arp.LEN and (req[arp.OP] << 8 | req[arp.OP + 1]) == arp.ARPOP_REQUEST
                    and int.from_bytes(req[arp.TPA:arp.TPA + 4], "big") == STACK_ADDR):
                self.peer_mac = bytes(req[arp.SHA:arp.SHA + 6])
                self._write(bytes(arp.build_reply(req, STACK_MAC)))
            return
        if etype != ethernet.ETH_P_IP or frame[0:6] != STACK_MAC:
            self.ignored += 1
            return
        self.peer_mac = frame[6:12]
        for f in self._faults(0, frame):
            ip = f[14:]
            if self.stack.wants(ip):
                self.frames_in += 1
                self.stack.input(ip, now)
            else:
                self.ignored += 1

    def _faults(self, way: int, frame: bytes) -> list[bytes]:
        """What of `frame` gets through in direction `way`, in order."""
        if not (self.loss or self.dup or self.reorder):
            return [frame]
        rng = self.rng
        out: list[bytes] = []
        if rng.random() < self.loss:
            self.faulted += 1
        elif self.held[way] is None and rng.random() < self.reorder:
            self.held[way] = frame
            self.faulted += 1
            return out
        else:
            out.append(frame)
            if rng.random() < self.dup:
                out.append(frame)
                self.faulted += 1
        held = self.held[way]
        if held is not None and out:
            out.append(held)
            self.held[way] = None
        return out

    def _release_held(self, now: float) -> None:
        """A held frame does not wait forever for a successor."""
        held, self.held[0] = self.held[0], None
        if held is not None and self.stack.wants(held[14:]):
            self.stack.input(held[14:], now)
        held, self.held[1] = self.held[1], None
        if held is not None:
            self._write(held)

    def _write(self, frame: bytes) -> None:
        while True:
            try:
                os.write(self.fd, frame)
                return
            except BlockingIOError:
                select.select([], [self.fd], [], 0.01)

    def _flush(self, now: float) -> None:
        out = self.stack.output(now)
        if not out:
            return
        if self.peer_mac is None:
            return   # nobody asked for us yet: the stack never speaks first here
        hdr = self.peer_mac + STACK_MAC + b"\x08\x00"
        for ip in out:
            for frame in self._faults(1, hdr + ip):
                self._write(frame)
        self.frames_out += len(out)

    def pump(self, done: Callable[[], bool], timeout: float) -> bool:
        """Run the stack on the TAP until done() (True) or timeout (False)."""
        end = time.monotonic() + timeout
        fd = self.fd
        read = os.read
        handle = self._handle
        while True:
            now = time.monotonic()
            self._flush(now)
            if done():
                return True
            if now > end:
                return False
            dl = self.stack.next_deadline()
            wait = 0.02 if dl is None else min(0.02, max(0.0, dl - now))
            r, _, _ = select.select([fd], [], [], wait)
            if not r:
                if self.held[0] is not None or self.held[1] is not None:
                    self._release_held(time.monotonic())
                continue
            for _ in range(64):
                try:
                    frame = read(fd, 65536)
                except BlockingIOError:
                    break
                handle(frame, time.monotonic())
