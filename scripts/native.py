"""Compile pyfw's data-path modules with mypyc, in place (a checkout).

    .venv/bin/python scripts/native.py          # build (skipped when up to date)
    .venv/bin/python scripts/native.py --clean  # remove the compiled modules

The build runs in a scratch copy of the package, so nothing but the
extension modules and their manifest (pyfw/_native.json, the SHA-256 of each
compiled source) lands in the tree.  Needs gcc and the Python headers
(scripts/setup.sh installs them).  See pyfw/_native.py for how a build that
no longer matches its source is kept out.  The wheel's build hook
(hatch_build.py) compiles with compile_modules below, into the wheel.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load_native_list() -> ModuleType:
    """pyfw/_native.py by its path, without importing pyfw (this module is
    also the wheel's build hook's, hatch_build.py, whose process must not
    import the package it builds)."""
    spec = importlib.util.spec_from_file_location("_pyfw_native_build", ROOT / "pyfw" / "_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_native = _load_native_list()

SETUP = """
from setuptools import setup
from mypyc.build import mypycify
setup(name="pyfw-native", packages=[], ext_modules=mypycify({files!r}, opt_level="3"))
"""


def mypy_ini() -> str:
    """pyproject.toml's [tool.mypy] as a mypy.ini, for the scratch copy
    (which has no pyproject.toml: setuptools, run there by mypyc, rejects
    its license field), so the compile checks the code as `mypy pyfw` does
    (ignore_missing_imports: a missing optional binding is Any, whatever
    the build environment has installed)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("mypy", {})

    def val(v: object) -> str:
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)

    lines = ["[mypy]"] + [f"{k} = {val(v)}" for k, v in conf.items() if k != "overrides"]
    for o in conf.get("overrides", []):
        mods = o["module"] if isinstance(o["module"], list) else [o["module"]]
        lines.append(f"[mypy-{','.join(mods)}]")
        lines += [f"{k} = {val(v)}" for k, v in o.items() if k != "module"]
    return "\n".join(lines) + "\n"


def shared_libs(where: Path) -> list[Path]:
    """mypyc's runtime library of a build: <hash>__mypyc.<suffix> at the top."""
    return [p for p in where.iterdir() if "__mypyc" in p.name
            and p.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]


def clean() -> None:
    """Remove every extension module under pyfw/ (pyfw has no others: a
    module dropped from NATIVE_MODULES must not keep its old build)."""
    for f in (ROOT / "pyfw").rglob("*"):
        if f.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            f.unlink()
    for p in shared_libs(ROOT):
        p.unlink()
    (ROOT / "pyfw" / _native.MANIFEST).unlink(missing_ok=True)


def up_to_date() -> bool:
    try:
        built = json.loads((ROOT / "pyfw" / _native.MANIFEST).read_text())["modules"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (set(built) == set(_native.NATIVE_MODULES)
            and all(_native.compiled_file(m) is not None for m in _native.NATIVE_MODULES)
            and not _native.stale_modules() and bool(shared_libs(ROOT)))


def compile_modules(work: Path) -> tuple[dict[str, str], list[tuple[Path, str]]]:
    """Compile NATIVE_MODULES in WORK (a scratch directory): the sources'
    digests, and each built file with where it goes relative to the tree's
    top (pyfw/.../x.<suffix>, and mypyc's runtime library at the top)."""
    digests = {m: _native.source_digest(m) for m in _native.NATIVE_MODULES}
    shutil.copytree(ROOT / "pyfw", work / "pyfw", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.pyd", _native.MANIFEST))
    files = [str(_native.source_path(m).relative_to(ROOT)) for m in _native.NATIVE_MODULES]
    (work / "setup.py").write_text(SETUP.format(files=files))
    (work / "mypy.ini").write_text(mypy_ini())
    env = dict(os.environ, MYPYC_OPT_LEVEL="3")
    p = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work, env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"native build failed (exit {p.returncode})")
    out: list[tuple[Path, str]] = []
    for m in _native.NATIVE_MODULES:
        rel = _native.source_path(m).relative_to(ROOT)
        built = [q for q in (work / rel).parent.iterdir()
                 if q.name.startswith(rel.stem + ".") and q.suffix in (".so", ".pyd")]
        if len(built) != 1:
            raise SystemExit(f"native build: no extension for {m}")
        out.append((built[0], (rel.parent / built[0].name).as_posix()))
    out += [(lib, lib.name) for lib in shared_libs(work)]
    return digests, out


def manifest_text(digests: dict[str, str], stats: dict[str, list[int]] | None = None) -> str:
    """The manifest: each compiled source's SHA-256 and, in a checkout, its
    size and mtime (pyfw._native trusts an unchanged stat without hashing:
    `import pyfw` stays cheap for every CLI call)."""
    doc: dict[str, object] = {"python": sys.implementation.cache_tag, "modules": digests}
    if stats is not None:
        doc["stats"] = stats
    return json.dumps(doc, indent=1) + "\n"


def build() -> None:
    with tempfile.TemporaryDirectory(prefix="pyfw-native-") as tmp:
        digests, built = compile_modules(Path(tmp))
        clean()
        for src, dest in built:
            shutil.copy2(src, ROOT / dest)
    (ROOT / "pyfw" / _native.MANIFEST).write_text(manifest_text(digests, {m: _native.source_stat(m) for m in digests}))
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
