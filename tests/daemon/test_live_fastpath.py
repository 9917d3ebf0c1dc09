"""The daemon's engine takes the engine's fast path for established flows
(LiveEngine overrides steps the fast path replays, and asks for it anyway),
and the verdicts it sends are byte for byte those of the slow path.

No kernel: the Adapter runs on pyfw.daemon.nfqnl with a fake socket that
plays the kernel's part (packet messages in, verdict messages out), so this
runs unprivileged."""

from __future__ import annotations

import collections
import struct
from pathlib import Path

import pytest

from pyfw.daemon import nfqnl
from pyfw.daemon import nfqueue as nq
from pyfw.daemon.hostinfo import host_dict
from pyfw.daemon.main import _load_ruleset
from pyfw.engine.host import host_from_dict
from pyfw.wire.checksum import checksum
from tests.daemon.test_nfqnl import FakeSocket, attrs, messages, packet_message

ROOT = Path(__file__).resolve().parents[2]

LINKS = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "link_type": "ether", "address": "02:00:00:00:01:01", "mtu": 1500,
     "addr_info": [{"family": "inet", "local": "192.168.1.1", "prefixlen": 24}]},
    {"ifname": "eth1", "link_type": "ether", "address": "02:00:00:00:02:01", "mtu": 1500,
     "addr_info": [{"family": "inet", "local": "203.0.113.2", "prefixlen": 24}]},
]
ROUTES = [{"dst": "default", "gateway": "203.0.113.1", "dev": "eth1"}]
IFINDEX = {"eth0": 3, "eth1": 4}


class Kernel(FakeSocket):
    """Packet messages in order; every datagram the adapter sends is kept."""

    def __init__(self) -> None:
        super().__init__([])
        self.incoming = collections.deque()  # type: ignore[assignment]

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        if not self.incoming:
            raise BlockingIOError
        data = self.incoming.popleft()  # type: ignore[attr-defined]
        buf[:len(data)] = data
        return len(data)


class FakeQueue(nfqnl.NfQueue):
    def __init__(self) -> None:  # no netlink socket
        super().__init__(Kernel())

    def bind(self, queue_num, user_callback, max_len=0, **kw) -> None:  # type: ignore[no-untyped-def, override]
        self.num, self.callback = queue_num, user_callback
        self._res_id = __import__("socket").htons(queue_num)


def ip_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64, ident: int = 1) -> bytes:
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), ident, 0, ttl, 17, 0,
                               bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))))
    struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    return bytes(ip) + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def bad_udp_length(ip: bytes) -> bytes:
    """The datagram with a UDP length past the packet's end."""
    return ip[:24] + struct.pack("!H", 400) + ip[26:]


def run_flow(monkeypatch: pytest.MonkeyPatch, fastpath: str, adapter_fast: bool = True,
             one_pass: bool = False, odd: bool = False) -> tuple[list[bytes], object]:
    """A UDP exchange through home-gateway.rules: 20 datagrams out (each
    queued again at POSTROUTING, as the kernel does for the daemon's mark,
    unless `one_pass`: the kernel takes the new source at once), 20 answers
    back, and with `odd` each time an unasked datagram from wan (dropped) and
    one with a UDP length past its end (accepted, as the kernel's conntrack
    calls it invalid but FORWARD's -i lan rule takes it); the verdict datagrams the adapter sent.  `adapter_fast`
    False: every packet through QueuedPacket and Adapter._packet, none
    through Adapter._fast."""
    monkeypatch.setenv("PYFW_FASTPATH", fastpath)
    monkeypatch.setattr(nq, "_queue_class", lambda: FakeQueue)
    monkeypatch.setattr("pyfw.daemon.queueconf.configure", lambda *a, **k: [])
    host = host_from_dict(host_dict(LINKS, ROUTES, {"net.ipv4.ip_forward": 1}), source="test")
    ruleset, _msg, _rc = _load_ruleset(str(ROOT / "rulesets" / "home-gateway.rules"))
    eng = nq.LiveEngine(ruleset, host)
    ad = nq.Adapter(7, eng)  # (queue 7, as the helpers of test_nfqnl read them)
    ad._names = {v: k for k, v in IFINDEX.items()}
    handled = []
    if adapter_fast:
        ad.nfq.fast = lambda f: handled.append(ad._fast(f)) or handled[-1]
    else:
        ad.nfq.fast = None
    if one_pass:
        ad.local_source = lambda dev: True
    kernel = ad.nfq.sock
    pid = 0
    for i in range(20):
        out = ip_udp("192.168.1.5", "203.0.113.1", 40000, 53, b"q%02d" % i, ident=i + 1)
        pid += 1
        kernel.incoming.append(packet_message(pid, 0, out, indev=IFINDEX["eth0"]))
        ad.run_ready()
        for extra in (ip_udp("203.0.113.1", "192.168.1.5", 53, 40001, b"no", ident=200 + i),
                    bad_udp_length(ip_udp("192.168.1.5", "203.0.113.1", 40000, 53, b"bad", ident=300 + i))) if odd else ():
            pid += 1
            kernel.incoming.append(packet_message(pid, 0, extra, indev=IFINDEX["eth1" if extra[12] == 203 else "eth0"]))
            ad.run_ready()
        if one_pass:
            pid += 1
            back = ip_udp("203.0.113.1", "203.0.113.2", 53, 40000, b"a%02d" % i, ident=100 + i)
            kernel.incoming.append(packet_message(pid, 0, back, indev=IFINDEX["eth1"],
                                                  hw=b"\x02\x00\x00\x00\x02\xfe"))
            ad.run_ready()
            continue
        # the kernel forwards it (TTL - 1) and queues it again at POSTROUTING
        fwd = bytearray(out)
        fwd[8] -= 1
        struct.pack_into("!H", fwd, 10, 0)
        struct.pack_into("!H", fwd, 10, checksum(bytes(fwd[:20])))
        pid += 1
        kernel.incoming.append(packet_message(pid, 4, bytes(fwd), indev=0, mark=ad.post_mark, hw=None))
        ad.run_ready()
        back = ip_udp("203.0.113.1", "203.0.113.2", 53, 40000, b"a%02d" % i, ident=100 + i)
        pid += 1
        kernel.incoming.append(packet_message(pid, 0, back, indev=IFINDEX["eth1"],
                                              hw=b"\x02\x00\x00\x00\x02\xfe"))
        ad.run_ready()
    if adapter_fast:
        assert handled.count(True) >= 30, handled  # (the first packets of each interface go the long way)
    return kernel.sent, eng


def test_established_flows_take_the_fast_path_with_the_slow_paths_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    slow, slow_eng = run_flow(monkeypatch, "0")
    fast, fast_eng = run_flow(monkeypatch, "1")
    assert slow_eng.fastpath is None
    fp = fast_eng.fastpath
    assert fp is not None and fp.hits >= 30, (fp.hits, fp.learnt)
    assert fast == slow
    # and what they say: the reply de-masqueraded to the laptop, TTL as it came
    payloads = [attrs(body).get(nfqnl.NFQA_PAYLOAD) for d in fast for _t, body in messages(d)]
    reply = [p for p in payloads if p is not None][-1]
    assert reply[16:20] == bytes([192, 168, 1, 5]) and reply[8] == 64 and checksum(reply[:20]) in (0, 0xFFFF)


@pytest.mark.parametrize("one_pass", [False, True])
def test_adapter_fast_handler_sends_the_general_paths_verdicts(monkeypatch: pytest.MonkeyPatch,
                                                               one_pass: bool) -> None:
    general, _ = run_flow(monkeypatch, "1", adapter_fast=False, one_pass=one_pass, odd=True)
    fast, _ = run_flow(monkeypatch, "1", adapter_fast=True, one_pass=one_pass, odd=True)
    assert fast == general
    verdicts = [(struct.unpack("!I", a[nfqnl.NFQA_VERDICT_HDR][:4])[0], a.get(nfqnl.NFQA_PAYLOAD))
                for d in fast for t, body in messages(d) if t == nfqnl.NFQNL_MSG_VERDICT for a in [attrs(body)]]
    assert sum(v == nfqnl.NF_DROP for v, _p in verdicts) == 20  # the unasked ones
    outs = [p for v, p in verdicts if p is not None and p[12:16] == bytes([203, 0, 113, 2])]
    if one_pass:
        # masqueraded at PREROUTING, TTL as it came (the kernel takes one off), a valid header
        assert len(outs) == 20 and all(p[8] == 64 and checksum(p[:20]) in (0, 0xFFFF) for p in outs)
    else:
        assert len(outs) == 20 and all(p[8] == 63 for p in outs)  # swapped in at POSTROUTING
