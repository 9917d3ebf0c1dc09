"""MASQUERADE through the extension API: libipt_MASQUERADE.t and
iptables-legacy 1.8.9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import SHARED
from tfile import check_t_line, t_lines

from pyfw.errors import KernelError, ParameterProblem
from pyfw.ext.base import ArgvCursor, Call, CheckContext, RuleIp
from pyfw.ext.nat_common import RANGE_MAP_IPS, NatRange
from pyfw.ext.target_masquerade import EXTENSIONS

EXT = EXTENSIONS[0]
TCP, UDP = 6, 17


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
    return data


@pytest.mark.parametrize("proto,opts,saved,listed", [
    (0, [], "", ""),
    (0, [("random", None)], " --random", " random"),
    (0, [("random-fully", None)], " --random-fully", " random-fully"),
    (TCP, [("to-ports", "1024")], " --to-ports 1024", " masq ports: 1024"),
    (UDP, [("to-ports", "1024-65535")], " --to-ports 1024-65535", " masq ports: 1024-65535"),
    (UDP, [("to-ports", "80"), ("random", None), ("random-fully", None)],
     " --to-ports 80 --random --random-fully", " masq ports: 80 random random-fully"),
    # compat struct: the base port is lost, the offset flag stays.
    (UDP, [("to-ports", "80-90/100")], " --to-ports 80-90/0", " masq ports: 80-90/0"),
])
def test_save_print(proto: int, opts: list[tuple[str, str | None]], saved: str, listed: str) -> None:
    """libipt_MASQUERADE.t:3-7 and oracle runs."""
    data = run(opts, proto)
    assert EXT.save(data, RuleIp(proto)) == saved
    assert EXT.print(data, RuleIp(proto), True) == listed


@pytest.mark.parametrize("proto,arg,message", [
    (UDP, "1024-65536", "Port `65536' not valid"),        # .t:8
    (UDP, "-1", "Port `-1' not valid"),                  # .t:9
    (0, "80", "Need TCP, UDP, SCTP or DCCP with port specification"),
    (UDP, "80:90", "Invalid port:port syntax - use dash"),
    (UDP, "1.1.1.1:80", "Garbage after port value: `.1.1.1:80'"),
])
def test_errors(proto: int, arg: str, message: str) -> None:
    with pytest.raises(ParameterProblem) as exc:
        run([("to-ports", arg)], proto)
    assert exc.value.message == message


def test_no_persistent_option() -> None:
    with pytest.raises(KeyError):
        EXT.option("persistent")


def test_kernel() -> None:
    assert EXT.table == "nat" and EXT.hooks == frozenset({"POSTROUTING"})
    ctx = CheckContext("nat", "POSTROUTING", frozenset({"POSTROUTING"}), RuleIp())
    EXT.check(run([]), ctx)
    with pytest.raises(KernelError):
        EXT.check(NatRange(flags=RANGE_MAP_IPS), ctx)


# ---------------------------------------------------------------- end to end

T_FILE = (SHARED / "conformance/iptables-t/libipt_MASQUERADE.t")


@pytest.mark.skipif(not T_FILE.exists(), reason="conformance data not present")
@pytest.mark.parametrize("n,table,rule,expected,chains", t_lines(T_FILE) if T_FILE.exists() else [])
def test_t_file(tmp_path: Path, n: int, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """Every line of libipt_MASQUERADE.t (1.8.9 passes them all), as the upstream harness runs it."""
    check_t_line(tmp_path, table, rule, expected, chains)
