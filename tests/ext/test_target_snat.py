"""SNAT through the extension API: libipt_SNAT.t and iptables-legacy 1.8.9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import SHARED
from tfile import check_t_line, t_lines

from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgvCursor, Call, RuleIp
from pyfw.ext.nat_common import RANGE_PROTO_OFFSET, NatRange
from pyfw.ext.target_snat import EXTENSIONS

EXT = EXTENSIONS[0]
TCP = 6


def run(opts: list[tuple[str, str | None]], proto: int = 0) -> Any:
    data = EXT.new_data()
    xflags: set[str] = set()
    udata: dict[str, Any] = {}
    ip = RuleIp(proto, 0)
    for name, arg in opts:
        opt = EXT.option(name)
        if name in xflags and not opt.multi:
            raise ParameterProblem(f'{EXT.name}: option "--{name}" can only be used once.\n')
        EXT.parse(Call(EXT, opt, arg, False, arg, data, xflags, ip, ArgvCursor([], 0), udata))
        xflags.add(name)
    EXT.final_check(data, xflags, udata)
    for opt in EXT.options:
        if opt.mand and opt.name not in xflags:
            raise ParameterProblem(f'{EXT.name}: option "--{opt.name}" must be specified\n')
    return data


def words(rule: str) -> list[tuple[str, str | None]]:
    """"--to-source X --random" -> [("to-source", "X"), ("random", None)]."""
    out: list[tuple[str, str | None]] = []
    parts = rule.split()
    i = 0
    while i < len(parts):
        name = parts[i][2:]
        if EXT.option(name).getopt_has_arg:
            out.append((name, parts[i + 1]))
            i += 2
        else:
            out.append((name, None))
            i += 1
    return out


@pytest.mark.parametrize("proto,rule", [
    (0, "--to-source 1.1.1.1"),
    (0, "--to-source 1.1.1.1-1.1.1.10"),
    (0, "--to-source 1.1.1.1 --random"),
    (0, "--to-source 1.1.1.1 --random-fully"),
    (0, "--to-source 1.1.1.1 --persistent"),
    (0, "--to-source 1.1.1.1 --random --persistent"),
    (0, "--to-source 1.1.1.1 --random --random-fully"),
    (0, "--to-source 1.1.1.1 --random --random-fully --persistent"),
    (TCP, "--to-source 1.1.1.1:1025-65535"),
    (TCP, "--to-source 1.1.1.1-1.1.1.10:1025-65535"),
    (TCP, "--to-source :5"),
])
def test_t_ok_lines(proto: int, rule: str) -> None:
    """libipt_SNAT.t:3,4,7-14 print back as given."""
    data = run(words(rule), proto)
    assert EXT.save(data, RuleIp(proto)) == " " + rule


def test_flag_order_is_fixed() -> None:
    data = run(words("--persistent --random-fully --to-source 1.1.1.1 --random"))
    assert EXT.save(data, RuleIp()) == " --to-source 1.1.1.1 --random --random-fully --persistent"
    assert EXT.print(data, RuleIp(), False) == " to:1.1.1.1 random random-fully persistent"


def test_print() -> None:
    data = run(words("--to-source 1.1.1.1-1.1.1.5 --random-fully --persistent"))
    assert EXT.print(data, RuleIp(), True) == " to:1.1.1.1-1.1.1.5 random-fully persistent"
    assert EXT.print(run(words("--to-source :5"), TCP), RuleIp(TCP), True) == " to::5"


def test_shifted_ports_lose_base() -> None:
    # Revision 0 has no base port: iptables-legacy saves ".../0".
    data = run(words("--to-source 1.1.1.1:1-2/3"), TCP)
    assert data.flags & RANGE_PROTO_OFFSET and data.base_port == 0
    assert EXT.save(data, RuleIp(TCP)) == " --to-source 1.1.1.1:1-2/0"
    assert EXT.print(data, RuleIp(TCP), False) == " to:1.1.1.1:1-2/0"


@pytest.mark.parametrize("proto,rule,message", [
    (0, "--to-source 1.1.1.1:1025-65535", "Need TCP, UDP, SCTP or DCCP with port specification"),
    (0, "--to-source 1.1.1.1 --to-source 2.2.2.2", 'SNAT: option "--to-source" can only be used once.\n'),
    (TCP, "--to-source 1.1.1.1-1.1.1.10:1025-65536", "Port `65536' not valid"),
    (TCP, "--to-source 1.1.1.1-1.1.1.10:1025-65535 --to-source 2.2.2.2-2.2.2.20:1025-65535",
     'SNAT: option "--to-source" can only be used once.\n'),
    (0, "", 'SNAT: option "--to-source" must be specified\n'),
])
def test_t_fail_lines(proto: int, rule: str, message: str) -> None:
    """libipt_SNAT.t:5,6,15,16,17."""
    with pytest.raises(ParameterProblem) as exc:
        run(words(rule), proto)
    assert exc.value.message == message


def test_numeric() -> None:
    assert run(words("--to-source 10.0.0.1-10.0.0.2:1024-2048"), 17) == NatRange(
        3, 0x0A000001, 0x0A000002, 1024, 2048, 0)


def test_kernel_constraints() -> None:
    assert EXT.table == "nat"
    assert EXT.hooks == frozenset({"POSTROUTING", "INPUT"})


# ---------------------------------------------------------------- end to end

T_FILE = (SHARED / "conformance/iptables-t/libipt_SNAT.t")


@pytest.mark.skipif(not T_FILE.exists(), reason="conformance data not present")
@pytest.mark.parametrize("n,table,rule,expected,chains", t_lines(T_FILE) if T_FILE.exists() else [])
def test_t_file(tmp_path: Path, n: int, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """Every line of libipt_SNAT.t (1.8.9 passes them all), as the upstream harness runs it."""
    check_t_line(tmp_path, table, rule, expected, chains)
