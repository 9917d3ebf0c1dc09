"""The kernel's own rate for the new-flow benchmark: the same ruleset loaded
with iptables-legacy-restore into a gateway namespace (ip_forward=1, the
bench host's addresses, MACs, route and neighbour), the same frames (first
packets of distinct 5-tuples) injected on a veth from a sender namespace.

    sender ns: snd0 ==veth== eth0  gateway ns  eth1 ==veth== rcv0 :receiver ns

A Python sender cannot feed the kernel at its 1-rule rate, so a tiny C
program (compiled here with gcc; bench tooling only) sends the frames from
an AF_PACKET socket with sendmmsg and PACKET_QDISC_BYPASS.  A veth hands a
frame to the peer's backlog and the receive softirq then runs on the way out
of the sender's system call, so the sender's elapsed time is the kernel's
processing time.  The rate counts the packets the gateway's PREROUTING took
in (the nat PREROUTING policy counter: every packet here is a new
connection) over that time; frames lost before it (backlog overflow) are
reported, not counted.  The sender's own ceiling is measured on frames the
gateway drops at once (another host's MAC).

Namespaces are unique to this process and always deleted; traffic stays
between them.  Needs root, ip, iptables-legacy-restore and gcc: otherwise
`kernel_problem()` says why and the caller skips the comparison.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 256

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: send IFACE FRAMES\n"); return 2; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror("open"); return 1; }
    fseek(f, 0, SEEK_END); long size = ftell(f); fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size);
    if (!buf || fread(buf, 1, size, f) != (size_t)size) { perror("read"); return 1; }
    fclose(f);
    long n = 0;
    for (long off = 0; off + 2 <= size; n++) off += 2 + (buf[off] << 8 | buf[off + 1]);
    struct iovec *iov = calloc(n, sizeof *iov);
    struct mmsghdr *msgs = calloc(n, sizeof *msgs);
    long off = 0;
    for (long i = 0; i < n; i++) {
        size_t len = buf[off] << 8 | buf[off + 1];
        iov[i].iov_base = buf + off + 2; iov[i].iov_len = len; off += 2 + len;
        msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET; sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = if_nametoindex(argv[1]);
    if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("bind"); return 1; }
    struct timespec t0, t1;
    long sent = 0, retries = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (sent < n) {
        int want = n - sent < BATCH ? n - sent : BATCH;
        int r = sendmmsg(s, msgs + sent, want, 0);
        if (r < 0) {
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) { retries++; continue; }
            perror("sendmmsg"); return 1;
        }
        sent += r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
    printf("%ld %ld %ld\n", sent, ns, retries);
    return 0;
}
"""

GW_MAC_LAN = "02:00:00:00:00:01"
GW_MAC_WAN = "02:00:00:00:00:02"
WAN_NEIGHBOR_MAC = "02:00:00:00:00:fe"   # not the receiver's MAC: it drops them at once


def kernel_problem() -> str | None:
    """Why the kernel comparison cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (needs network namespaces)"
    for tool in ("ip", "iptables-legacy-restore", "iptables-legacy-save", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def _run(*cmd: str, ns: str | None = None, stdin: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    p = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {p.stderr.strip()}")
    return p.stdout


def build_sender(workdir: Path) -> Path:
    src = workdir / "send.c"
    src.write_text(SENDER_C)
    exe = workdir / "send"
    _run("gcc", "-O2", "-o", str(exe), str(src))
    return exe


def write_frames(frames: list[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        for fr in frames:
            f.write(struct.pack("!H", len(fr)) + fr)


_seq = 0


@contextmanager
def gateway(ruleset: str) -> Iterator[tuple[str, str]]:
    """Sender and gateway namespaces (and a receiver) with `ruleset`
    loaded; yields (sender ns, gateway ns); deleted whatever happens."""
    global _seq
    _seq += 1
    tag = f"pyfwb{os.getpid()}-{_seq}"
    snd, gw, rcv = f"{tag}-s", f"{tag}-g", f"{tag}-r"
    made: list[str] = []
    try:
        for ns in (snd, gw, rcv):
            _run("ip", "netns", "add", ns)
            made.append(ns)
        _run("ip", "-n", gw, "link", "add", "eth0", "address", GW_MAC_LAN, "type", "veth",
             "peer", "name", "snd0", "netns", snd)
        _run("ip", "-n", gw, "link", "add", "eth1", "address", GW_MAC_WAN, "type", "veth",
             "peer", "name", "rcv0", "netns", rcv)
        for ns, dev in ((snd, "snd0"), (gw, "eth0"), (gw, "eth1"), (rcv, "rcv0"), (snd, "lo"), (gw, "lo")):
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", gw, "addr", "add", "192.168.1.1/24", "dev", "eth0")
        _run("ip", "-n", gw, "addr", "add", "203.0.113.1/24", "dev", "eth1")
        _run("ip", "-n", gw, "route", "add", "default", "via", "203.0.113.254", "dev", "eth1")
        _run("ip", "-n", gw, "neigh", "replace", "203.0.113.254", "lladdr", WAN_NEIGHBOR_MAC,
             "dev", "eth1", "nud", "permanent")
        _run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=gw)
        _run("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_be_liberal=0", ns=gw)
        _run("iptables-legacy-restore", ns=gw, stdin=ruleset)
        yield snd, gw
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _prerouting_packets(gw: str) -> int:
    """The nat PREROUTING policy's packet counter: every new connection."""
    for line in _run("iptables-legacy-save", "-c", "-t", "nat", ns=gw).splitlines():
        if line.startswith(":PREROUTING "):
            return int(line.split("[", 1)[1].split(":", 1)[0])
    raise RuntimeError("no nat PREROUTING chain")


def _send(exe: Path, snd: str, frames_file: Path) -> tuple[int, float]:
    sent, ns, _retries = (int(x) for x in _run(str(exe), "snd0", str(frames_file), ns=snd).split())
    return sent, ns / 1e9


def kernel_rate(ruleset: str, frames: list[bytes], workdir: Path, exe: Path) -> tuple[float, int, int]:
    """(packets/s through the kernel's gateway, packets it took in, sent)."""
    path = workdir / "frames.bin"
    write_frames(frames, path)
    with gateway(ruleset) as (snd, gw):
        sent, secs = _send(exe, snd, path)
        took = _prerouting_packets(gw)
    return took / secs, took, sent


def sender_ceiling(ruleset: str, frames: list[bytes], workdir: Path, exe: Path) -> float:
    """Frames/s the sender reaches when the gateway drops them on arrival
    (a unicast MAC that is not its own: ip_rcv drops PACKET_OTHERHOST)."""
    other = bytes.fromhex("020000000099")
    path = workdir / "other.bin"
    write_frames([other + f[6:] for f in frames], path)
    with gateway(ruleset) as (snd, _gw):
        sent, secs = _send(exe, snd, path)
    return sent / secs


class KernelBench:
    """Compiles the sender once; measures rulesets with fresh namespaces
    (so that every measurement starts with an empty connection table)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pyfw-kbench-")
        self.dir = Path(self._tmp.name)
        self.exe = build_sender(self.dir)

    def rate(self, ruleset: str, frames: list[bytes]) -> tuple[float, int, int]:
        return kernel_rate(ruleset, frames, self.dir, self.exe)

    def ceiling(self, ruleset: str, frames: list[bytes]) -> float:
        return sender_ceiling(ruleset, frames, self.dir, self.exe)

    def close(self) -> None:
        self._tmp.cleanup()
