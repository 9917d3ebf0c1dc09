"""iptables' `.t` rule tests against pyfw (see tests/conformance.py).

Required: every line iptables-legacy 1.8.9 passes whose extensions are all in
the issue's list.  A line of a required extension that pyfw does not have yet
fails here on purpose.  Lines 1.8.9 fails (newer upstream behaviour) must
fail in pyfw the same way, since pyfw mirrors 1.8.9.
"""

from __future__ import annotations

import conformance as conf
import pytest
from oracle import Netns, requires_root_netns

_DATA = conf.conformance_dir()
_FILES = sorted(p.name for p in _DATA.glob("*.t")) if _DATA.is_dir() else []


@pytest.fixture(scope="module")
def results(no_network: bool) -> dict[str, list[conf.Outcome]]:
    """Outcomes of every file, run once for the module (offline if root)."""
    if not _DATA.is_dir():
        pytest.skip(f"no conformance data at {_DATA} (set PYFW_SHARED)")
    legacy = conf.load_legacy_results()
    return {name: conf.run_file(_DATA / name, legacy) for name in _FILES}


def _compact(outcomes: list[conf.Outcome]) -> str:
    lines = []
    for o in outcomes:
        reason = o.reason.replace("\n    ", " ; ")
        if o.legacy == "FAIL":
            reason += f" (1.8.9: {o.legacy_reason})"
        lines.append(f"  {o.line.where}: {o.line.raw}\n      {o.status}: {reason}")
    return "\n".join(lines)


def _must_pass(o: conf.Outcome) -> bool:
    return o.required and o.legacy == "PASS"


def _must_fail_like_legacy(o: conf.Outcome) -> bool:
    return o.required and o.legacy == "FAIL"


@pytest.mark.skipif(not _FILES, reason=f"no conformance data at {_DATA} (set PYFW_SHARED)")
@pytest.mark.parametrize("name", _FILES or ["-"])
def test_required_lines_pass(results: dict[str, list[conf.Outcome]], name: str) -> None:
    bad = [o for o in results[name] if _must_pass(o) and o.status != "PASS"]
    if bad:
        for o in bad:
            if o.status == "SKIP":
                o.reason = "not implemented: " + o.reason
        pytest.fail(f"{len(bad)} required line(s) of {name} fail in pyfw:\n{_compact(bad)}",
                    pytrace=False)


@pytest.mark.skipif(not _FILES, reason=f"no conformance data at {_DATA} (set PYFW_SHARED)")
def test_legacy_failures_reproduced(results: dict[str, list[conf.Outcome]]) -> None:
    """Lines 1.8.9 fails (newer behaviour upstream): pyfw must not pass them."""
    bad = [o for outs in results.values() for o in outs
           if _must_fail_like_legacy(o) and o.status != "SKIP" and not o.like_legacy]
    if bad:
        pytest.fail("pyfw differs from 1.8.9 on lines 1.8.9 fails "
                    f"(1.8.9's reason in the file legacy-1.8.9-results.txt):\n{_compact(bad)}",
                    pytrace=False)


@pytest.mark.skipif(not _FILES, reason=f"no conformance data at {_DATA} (set PYFW_SHARED)")
def test_tally(results: dict[str, list[conf.Outcome]], capsys: pytest.CaptureFixture[str]) -> None:
    """Prints pass/fail/skip overall and for the required lines (never fails)."""
    everything = [o for outs in results.values() for o in outs]
    with capsys.disabled():
        print("\nconformance " + conf.tally(everything).replace("\n", "\n  "))


@pytest.mark.root
@requires_root_netns
@pytest.mark.skipif(not _FILES, reason=f"no conformance data at {_DATA} (set PYFW_SHARED)")
@pytest.mark.parametrize("name", _FILES or ["-"])
def test_versus_kernel(no_network: bool, name: str) -> None:
    """Every runnable line also on the live iptables-legacy (fresh netns per
    file): same exit status, stderr (program name aside), -S / -L output of
    the chain and -D result.  Stricter than the .t judging."""
    legacy = conf.load_legacy_results()
    with Netns() as kernel:
        outcomes = conf.run_file(_DATA / name, legacy, kernel=kernel, offline=no_network)
    bad = [o for o in outcomes if o.oracle]
    if bad:
        text = "\n".join(f"  {o.line.where}: {o.line.raw}\n" + "\n".join("    " + d for d in o.oracle)
                         for o in bad)
        pytest.fail(f"{len(bad)} line(s) of {name} differ from iptables-legacy:\n{text}", pytrace=False)
