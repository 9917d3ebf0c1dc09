"""Interop with Linux's TCP: curl in a namespace fetches the status page
and a 10 MB body from pyfw.stack over a TAP device."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from oracle import root_netns_problem
from tap_link import STACK_ADDR, TapLink

from pyfw.stack import Stack
from pyfw.stack.http import pattern_bytes, status_app
from pyfw.stack.stack import format_addr

problem = root_netns_problem() or (None if shutil.which("curl") else "curl not installed")
pytestmark = [pytest.mark.root, pytest.mark.skipif(problem is not None, reason=str(problem))]

N = 10 * 1024 * 1024
URL = f"http://{format_addr(STACK_ADDR)}"


def _stack(cc: str) -> Stack:
    stack = Stack(cc=cc)
    stack.listen(STACK_ADDR, 80, status_app(lambda: {"counters": stack.stats(), "sockets": stack.sockets(),
                                                       "interfaces": [{"name": "tap0", "mtu": 1500}]}))
    return stack


@pytest.mark.parametrize("cc", ["cubic", "reno"])
def test_curl_fetches_status_and_10mb(cc: str) -> None:
    stack = _stack(cc)
    with TapLink(stack) as link:
        proc = link.popen(["curl", "-sS", "--max-time", "20", f"{URL}/status.json", "-o", "-", "-w",
                           "\\n%{http_code}", f"{URL}/"])
        assert link.pump(lambda: proc.poll() is not None, timeout=25)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        text = out.decode()
        status = json.loads(text[:text.index("\n}") + 2])
        assert status["counters"]["PassiveOpens"] >= 1
        assert "<h1>pyfw status</h1>" in text and text.endswith("200")

        proc = link.popen(["sh", "-c", f"curl -sS --max-time 60 '{URL}/bytes?n={N}' | sha256sum"])
        assert link.pump(lambda: proc.poll() is not None, timeout=65)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert out.split()[0].decode() == hashlib.sha256(pattern_bytes(N)).hexdigest()
        assert stack.counters["StackErrors"] == 0, stack.last_error
        assert stack.counters["AppErrors"] == 0, stack.last_app_error
