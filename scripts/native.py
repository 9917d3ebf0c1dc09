"""Compile pyfw's data-path modules with mypyc, in place (a checkout).

    .venv/bin/python scripts/native.py          # build (skipped when up to date)
    .venv/bin/python scripts/native.py --clean  # remove the compiled modules

The build runs in a scratch copy of the package, so nothing but the
extension modules and their manifest (pyfw/_native.json, the SHA-256 of each
compiled source) lands in the tree.  Needs gcc and the Python headers
(scripts/setup.sh installs them).  See pyfw/_native.py for how a build that
no longer matches its source is kept out.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYFW_NATIVE"] = "0"  # this process reads the sources only

from pyfw import _native  # noqa: E402

SETUP = """
from setuptools import setup
from mypyc.build import mypycify
setup(name="pyfw-native", packages=[], ext_modules=mypycify({files!r}, opt_level="3"))
"""


def shared_libs(where: Path) -> list[Path]:
    """mypyc's runtime library of a build: <hash>__mypyc.<suffix> at the top."""
    return [p for p in where.iterdir() if "__mypyc" in p.name
            and p.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]


def clean() -> None:
    for m in _native.NATIVE_MODULES:
        f = _native.compiled_file(m)
        if f is not None:
            f.unlink()
    for p in shared_libs(ROOT):
        p.unlink()
    (ROOT / "pyfw" / _native.MANIFEST).unlink(missing_ok=True)


def up_to_date() -> bool:
    return (all(_native.compiled_file(m) is not None for m in _native.NATIVE_MODULES)
            and not _native.stale_modules() and bool(shared_libs(ROOT)))


def build() -> None:
    digests = {m: _native.source_digest(m) for m in _native.NATIVE_MODULES}
    with tempfile.TemporaryDirectory(prefix="pyfw-native-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "pyfw", work / "pyfw", ignore=shutil.ignore_patterns(
            "__pycache__", "*.so", "*.pyd", _native.MANIFEST))
        files = [str(_native.source_path(m).relative_to(ROOT)) for m in _native.NATIVE_MODULES]
        (work / "setup.py").write_text(SETUP.format(files=files))
        env = dict(os.environ, MYPYC_OPT_LEVEL="3")
        p = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work, env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
            raise SystemExit(f"native build failed (exit {p.returncode})")
        clean()
        for m in _native.NATIVE_MODULES:
            rel = _native.source_path(m).relative_to(ROOT)
            built = [q for q in (work / rel).parent.iterdir()
                     if q.name.startswith(rel.stem + ".") and q.suffix in (".so", ".pyd")]
            if len(built) != 1:
                raise SystemExit(f"native build: no extension for {m}")
            shutil.copy2(built[0], (ROOT / rel).parent / built[0].name)
        for lib in shared_libs(work):
            shutil.copy2(lib, ROOT / lib.name)
    manifest = {"python": sys.implementation.cache_tag, "modules": digests}
    (ROOT / "pyfw" / _native.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"native: compiled {len(digests)} modules")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules")
    ap.add_argument("--force", action="store_true", help="build even when up to date")
    a = ap.parse_args()
    if a.clean:
        clean()
        return
    if not a.force and up_to_date():
        print("native: up to date")
        return
    build()


if __name__ == "__main__":
    main()
