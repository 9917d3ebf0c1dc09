"""The TAP gateway beside Linux as the gateway (tests/tap/lab.py's TapLab
and KernelLab, same addresses, same rules), seen from the hosts: what the
neighbour cache sends and answers must be what the kernel's does."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import RULES, KernelLab, TapLab, root_problem  # noqa: E402

pytestmark = pytest.mark.root
if root_problem():
    pytest.skip(str(root_problem()), allow_module_level=True)


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TapLab, KernelLab]]:
    tap, kern = TapLab("d"), KernelLab()
    try:
        tap.up()
        kern.up(RULES.format(lan=kern.gl, wan=kern.gwn))
        tap.start(tmp_path_factory.mktemp("tapk"), RULES.format(lan="eth0", wan="eth1"))
        yield tap, kern
    finally:
        tap.down()
        kern.down()


def _arp_times(capture: str, target: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(rf"^(\d+\.\d+) ARP, Request who-has {re.escape(target)} ", capture, re.M)]


def test_an_unresolvable_neighbour_as_linux_handles_it(labs: tuple[TapLab, KernelLab]) -> None:
    """Three broadcast requests a second apart, then host unreachable for
    every packet that waited, from the address NAT gives back."""
    dumps, pings = [], []
    for lab in labs:
        dumps.append(lab.spawn(lab.wan, "timeout", "7", "tcpdump", "-l", "-n", "-tt", "-i", "eth0", "arp",
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    for lab in labs:
        pings.append(lab.spawn(lab.lan, "ping", "-n", "-c", "3", "-i", "0.3", "-W", "5", "203.0.113.77",
                               stdout=subprocess.PIPE))
    got = []
    for dump, ping in zip(dumps, pings):
        out = ping.communicate(timeout=20)[0]
        cap = dump.communicate(timeout=20)[0]
        times = _arp_times(cap, "203.0.113.77")
        errors = re.findall(r"From (\S+) icmp_seq=\d+ Destination Host Unreachable", out)
        got.append((len(times), [round(b - a) for a, b in zip(times, times[1:])], errors))
    pyfw, kernel = got
    assert kernel[0] == 3 and kernel[2] == ["203.0.113.1"] * 3, kernel  # what this kernel does
    assert pyfw == kernel
