"""The worker steering programs (pyfw.daemon.steer) run on a small classic-BPF
interpreter: each packet matches exactly one worker's program, the one
`bucket` names, for the key its class takes (the quoted header for ICMP
errors, addresses only for fragments).  The kernel runs them in
tests/daemon/test_workers.py."""

from __future__ import annotations

import struct

import pytest

from pyfw.daemon import steer


def run_bpf(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """Classic BPF as the kernel runs it for xt_bpf (loads past the end: no match)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        op, jt, jf, k = prog[pc]
        pc += 1
        try:
            if op == steer.LD_W_ABS:
                a = struct.unpack_from("!I", pkt, k)[0]
            elif op == steer.LD_H_ABS:
                a = struct.unpack_from("!H", pkt, k)[0]
            elif op == steer.LD_B_ABS:
                a = pkt[k]
            elif op == steer.LD_W_IND:
                a = struct.unpack_from("!I", pkt, x + k)[0]
            elif op == steer.LD_B_IND:
                a = pkt[x + k]
            elif op == steer.LDX_B_MSH:
                x = 4 * (pkt[k] & 0xF)
            elif op == steer.LDX_MEM:
                x = mem[k]
            elif op == steer.ST:
                mem[k] = a
            elif op == steer.TAX:
                x = a
            elif op == steer.ALU_RSH_K:
                a >>= k
            elif op == steer.ALU_XOR_X:
                a ^= x
            elif op == steer.ALU_MOD_K:
                a %= k
            elif op == steer.JA:
                pc += k
            elif op == steer.JEQ_K:
                pc += jt if a == k else jf
            elif op == steer.JSET_K:
                pc += jt if a & k else jf
            elif op == steer.RET_K:
                return k
            else:
                raise AssertionError(f"opcode {op:#x}")
        except (struct.error, IndexError):
            return 0


def ip(src: int, dst: int, proto: int, payload: bytes, frag: int = 0, ihl: int = 5) -> bytes:
    head = struct.pack("!BBHHHBBHII", 0x40 | ihl, 0, 20 + len(payload), 1, frag, 64, proto, 0, src, dst)
    return head + b"\x01" * (ihl * 4 - 20) + payload


A, B = 0x0A480102, 0xCB007109  # 10.72.1.2, 203.0.113.9


def workers_matching(pkt: bytes, kind: str, err: str, n: int, local: list[int] | None = None) -> list[int]:
    last = [] if any(run_bpf(steer.program(kind, err, n, k, local or ()), pkt) for k in range(n - 1)) else [n - 1]
    return [k for k in range(n - 1) if run_bpf(steer.program(kind, err, n, k, local or ()), pkt)] + last


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("kind,err", [("src", "dst"), ("dst", "src"), ("xor", "xor"), ("dst", "dst")])
def test_every_packet_matches_its_bucket(n: int, kind: str, err: str) -> None:
    for i in range(40):
        src, dst = A + i * 7919, B + i * 104729
        udp = ip(src, dst, 17, struct.pack("!HHHH", 1000 + i, 53, 8, 0))
        assert workers_matching(udp, kind, err, n) == [steer.bucket(steer.flow_key(src, dst, kind), n)]
        # an ICMP error quoting a packet (with IP options on the outer header)
        quoted = ip(dst, src, 6, b"\0" * 8)
        icmp = ip(0x01020304, src, 1, bytes([11, 0, 0, 0, 0, 0, 0, 0]) + quoted, ihl=6)
        assert workers_matching(icmp, kind, err, n) == [steer.bucket(steer.flow_key(dst, src, err), n)]
        # an echo request hashes like any packet; so does a later fragment of an ICMP error
        echo = ip(src, dst, 1, bytes([8, 0, 0, 0, 0, 1, 0, 1]))
        assert workers_matching(echo, kind, err, n) == [steer.bucket(steer.flow_key(src, dst, kind), n)]
        later = ip(src, dst, 1, bytes([11, 0, 0, 0]) + b"\0" * 20, frag=185)
        assert workers_matching(later, kind, err, n) == [steer.bucket(steer.flow_key(src, dst, kind), n)]


def test_short_packet_matches_no_program() -> None:
    # the kernel rules give it to the last worker, which needs no program
    assert not any(run_bpf(steer.program("src", "dst", 3, k), b"\x45\0\0\x10" + b"\0" * 6) for k in range(3))
    assert len(steer.program("xor", "xor", 3, 1)) <= 64  # xt_bpf's limit


def test_both_directions_through_nat_share_a_worker() -> None:
    """SNAT: lan client -> server, reply server -> gateway; DNAT: client ->
    gateway, reply lan server -> client; keyed as the kernel rules key them."""
    gw, lan, server, srv_lan = 0xCB007101, 0x0A480102, 0xCB007107, 0x0A480103
    for n in (2, 3):
        # lan -> wan: arrives inside to a remote (dst key); reply arrives outside (src key)
        assert steer.bucket(steer.flow_key(lan, server, "dst"), n) == steer.bucket(steer.flow_key(server, gw, "src"), n)
        # port forward: arrives outside (src key); reply arrives inside to a remote (dst key)
        assert steer.bucket(steer.flow_key(server, gw, "src"), n) == steer.bucket(steer.flow_key(srv_lan, server, "dst"), n)


def test_rules_cover_every_class_once_per_worker() -> None:
    topo = steer.Topology(("eth1",), ("10.72.1.0/24",))
    tag = ["-m", "comment", "--comment", "t"]
    rules = steer.worker_rules(7, 3, topo, tag, lambda q: ["-j", "NFQUEUE", "--queue-num", str(q)])
    pre = [spec for table, chain, spec in rules if chain == "PREROUTING"]
    assert pre[0] == [*tag, "-j", "NOTRACK"]
    assert len(pre) == 1 + 4 * 3  # outside, local, one inside prefix, the rest
    queues = [spec[-1] for spec in pre[1:]]
    assert queues == ["7", "8", "9"] * 4
    posts = [spec for table, chain, spec in rules if table == "mangle"]
    assert [p[3] for p in posts] == [f"{steer.post_mark(k):#x}/0xffff0000" for k in range(3)]
    with pytest.raises(ValueError):
        steer.worker_rules(7, 1, topo, tag, lambda q: [])


def test_error_about_a_packet_to_the_gateway_is_keyed_by_its_sender() -> None:
    """The gateway's own port unreachable to a lan host (OUTPUT, out inside):
    keyed like the lan host's packets to the gateway, by the lan host."""
    gw_in, gw_out, lan, remote = 0x0A490101, 0xCB007101, 0x0A490102, 0xCB007109
    for n in (2, 3):
        for host in range(lan, lan + 12):
            quoted = ip(host, gw_in, 17, b"\0" * 8)
            err = ip(gw_in, host, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted)
            got = workers_matching(err, "dst", "dst", n, local=[gw_in, gw_out])
            assert got == [steer.bucket(host, n)]
            # an error about a forwarded packet still goes by the quoted destination
            fwd = ip(gw_in, host, 1, bytes([11, 0, 0, 0, 0, 0, 0, 0]) + ip(host, remote + host, 6, b"\0" * 8))
            assert workers_matching(fwd, "dst", "dst", n, local=[gw_in, gw_out]) == [steer.bucket(remote + host, n)]
    assert len(steer.program("dst", "dst", 3, 0, list(range(100)))) <= 64
