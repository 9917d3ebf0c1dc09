"""The pytest plugin (entry point `pytest11`): fixtures for ruleset tests and
rule coverage.

    def test_ssh_from_lan(firewall):
        fw = firewall("rulesets/home-gateway.rules", host="gw.toml")
        fw.assert_allowed(Ether()/IP(src="192.168.1.5", dst="192.168.1.1")/TCP(dport=22, flags="S"),
                          iface="eth0")

`pytest --pyfw-cov` lists, per ruleset file, the rules no test frame matched
and the percentage covered; `--pyfw-cov-fail-under=N` (which implies
--pyfw-cov) fails the run below N%; `--pyfw-cov-json=FILE` writes the same
as JSON.  A rule counts as covered when its counter moved in some test,
also for packets the host made because of a test frame (a REJECT's answer
going through OUTPUT).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyfw.testing import firewall as _fw
from pyfw.testing.firewall import Firewall, load_firewall

_RESULT = pytest.StashKey[tuple[list[str], float, bool]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pyfw", "pyfw ruleset tests")
    group.addoption("--pyfw-cov", action="store_true", default=False,
                    help="report the rules of each ruleset file that no test frame matched")
    group.addoption("--pyfw-cov-fail-under", type=float, default=None, metavar="N",
                    help="fail when ruleset rule coverage is below N percent (implies --pyfw-cov)")
    group.addoption("--pyfw-cov-json", default=None, metavar="FILE",
                    help="write the rule coverage as JSON to FILE (implies --pyfw-cov)")


@pytest.fixture
def firewall(request: pytest.FixtureRequest) -> Iterator[Callable[..., Firewall]]:
    """A factory: firewall(RULESET, host=HOST_TOML) -> Firewall, compiled once
    per session and reset for this test.  Relative paths are tried against
    the current directory, then the test file's directory (also for the
    pcaps that `Firewall.replay` is given)."""
    make = FirewallFactory(Path(str(request.node.path)).parent)
    yield make
    for fw in make.made:
        fw.harvest()


class FirewallFactory:
    """What the `firewall` fixture gives a test: call it with the ruleset
    and the host description."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: list[Firewall] = []

    def __call__(self, ruleset: str | Path, host: str | Path) -> Firewall:
        fw = load_firewall(_resolve(self.base, ruleset), _resolve(self.base, host), base=self.base)
        self.made.append(fw)
        return fw

    def __repr__(self) -> str:
        return "<pyfw firewall(RULESET, host=HOST_TOML)>"


def _resolve(base: Path, p: str | Path) -> Path:
    return _resolved(str(base), str(p), os.getcwd())


@functools.lru_cache(maxsize=1024)
def _resolved(base: str, p: str, cwd: str) -> Path:
    path = Path(cwd, p)
    if not path.exists() and Path(base, p).exists():
        path = Path(base, p)
    if not path.exists():  # (an exception is not cached: the file may appear later)
        raise FileNotFoundError(f"{p}: not found (looked in {cwd} and {base})")
    return path


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def coverage_data() -> dict[str, dict[str, Any]]:
    """Per ruleset file: its rules, and which were hit (the JSON report)."""
    files: dict[str, dict[str, Any]] = {}
    for c in _fw.SESSION:
        c.harvest()
        for f, line, text in c.rules:
            entry = files.setdefault(f, {"rules": {}, "hit": set()})
            entry["rules"][line] = text
            if (f, line) in c.hit:
                entry["hit"].add(line)
    out: dict[str, dict[str, Any]] = {}
    for f, entry in files.items():
        rules = entry["rules"]
        missing = sorted(line for line in rules if line not in entry["hit"])
        n = len(rules)
        out[f] = {
            "rules": n,
            "covered": n - len(missing),
            "percent": 100.0 * (n - len(missing)) / n if n else 100.0,
            "missing": [{"line": line, "rule": rules[line]} for line in missing],
        }
    return out


def coverage_report() -> tuple[list[str], float]:
    """The report's lines and the total percentage."""
    data = coverage_data()
    width = max([len(_shown(f)) for f in data] + [20])
    lines = [f"{'ruleset':<{width}} {'rules':>6} {'miss':>6} {'cover':>7}"]
    total = covered = 0
    for f in sorted(data):
        d = data[f]
        total += d["rules"]
        covered += d["covered"]
        lines.append(f"{_shown(f):<{width}} {d['rules']:>6} {d['rules'] - d['covered']:>6} {d['percent']:>6.1f}%")
        for m in d["missing"]:
            lines.append(f"  {_shown(f)}:{m['line']}: {m['rule']}")
    pct = 100.0 * covered / total if total else 100.0
    lines.append(f"{'TOTAL':<{width}} {total:>6} {total - covered:>6} {pct:>6.1f}%")
    return lines, pct


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--pyfw-cov") or config.getoption("--pyfw-cov-fail-under") is not None
                or config.getoption("--pyfw-cov-json"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _enabled(config):
        return
    lines, pct = coverage_report()
    threshold = config.getoption("--pyfw-cov-fail-under")
    failed = threshold is not None and pct < threshold
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    config.stash[_RESULT] = (lines, pct, failed)
    target = config.getoption("--pyfw-cov-json")
    if target:
        Path(target).write_text(json.dumps({"files": coverage_data(), "percent": pct}, indent=1) + "\n")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _enabled(config) or _RESULT not in config.stash:
        return
    lines, pct, failed = config.stash[_RESULT]
    terminalreporter.section("pyfw rule coverage")
    for line in lines:
        terminalreporter.write_line(line)
    threshold = config.getoption("--pyfw-cov-fail-under")
    if failed:
        terminalreporter.write_line(f"FAIL Required rule coverage of {threshold:g}% not reached. "
                                    f"Total coverage: {pct:.2f}%", red=True, bold=True)
    elif threshold is not None:
        terminalreporter.write_line(f"Required rule coverage of {threshold:g}% reached. "
                                    f"Total coverage: {pct:.2f}%", green=True)
