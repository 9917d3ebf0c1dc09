"""Shared fixtures: the kernel oracle and the shared test data."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/oracle.py, tests/conformance.py

from oracle import Netns, NetnsError, offline, root_netns_problem, skip_unless_root_netns, sweep_dead_namespaces  # noqa: E402,E501
from paths import HAVE_SHARED, SHARED  # noqa: E402

# Test modules that read the shared data at collection time are left out,
# with the reason in the report header, when the data is absent.
collect_ignore: list[str] = []
if not HAVE_SHARED:
    here = Path(__file__).resolve().parent
    collect_ignore = [str(p) for p in here.rglob("test_*.py")
                      if any(m in p.read_text() for m in ("from paths import SHARED", "from harness import", "from checks import"))]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Namespaces a killed earlier run left behind go first."""
    if root_netns_problem() is None:
        sweep_dead_namespaces()


def pytest_report_header(config: pytest.Config) -> str | None:
    if not HAVE_SHARED:
        return (f"shared test data not found at {SHARED} (set PYFW_SHARED): "
                f"{len(collect_ignore)} test modules that read it are skipped")
    return None


def _shared() -> Path:
    return SHARED


@pytest.fixture
def kernel() -> Iterator[Netns]:
    """A fresh network namespace with iptables-legacy (skips when not root)."""
    skip_unless_root_netns()
    try:
        ns = Netns().__enter__()
    except NetnsError as exc:
        pytest.skip(str(exc))
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """/work/shared (../shared of the repo, or $PYFW_SHARED); skips when absent."""
    path = _shared()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path} (set PYFW_SHARED)")
    return path


@pytest.fixture(scope="module")
def no_network() -> Iterator[bool]:
    """The module's tests run in an empty network namespace when that is
    permitted (root), so in-process pyfw cannot send DNS queries; yields
    whether it is isolated."""
    with offline(required=False) as isolated:
        yield isolated
