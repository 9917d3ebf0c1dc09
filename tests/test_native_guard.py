"""pyfw/_native.py's guard: a compiled module whose source changed since the
build, or any with PYFW_NATIVE=0, is imported from its .py file.

A temporary copy of the package gets a stand-in "extension" for
pyfw/wire/checksum: a real extension module of the standard library under
that name, which fails to import (it has no PyInit_checksum).  So the
import succeeds only when the guard sends it to the source, and the control
(an up-to-date manifest) shows the importer would otherwise take the
extension."""

from __future__ import annotations

import glob
import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pyfw import _native

REPO = Path(__file__).resolve().parents[1]
MODULE = "pyfw.wire.checksum"
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def _stand_in() -> Path:
    found = sorted(glob.glob(os.path.join(sysconfig.get_config_var("DESTSHARED") or "", f"_json{EXT}")))
    if not found:
        pytest.skip("no extension module of the standard library to stand in for a compiled one")
    return Path(found[0])


OTHER = "pyfw.wire.frag"


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "pyfw", tmp_path / "pyfw", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.pyd", _native.MANIFEST))
    shutil.copy(_stand_in(), tmp_path / "pyfw" / "wire" / f"checksum{EXT}")
    return tmp_path


def _digest(pkg: Path, module: str) -> str:
    return hashlib.sha256((pkg / (module.replace(".", "/") + ".py")).read_bytes()).hexdigest()


def _manifest(pkg: Path, digest: str | None, others: tuple[str, ...] = ()) -> None:
    modules = {MODULE: _digest(pkg, MODULE) if digest is None else digest}
    modules.update({m: _digest(pkg, m) for m in others})
    (pkg / "pyfw" / _native.MANIFEST).write_text(json.dumps({"python": sys.implementation.cache_tag,
                                                            "modules": modules}))


def _import(pkg: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "PYFW_NATIVE"))}
    e.update(env, PYTHONPATH=str(pkg))
    return subprocess.run([sys.executable, "-c", f"import pyfw, {MODULE} as m; print(m.__file__)"],
                          capture_output=True, text=True, env=e, cwd=pkg)


def test_up_to_date_manifest_takes_the_extension(pkg: Path) -> None:
    _manifest(pkg, None)
    p = _import(pkg)
    assert p.returncode != 0 and "PyInit_checksum" in p.stderr  # the importer chose the (stand-in) extension


def test_stale_digest_imports_the_source(pkg: Path) -> None:
    _manifest(pkg, "0" * 64)
    p = _import(pkg)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(pkg / "pyfw" / "wire" / "checksum.py")
    assert "older than the source" in p.stderr and MODULE in p.stderr and p.stderr.count("\n") == 1


def test_one_stale_module_sends_the_whole_build_to_the_source(pkg: Path) -> None:
    """An up-to-date compiled module beside a stale one is not used either
    (compiled modules call each other's classes natively)."""
    shutil.copy(_stand_in(), pkg / "pyfw" / "wire" / f"frag{EXT}")
    _manifest(pkg, "0" * 64, others=(OTHER,))
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "PYFW_NATIVE"))}
    e.update(PYTHONPATH=str(pkg))
    p = subprocess.run([sys.executable, "-c", f"import pyfw, {OTHER} as m; print(m.__file__)"],
                       capture_output=True, text=True, env=e, cwd=pkg)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(pkg / "pyfw" / "wire" / "frag.py")
    assert "running all of pyfw from source" in p.stderr and OTHER not in p.stderr


def test_missing_manifest_imports_the_source(pkg: Path) -> None:
    p = _import(pkg)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("checksum.py") and "older than the source" in p.stderr


@pytest.mark.parametrize("value", ["0", "off"])
def test_pyfw_native_0_imports_the_source(pkg: Path, value: str) -> None:
    _manifest(pkg, None)
    p = _import(pkg, PYFW_NATIVE=value)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("checksum.py") and p.stderr == ""
