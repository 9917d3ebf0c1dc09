"""DNAT through the extension API: libipt_DNAT.t and iptables-legacy 1.8.9's
messages, save and -L text (checked in a network namespace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import SHARED
from tfile import check_t_line, t_lines

from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgvCursor, Call, CheckContext, RuleIp
from pyfw.ext.nat_common import (
    RANGE_MAP_IPS,
    RANGE_PROTO_OFFSET,
    RANGE_PROTO_SPECIFIED,
    NatRange,
    inet_pton4,
)
from pyfw.ext.target_dnat import EXTENSIONS

EXT = EXTENSIONS[0]
TCP = 6


def run(opts: list[tuple[str, str | None]], proto: int = 0, invflags: int = 0) -> Any:
    """Parse options as the core would: once-only, then final and mand checks."""
    data = EXT.new_data()
    xflags: set[str] = set()
    udata: dict[str, Any] = {}
    ip = RuleIp(proto, invflags)
    for name, arg in opts:
        opt = EXT.option(name)
        if name in xflags and not opt.multi:
            raise ParameterProblem(f'{EXT.name}: option "--{name}" can only be used once.\n')
        call = Call(EXT, opt, arg, False, arg, data, xflags, ip, ArgvCursor([], 0), udata)
        EXT.parse(call)
        xflags.add(name)
    EXT.final_check(data, xflags, udata)
    for opt in EXT.options:
        if opt.mand and opt.name not in xflags:
            raise ParameterProblem(f'{EXT.name}: option "--{opt.name}" must be specified\n')
    return data


def save(arg: str, proto: int = TCP, *flags: str) -> str:
    data = run([("to-destination", arg), *[(f, None) for f in flags]], proto)
    return EXT.save(data, RuleIp(proto))


@pytest.mark.parametrize("arg,expected", [
    ("1.1.1.1", " --to-destination 1.1.1.1"),
    ("1.1.1.1-1.1.1.10", " --to-destination 1.1.1.1-1.1.1.10"),
    ("1.1.1.1:1025-65535", " --to-destination 1.1.1.1:1025-65535"),
    ("1.1.1.1-1.1.1.10:1025-65535", " --to-destination 1.1.1.1-1.1.1.10:1025-65535"),
    ("1.1.1.1:1000-2000/1000", " --to-destination 1.1.1.1:1000-2000/1000"),
    ("1.1.1.1:1000-2000/3000", " --to-destination 1.1.1.1:1000-2000/3000"),
    ("1.1.1.1:1000-2000/65535", " --to-destination 1.1.1.1:1000-2000/65535"),
    ("1.1.1.1:ssh", " --to-destination 1.1.1.1:22"),
    ("1.1.1.1:ftp-data", " --to-destination 1.1.1.1:20"),
    ("1.1.1.1:10-20/ftp", " --to-destination 1.1.1.1:10-20/21"),
    # Oracle quirks: trailing text after the base port is ignored, a colon
    # at offset 2 means "ports only", strtoul base 0 and leading blanks.
    ("1.1.1.1:80-90/5x", " --to-destination 1.1.1.1:80-90/5"),
    ("ab:80", " --to-destination :80"),
    (":80", " --to-destination :80"),
    ("1.1.1.1:0x50", " --to-destination 1.1.1.1:80"),
    ("1.1.1.1: 80", " --to-destination 1.1.1.1:80"),
    ("1.1.1.1-1.1.1.0", " --to-destination 1.1.1.1-1.1.1.0"),
    ("1.1.1.1:80-80", " --to-destination 1.1.1.1:80"),
])
def test_save(arg: str, expected: str) -> None:
    assert save(arg) == expected


def test_values_numeric() -> None:
    data = run([("to-destination", "1.1.1.1-1.1.1.10:1000-2000/3000")], TCP)
    assert data == NatRange(
        RANGE_MAP_IPS | RANGE_PROTO_SPECIFIED | RANGE_PROTO_OFFSET,
        0x01010101, 0x0101010A, 1000, 2000, 3000)


def test_flags_save_and_print() -> None:
    data = run([("to-destination", "1.1.1.1"), ("random", None), ("persistent", None)])
    assert EXT.save(data, RuleIp()) == " --to-destination 1.1.1.1 --random --persistent"
    assert EXT.print(data, RuleIp(), False) == " to:1.1.1.1 random persistent"


@pytest.mark.parametrize("arg,text", [
    ("1.1.1.1:80-90/100", " to:1.1.1.1:80-90/100"),
    (":80", " to::80"),
    ("1.1.1.1", " to:1.1.1.1"),
])
def test_print(arg: str, text: str) -> None:
    data = run([("to-destination", arg)], TCP)
    assert EXT.print(data, RuleIp(TCP), True) == text


@pytest.mark.parametrize("arg,proto,message", [
    # libipt_DNAT.t:5
    ("1.1.1.1:1025-65535", 0, "Need TCP, UDP, SCTP or DCCP with port specification"),
    # libipt_DNAT.t:9
    ("1.1.1.1-1.1.1.10:1025-65536", TCP, "Port `65536' not valid"),
    # libipt_DNAT.t:14, 15
    ("1.1.1.1:1000-2000/0", TCP, "Port `0' not valid"),
    ("1.1.1.1:1000-2000/65536", TCP, "Port `65536' not valid"),
    # libipt_DNAT.t:18
    ("1.1.1.1:echo-ssh", TCP, "Port `echo-ssh' not valid"),
    ("1.1.1.1:80:90", TCP, 'Bad IP address "1.1.1.1:80:90"'),
    ("1.1.1.1:80x", TCP, "Garbage after port value: `x'"),
    ("1.1.1.1:80-90x", TCP, "Garbage after port range: `x'"),
    ("1.1.1.1:90-80", TCP, "Port range `80' funky"),
    ("1.1.1.1:80-90/", TCP, "Port `' not valid"),
    ("1.1.1.1:80-", TCP, "Port `' not valid"),
    ("1.1.1.1:", TCP, "Port `' not valid"),
    ("1.1.1.1-", TCP, 'Bad IP address ""'),
    ("01.1.1.1", TCP, 'Bad IP address "01.1.1.1"'),
    ("1.1.1", TCP, 'Bad IP address "1.1.1"'),
    ("[1.1.1.1]:80", TCP, "Invalid address format"),
    ("", TCP, 'Bad IP address ""'),
    ("0x50", TCP, 'Bad IP address "0x50"'),
    ("1.1.1.1:80-ssh", TCP, "Port `ssh' not valid"),
    ("1.1.1.1:ssh-90", TCP, "Port `ssh-90' not valid"),
    ("a:80", TCP, 'Bad IP address "a"'),
    (":", TCP, "Port `' not valid"),
    ("-", TCP, 'Bad IP address ""'),
])
def test_parse_errors(arg: str, proto: int, message: str) -> None:
    with pytest.raises(ParameterProblem) as exc:
        run([("to-destination", arg)], proto)
    assert exc.value.message == message
    assert exc.value.exit_code == 2


def test_ports_need_proto_at_parse_time_not_inversion() -> None:
    # `! -p tcp` still allows ports (iptables only looks at ip.proto); ICMP too.
    assert run([("to-destination", "1.1.1.1:80")], TCP, 0x40).min_port == 80
    assert run([("to-destination", "1.1.1.1:80")], 1).min_port == 80
    for proto in (17, 132, 33):
        run([("to-destination", "1.1.1.1:80")], proto)


def test_mandatory_and_once() -> None:
    # libipt_DNAT.t:20, 6, 10
    with pytest.raises(ParameterProblem) as exc:
        run([])
    assert exc.value.message == 'DNAT: option "--to-destination" must be specified\n'
    with pytest.raises(ParameterProblem):
        run([("to-destination", "1.1.1.1"), ("to-destination", "2.2.2.2")])


def test_kernel_constraints() -> None:
    assert EXT.table == "nat"
    assert EXT.hooks == frozenset({"PREROUTING", "OUTPUT"})
    assert EXT.revision == 2
    data = run([("to-destination", "1.1.1.1")])
    EXT.check(data, CheckContext("nat", "PREROUTING", frozenset({"PREROUTING"}), RuleIp()))


def test_inet_pton4() -> None:
    assert inet_pton4("255.255.255.255") == 0xFFFFFFFF
    assert inet_pton4("0.0.0.0") == 0
    for bad in ("256.1.1.1", "1.1.1.1.", "1..1.1", " 1.1.1.1", "1.1.1.1 ", "1.1.1.+1"):
        assert inet_pton4(bad) is None


def test_data_equality() -> None:
    a = run([("to-destination", "1.1.1.1:22")], TCP)
    b = run([("to-destination", "1.1.1.1:ssh")], TCP)
    assert a == b


# ---------------------------------------------------------------- end to end

T_FILE = (SHARED / "conformance/iptables-t/libipt_DNAT.t")


@pytest.mark.skipif(not T_FILE.exists(), reason="conformance data not present")
@pytest.mark.parametrize("n,table,rule,expected,chains", t_lines(T_FILE) if T_FILE.exists() else [])
def test_t_file(tmp_path: Path, n: int, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """Every line of libipt_DNAT.t (1.8.9 passes them all), as the upstream harness runs it."""
    check_t_line(tmp_path, table, rule, expected, chains)
