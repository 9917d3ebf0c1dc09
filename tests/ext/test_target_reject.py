"""REJECT through the extension API: libipt_REJECT.t, the abbreviations
iptables accepts, and the kernel's tcp-reset check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import SHARED
from tfile import check_t_line, t_lines

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import INV_PROTO, ArgvCursor, Call, CheckContext, RuleIp
from pyfw.ext.target_reject import EXTENSIONS, TCP_RESET

EXT = EXTENSIONS[0]


def run(arg: str | None, proto: int = 0) -> Any:
    data = EXT.new_data()
    if arg is not None:
        opt = EXT.option("reject-with")
        EXT.parse(Call(EXT, opt, arg, False, arg, data, set(), RuleIp(proto), ArgvCursor([], 0)))
    return data


def ctx(proto: int = 0, invflags: int = 0, chain: str = "INPUT") -> CheckContext:
    return CheckContext("filter", chain, frozenset({chain}), RuleIp(proto, invflags))


@pytest.mark.parametrize("name", [
    "icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable",
    "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited",
    "icmp-admin-prohibited",
])
def test_t_lines(name: str) -> None:
    """libipt_REJECT.t:3-9 print back as given."""
    data = run(name)
    assert EXT.save(data, RuleIp()) == f" --reject-with {name}"
    assert EXT.print(data, RuleIp(), False) == f" reject-with {name}"
    EXT.check(data, ctx())


def test_default() -> None:
    """libipt_REJECT.t:2: no option saves the default."""
    assert EXT.save(run(None), RuleIp()) == " --reject-with icmp-port-unreachable"


@pytest.mark.parametrize("arg,name", [
    ("", "icmp-net-unreachable"),
    ("icmp-h", "icmp-host-unreachable"),
    ("HOST-P", "icmp-host-prohibited"),
    ("t", "tcp-reset"),
    ("tcp-rst", "tcp-reset"),
    ("a", "icmp-admin-prohibited"),
    ("port-unreach", "icmp-port-unreachable"),
])
def test_abbreviations(arg: str, name: str) -> None:
    assert EXT.save(run(arg), RuleIp()) == f" --reject-with {name}"


def test_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    for arg in ("x", "icmp-net-unreachablex"):
        with pytest.raises(ParameterProblem) as exc:
            run(arg)
        assert exc.value.message == f'unknown reject type "{arg}"'
    assert capsys.readouterr().err == ""
    with pytest.raises(ParameterProblem) as exc:
        run("echo")
    assert exc.value.message == 'unknown reject type "echo"'
    assert capsys.readouterr().err == "--reject-with echo-reply no longer supported\n"


def test_tcp_reset_needs_tcp() -> None:
    data = run("tcp-reset")
    assert data.with_ == TCP_RESET
    EXT.check(data, ctx(6))
    for c in (ctx(0), ctx(17), ctx(6, INV_PROTO)):
        with pytest.raises(KernelError) as exc:
            EXT.check(data, c)
        assert exc.value.message == EINVAL
    # Checked in any chain, even one no hook reaches.
    with pytest.raises(KernelError):
        EXT.check(data, CheckContext("filter", "foo", frozenset(), RuleIp()))


def test_kernel_registration() -> None:
    assert EXT.table == "filter"
    assert EXT.hooks == frozenset({"INPUT", "FORWARD", "OUTPUT"})


# ---------------------------------------------------------------- end to end

T_FILE = (SHARED / "conformance/iptables-t/libipt_REJECT.t")


@pytest.mark.skipif(not T_FILE.exists(), reason="conformance data not present")
@pytest.mark.parametrize("n,table,rule,expected,chains", t_lines(T_FILE) if T_FILE.exists() else [])
def test_t_file(tmp_path: Path, n: int, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """Every line of libipt_REJECT.t (1.8.9 passes them all), as the upstream harness runs it."""
    check_t_line(tmp_path, table, rule, expected, chains)
