"""limit: libxt_limit.t, rate parsing as iptables 1.8.9 does it, the
kernel's overflow check and the credits the engine will use."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.errors import KernelError, ParameterProblem
from pyfw.ext.base import ArgvCursor, Call, CheckContext, RuleIp
from pyfw.ext.match_limit import (
    CREDITS_PER_JIFFY,
    DEFAULT_AVG,
    ERANGE,
    EXTENSIONS,
    LimitData,
    parse_rate,
    rate_text,
    user2credits,
)

EXT = EXTENSIONS[0]


def parse(*pairs: tuple[str, str]) -> LimitData:
    data = EXT.new_data()
    for name, arg in pairs:
        opt = EXT.option(name)
        value: object = int(arg) if name == "limit-burst" else arg
        EXT.parse(Call(EXT, opt, arg, False, value, data, set(), RuleIp(), ArgvCursor([], 0)))
    return data


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


CTX = CheckContext("filter", "INPUT", frozenset({"INPUT"}), RuleIp())


@pytest.mark.parametrize("rule", [
    "--limit 1/sec", "--limit 1/min", "--limit 1000/hour", "--limit 1000/day",
    "--limit 1/sec --limit-burst 1",
])
def test_t_lines(rule: str) -> None:
    """libxt_limit.t:2-6 print back as given."""
    words = rule.split()
    data_opts = [(w[2:], a) for w, a in zip(words[0::2], words[1::2])]
    data = parse(*data_opts)
    EXT.check(data, CTX)
    assert EXT.save(data, RuleIp()) == " " + rule


def test_defaults() -> None:
    data = EXT.new_data()
    assert data.avg == DEFAULT_AVG == 12000000 and data.burst == 5
    assert EXT.save(data, RuleIp()) == " --limit 3/hour"
    assert EXT.print(data, RuleIp(), False) == " limit: avg 3/hour burst 5"


@pytest.mark.parametrize("text,avg", [
    ("5", 2000), ("5abc", 2000), ("5/S", 2000), ("5/sEc", 2000), ("5/m", 120000),
    ("2/h", 18000000), ("1/d", 864000000), (" +7/second", 1428),
    ("4294967297/s", 10000),  # atoi keeps the low 32 bits
])
def test_parse_rate(text: str, avg: int) -> None:
    assert parse_rate(text) == avg


@pytest.mark.parametrize("text", ["2/fortnight", "0/s", "5/", "5/seconds", "x", "4294967296/s"])
def test_bad_rate(text: str) -> None:
    with pytest.raises(ParameterProblem) as exc:
        parse(("limit", text))
    assert exc.value.message == f'bad rate "{text}"\''


@pytest.mark.parametrize("text", ["20000/s", "-5/s"])
def test_too_fast(text: str) -> None:
    with pytest.raises(ParameterProblem) as exc:
        parse(("limit", text))
    assert exc.value.message == f'Rate too fast "{text}"'


@pytest.mark.parametrize("avg,text", [
    (10000, " 1/sec"), (1, " 10000/sec"), (5142857, " 7/hour"), (600000 // 13, " 13/min"),
    (864000000 // 999, " 999/day"), (0, " inf"),
])
def test_rate_text(avg: int, text: str) -> None:
    assert rate_text(avg) == text


def test_kernel_overflow() -> None:
    for burst, avg in ((0, 10000), (10000, 864000000)):
        with pytest.raises(KernelError) as exc:
            EXT.check(LimitData(avg, burst), CTX)
        assert exc.value.message == ERANGE
    EXT.check(LimitData(1, 10000), CTX)


def test_credits() -> None:
    """xt_limit's credits with HZ=250 (128 credits per jiffy)."""
    assert CREDITS_PER_JIFFY == 128
    data = LimitData(10000, 5)  # 1/sec
    assert data.cost == user2credits(10000) == 32000
    assert data.credit_cap == 160000


def test_cli(tmp_path: Path) -> None:
    assert cli(tmp_path, "-A", "INPUT", "-m", "limit", "--limit", "10000/s", "--limit-burst",
               "10000")[0] == 0
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-m", "limit", "--limit-burst", "0")
    assert (rc, err) == (1, "pyfw: Numerical result out of range.\n")
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-m", "limit", "!", "--limit", "3/s")
    assert rc == 2 and 'limit: option "--limit" cannot be inverted.' in err
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-m", "limit", "--limit", "2/fortnight")
    assert rc == 2 and err.startswith('pyfw v1.8.9 (legacy): bad rate "2/fortnight"\'\n')
    rc, out, _ = cli(tmp_path, "-S", "INPUT")
    assert out.splitlines()[1] == "-A INPUT -m limit --limit 10000/sec --limit-burst 10000"
    rc, out, _ = cli(tmp_path, "-L", "INPUT", "-n")
    assert out.splitlines()[2].endswith("  limit: avg 10000/sec burst 10000")


def test_refusal_file(tmp_path: Path) -> None:
    """realworld-rulesets/refusals/bad-limit-rate.rules."""
    path = (SHARED / "realworld-rulesets/refusals/bad-limit-rate.rules")
    if not path.exists():
        pytest.skip("shared ruleset not available")
    rc, _, err = run(["pyfw-restore", "--file", str(tmp_path / "rules")], stdin=path.read_text())
    assert rc == 2
    assert err.splitlines()[:2] == [
        "pyfw-restore v1.8.9 (legacy): bad rate \"2/fortnight\"'", "Error occurred at line: 65"]
