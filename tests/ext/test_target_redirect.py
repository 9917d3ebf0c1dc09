"""REDIRECT through the extension API: libxt_REDIRECT.t and
iptables-legacy 1.8.9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import SHARED
from tfile import check_t_line, t_lines

from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgvCursor, Call, RuleIp
from pyfw.ext.nat_common import NatRange
from pyfw.ext.target_redirect import EXTENSIONS

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


@pytest.mark.parametrize("proto,opts,saved", [
    (TCP, [("to-ports", "42")], " --to-ports 42"),            # .t:3
    (TCP, [("to-ports", "0")], " --to-ports 0"),              # .t:4
    (TCP, [("to-ports", "65535")], " --to-ports 65535"),      # .t:5
    (UDP, [("to-ports", "0-0")], " --to-ports 0"),            # .t:7
    (UDP, [("to-ports", "512-512")], " --to-ports 512"),      # .t:8
    (UDP, [("to-ports", "42-1234")], " --to-ports 42-1234"),  # .t:9
    (TCP, [("to-ports", "42-1234"), ("random", None)], " --to-ports 42-1234 --random"),  # .t:10
    (TCP, [("to-ports", "ssh")], " --to-ports 22"),           # .t:12
    (TCP, [("to-ports", "ftp-data")], " --to-ports 20"),      # .t:13
    (0, [("random", None)], " --random"),                     # .t:17
    (TCP, [], ""),
])
def test_save(proto: int, opts: list[tuple[str, str | None]], saved: str) -> None:
    assert EXT.save(run(opts, proto), RuleIp(proto)) == saved


@pytest.mark.parametrize("proto,arg,message", [
    (TCP, "65536", "Port `65536' not valid"),                                   # .t:6
    (TCP, "42-1234/567", "Shifted portmap ranges not supported with this kernel"),  # .t:11
    (TCP, "ftp-ssh", "Port `ftp-ssh' not valid"),                               # .t:14
    (TCP, "10-ssh", "Port `ssh' not valid"),                                    # .t:15
    (0, "42", "Need TCP, UDP, SCTP or DCCP with port specification"),           # .t:16
])
def test_errors(proto: int, arg: str, message: str) -> None:
    with pytest.raises(ParameterProblem) as exc:
        run([("to-ports", arg)], proto)
    assert exc.value.message == message


def test_print() -> None:
    data = run([("to-ports", "42-1234"), ("random", None)], TCP)
    assert EXT.print(data, RuleIp(TCP), False) == " redir ports 42-1234 random"
    assert EXT.print(run([], TCP), RuleIp(TCP), False) == ""
    assert data == NatRange(2 | 4, 0, 0, 42, 1234, 0)


def test_kernel() -> None:
    assert EXT.table == "nat" and EXT.hooks == frozenset({"PREROUTING", "OUTPUT"})


# ---------------------------------------------------------------- end to end

T_FILE = (SHARED / "conformance/iptables-t/libxt_REDIRECT.t")


@pytest.mark.skipif(not T_FILE.exists(), reason="conformance data not present")
@pytest.mark.parametrize("n,table,rule,expected,chains", t_lines(T_FILE) if T_FILE.exists() else [])
def test_t_file(tmp_path: Path, n: int, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """Every line of libxt_REDIRECT.t (1.8.9 passes them all), as the upstream harness runs it."""
    check_t_line(tmp_path, table, rule, expected, chains)
