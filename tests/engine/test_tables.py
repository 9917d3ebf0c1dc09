"""ipt_do_table semantics: first match, jumps, gotos, RETURN, policies, counters."""

from __future__ import annotations

import struct

from pyfw.engine.api import NF_ACCEPT, NF_DROP
from pyfw.engine.packet import Packet
from pyfw.engine.tables import compile_table, do_table
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore


def ruleset(text: str) -> Ruleset:
    return restore(Ruleset(), text, RestoreOptions(src_file="t.rules")).ruleset


def ip(src: str, dst: str, proto: int = 17, length: int = 28, frag: int = 0) -> Packet:
    def a(s: str) -> bytes:
        return bytes(int(x) for x in s.split("."))

    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, frag, 64, proto, 0, a(src), a(dst))
    return Packet(bytearray(hdr + bytes(length - 20)), indev="eth0")


class NoEnv:
    host = None


def walk(text: str, pkt: Packet, table: str = "filter", chain: str = "INPUT") -> tuple[int, Ruleset, list[str]]:
    rs = ruleset(text)
    ct = compile_table(rs.tables[table], NoEnv())  # type: ignore[arg-type]
    trace: list = []
    v = do_table(ct, chain, pkt, trace)
    return v, rs, [s.label() for s in trace]


BASE = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"


def test_first_match_and_counters() -> None:
    v, rs, trace = walk(BASE + "-A INPUT -s 10.0.0.0/8 -j DROP\n-A INPUT -j ACCEPT\nCOMMIT\n",
                        ip("10.1.2.3", "1.1.1.1"))
    assert v == NF_DROP
    r = rs.tables["filter"].chains["INPUT"].rules
    assert (r[0].counters.packets, r[0].counters.bytes) == (1, 28)
    assert r[1].counters.packets == 0
    assert trace == ["filter:INPUT:1"]


def test_policy_counts() -> None:
    v, rs, trace = walk(BASE.replace(":INPUT ACCEPT", ":INPUT DROP") + "-A INPUT -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n",
                        ip("11.1.2.3", "1.1.1.1", length=40))
    assert v == NF_DROP
    c = rs.tables["filter"].chains["INPUT"].counters
    assert (c.packets, c.bytes) == (1, 40)
    assert trace == ["filter:INPUT:policy"]


def test_jump_return_and_goto() -> None:
    text = BASE + (":a - [0:0]\n:b - [0:0]\n"
                   "-A INPUT -j a\n-A INPUT -j DROP\n"
                   "-A a -p udp -j RETURN\n-A a -g b\n"
                   "-A b -j RETURN\nCOMMIT\n")
    # udp: a returns, then INPUT's DROP
    v, _, trace = walk(text, ip("1.1.1.1", "2.2.2.2", proto=17))
    assert v == NF_DROP and trace == ["filter:INPUT:1", "filter:a:1", "filter:INPUT:2"]
    # tcp: a goes to b, b returns -- to INPUT after the jump into a
    v, _, trace = walk(text, ip("1.1.1.1", "2.2.2.2", proto=6, length=40))
    assert v == NF_DROP and trace == ["filter:INPUT:1", "filter:a:2", "filter:b:1", "filter:INPUT:2"]


def test_goto_from_builtin_ends_in_policy() -> None:
    text = BASE.replace(":INPUT ACCEPT", ":INPUT DROP") + ":a - [0:0]\n-A INPUT -g a\n-A INPUT -j ACCEPT\nCOMMIT\n"
    v, rs, trace = walk(text, ip("1.1.1.1", "2.2.2.2"))
    assert v == NF_DROP and trace == ["filter:INPUT:1", "filter:INPUT:policy"]


def test_return_in_builtin_is_policy() -> None:
    v, _, trace = walk(BASE + "-A INPUT -j RETURN\n-A INPUT -j DROP\nCOMMIT\n", ip("1.1.1.1", "2.2.2.2"))
    assert v == NF_ACCEPT and trace == ["filter:INPUT:1", "filter:INPUT:policy"]


def test_ip_part() -> None:
    text = BASE + ("-A INPUT ! -s 10.0.0.0/8 -j DROP\n-A INPUT -i eth+ -p tcp -j DROP\n"
                   "-A INPUT -f -j DROP\n-A INPUT ! -i eth0 -j DROP\nCOMMIT\n")
    assert walk(text, ip("10.0.0.1", "1.1.1.1", proto=17))[0] == NF_ACCEPT
    assert walk(text, ip("11.0.0.1", "1.1.1.1"))[0] == NF_DROP
    assert walk(text, ip("10.0.0.1", "1.1.1.1", proto=6, length=40))[0] == NF_DROP
    assert walk(text, ip("10.0.0.1", "1.1.1.1", frag=0x0010))[0] == NF_DROP


def test_rule_source_lines() -> None:
    _, _, _ = walk(BASE + "-A INPUT -j ACCEPT\nCOMMIT\n", ip("1.1.1.1", "2.2.2.2"))
    rs = ruleset(BASE + "-A INPUT -j ACCEPT\nCOMMIT\n")
    r = rs.tables["filter"].chains["INPUT"].rules[0]
    assert (r.src_file, r.src_line) == ("t.rules", 5)
