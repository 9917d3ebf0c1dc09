"""The pytest plugin (entry point `pytest11`): fixtures for ruleset tests and
rule coverage.

    def test_ssh_from_lan(firewall):
        fw = firewall("rulesets/home-gateway.rules", host="tests/gw.toml")
        fw.assert_allowed(Ether()/IP(src="192.168.1.5", dst="192.168.1.1")/TCP(dport=22, flags="S"),
                          iface="eth0")

`pytest --pyfw-cov` lists, per ruleset file, the rules no test frame matched
and the percentage covered; `--pyfw-cov-fail-under=N` fails the run below N%.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyfw.testing.firewall import Firewall, all_rules, load_firewall

_COVERAGE: dict[str, Any] = {"rules": {}, "hit": set()}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pyfw", "pyfw ruleset tests")
    group.addoption("--pyfw-cov", action="store_true", default=False,
                    help="report the rules of each ruleset file that no test frame matched")
    group.addoption("--pyfw-cov-fail-under", type=float, default=None, metavar="N",
                    help="fail when ruleset rule coverage is below N percent")


@pytest.fixture
def firewall(request: pytest.FixtureRequest) -> Iterator[Callable[..., Firewall]]:
    """A factory: firewall(RULESET, host=HOST_TOML) -> Firewall, compiled once
    per session and reset for this test.  Paths are relative to the test file."""
    made: list[Firewall] = []
    base = Path(str(request.node.fspath)).parent

    def make(ruleset: str | Path, host: str | Path) -> Firewall:
        rp = _resolve(base, ruleset)
        hp = _resolve(base, host)
        fw = load_firewall(rp, hp)
        for f, line, text in all_rules(fw.ruleset):
            _COVERAGE["rules"][(f, line)] = text
        made.append(fw)
        return fw

    yield make
    for fw in made:
        _COVERAGE["hit"].update(fw.seen)


def _resolve(base: Path, p: str | Path) -> str:
    path = Path(p)
    if not path.is_absolute() and not path.exists() and (base / path).exists():
        path = base / path
    return str(path)


def coverage_report() -> tuple[list[str], float]:
    rules: dict[tuple[str, int], str] = _COVERAGE["rules"]
    hit: set[tuple[str, int]] = _COVERAGE["hit"]
    lines: list[str] = []
    total = covered = 0
    by_file: dict[str, list[tuple[int, str, bool]]] = {}
    for (f, line), text in rules.items():
        by_file.setdefault(f, []).append((line, text, (f, line) in hit))
    lines.append(f"{'ruleset':<48} {'rules':>6} {'miss':>6} {'cover':>6}")
    for f in sorted(by_file):
        entries = sorted(by_file[f])
        n = len(entries)
        miss = [e for e in entries if not e[2]]
        total += n
        covered += n - len(miss)
        pct = 100.0 * (n - len(miss)) / n if n else 100.0
        lines.append(f"{f:<48} {n:>6} {len(miss):>6} {pct:>5.0f}%")
        for line, text, _ in miss:
            lines.append(f"  {f}:{line}: {text}")
    pct_all = 100.0 * covered / total if total else 100.0
    lines.append(f"{'TOTAL':<48} {total:>6} {total - covered:>6} {pct_all:>5.0f}%")
    return lines, pct_all


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not config.getoption("--pyfw-cov"):
        return
    lines, _pct = coverage_report()
    terminalreporter.section("pyfw rule coverage")
    for line in lines:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    threshold = config.getoption("--pyfw-cov-fail-under")
    if threshold is None or not config.getoption("--pyfw-cov"):
        return
    _lines, pct = coverage_report()
    if pct < threshold:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAIL Required rule coverage of {threshold}% not reached. "
                                f"Total coverage: {pct:.2f}%")
