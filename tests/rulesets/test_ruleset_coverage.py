"""Every shipped ruleset is fully covered by its tests: the ruleset test
files, run on their own with `--pyfw-cov --pyfw-cov-fail-under=100`, pass
and report 100% for each file of rulesets/; and the committed pcapng
fixtures are exactly what make_fixtures.py writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RULESETS = sorted((ROOT / "rulesets").glob("*.rules"))


def test_ruleset_tests_cover_every_rule(tmp_path: Path) -> None:
    tests = [HERE / f"test_{r.stem.replace('-', '_')}.py" for r in RULESETS]
    missing = [t.name for t in tests if not t.exists()]
    assert not missing, f"rulesets without a test file: {missing}"
    report = tmp_path / "cov.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests),
         "--pyfw-cov", "--pyfw-cov-fail-under=100", f"--pyfw-cov-json={report}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pyfw rule coverage" in proc.stdout and "Required rule coverage of 100% reached" in proc.stdout
    files = json.loads(report.read_text())["files"]
    got = {Path(f).name: d for f, d in files.items()}
    for r in RULESETS:
        d = got.get(r.name)
        assert d is not None, f"{r.name}: no test loaded it"
        assert d["percent"] == 100.0 and not d["missing"], f"{r.name}: not covered: {d['missing']}"
        # every rule of the file is counted (the file's -A lines)
        n = sum(1 for line in r.read_text().splitlines() if line.startswith("-A "))
        assert d["rules"] == n


def test_the_committed_fixtures_are_what_make_fixtures_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    import make_fixtures

    made = {fx.name: fx for fixtures in make_fixtures.build().values() for fx in fixtures}
    assert sorted(made) == sorted(p.stem for p in (HERE / "fixtures").glob("*.pcapng"))
    for name, fx in made.items():
        make_fixtures.write_pcapng(tmp_path / "x.pcapng", fx.frames)
        assert (tmp_path / "x.pcapng").read_bytes() == (HERE / "fixtures" / f"{name}.pcapng").read_bytes(), \
            f"{name}.pcapng is stale: run tests/rulesets/make_fixtures.py"
