"""TAP devices, as a VM's NIC is one: opened on /dev/net/tun with
TUNSETIFF (IFF_TAP | IFF_NO_PI, and IFF_VNET_HDR with TSO/checksum offload
unless asked not to), attached to a Linux bridge, given the interface's MTU
and brought up.  The device lives as long as its file descriptor: closing it
(at stop, or when the process dies) removes it, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
from typing import Any

from pyfw.tap import vnet

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNSETVNETLE = 0x400454DC
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

READ_SIZE = 65536 + 256  # a 64 KB super-frame, its Ethernet and virtio headers


class TapError(OSError):
    pass


class TapDevice:
    """One TAP device: non-blocking reads of many frames, one write each."""

    def __init__(self, name: str, *, offload: bool = True) -> None:
        self.name = name
        self.offload = offload
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise TapError(exc.errno, f"cannot open /dev/net/tun: {exc.strerror}") from exc
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
            if offload:
                fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", vnet.HDR_LEN))
                with contextlib.suppress(OSError):  # the header is little-endian (pyfw.tap.vnet)
                    fcntl.ioctl(self.fd, TUNSETVNETLE, struct.pack("i", 1))
                fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN)
        except OSError as exc:
            os.close(self.fd)
            raise TapError(exc.errno, f"cannot create TAP device {name}: {exc.strerror}") from exc

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        """One frame (with its virtio header when offloading), or None."""
        try:
            return os.read(self.fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None

    def write(self, hdr: bytes, frame: bytes | bytearray) -> bool:
        """Send a frame into the kernel (the bridge); False if it refused."""
        try:
            if self.offload:
                os.writev(self.fd, (hdr, frame))
            else:
                os.write(self.fd, frame)
            return True
        except (BlockingIOError, InterruptedError, OSError):
            return False

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def configure(name: str, mtu: int, bridge: str | None) -> None:
    """MTU, bridge and up for the TAP device `name` (pyroute2 when it is
    installed, else ip(8))."""
    try:
        from pyroute2 import IPRoute
    except ImportError:
        IPRoute = None
    if IPRoute is not None:
        with IPRoute() as ipr:
            idx = _index(ipr, name)
            kw: dict[str, Any] = {"mtu": mtu}
            if bridge is not None:
                kw["master"] = _index(ipr, bridge)
            ipr.link("set", index=idx, **kw)
            ipr.link("set", index=idx, state="up")
        return
    cmd = ["ip", "link", "set", "dev", name, "mtu", str(mtu)]
    if bridge is not None:
        cmd += ["master", bridge]
    _ip([*cmd, "up"])


def _index(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise TapError(0, f"no device named {name}")
    return int(found[0])


def _ip(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise TapError(0, f"{' '.join(cmd)}: {r.stderr.strip()}")


def bridge_exists(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")
