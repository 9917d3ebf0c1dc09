"""The wheel's build hook: compile pyfw's data path with mypyc.

`pip install .`, `pip wheel .` and `python -m build` run it (hatchling's
custom hook, pyproject.toml): the modules of pyfw._native.NATIVE_MODULES
are compiled by scripts/native.py's compile_modules (the same build as a
checkout's, in a scratch directory) and the wheel gets, beside every .py
file (kept: tracebacks, and the fallback of pyfw/_native.py), the
extension modules, mypyc's runtime library at the top of site-packages
(<hash>__mypyc.<suffix>) and the manifest pyfw/_native.json; it is then
tagged for this interpreter and platform (cp311-cp311-linux_x86_64).

- An editable install (`pip install -e .`, scripts/setup.sh) compiles
  nothing: a checkout builds in place with scripts/native.py.
- The build needs a C compiler and the Python headers.  Without them it
  stops with a message saying what to install: a wheel is what users
  install, and a silently pure one would run at half speed.
  PYFW_BUILD_NATIVE=0 builds a pure-Python wheel on purpose (py3-none-any,
  the same code run from source).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent


def _native_build() -> Any:
    """scripts/native.py, loaded by its path (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("_pyfw_native_script", ROOT / "scripts" / "native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def missing_toolchain() -> list[str]:
    """What a mypyc build lacks here: [] when a C compiler and Python.h are
    there."""
    missing = []
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    words = shlex.split(cc)
    if not words or shutil.which(words[0]) is None:
        missing.append(f"a C compiler ({words[0] if words else 'cc'}: apt-get install gcc)")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        missing.append(f"the Python headers ({include}/Python.h: apt-get install python3-dev)")
    return missing


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if version == "editable":
            return
        if os.environ.get("PYFW_BUILD_NATIVE", "1") in ("0", "off", "no", "false"):
            self.app.display_warning("pyfw: PYFW_BUILD_NATIVE=0: a pure-Python wheel (no compiled modules)")
            return
        missing = missing_toolchain()
        if missing:
            raise RuntimeError(
                "pyfw: building the wheel compiles the data path with mypyc, which needs "
                + " and ".join(missing) + ". Install them, or set PYFW_BUILD_NATIVE=0 for a pure-Python "
                "wheel (the same code run from source, about half as fast).")
        native = _native_build()
        self._tmp = tempfile.TemporaryDirectory(prefix="pyfw-wheel-native-")
        work = Path(self._tmp.name)
        self.app.display_info(f"pyfw: compiling {len(native._native.NATIVE_MODULES)} modules with mypyc")
        digests, built = native.compile_modules(work / "src")
        manifest = work / native._native.MANIFEST
        manifest.write_text(native.manifest_text(digests))
        build_data["force_include"][str(manifest)] = f"pyfw/{native._native.MANIFEST}"
        for src, dest in built:
            build_data["force_include"][str(src)] = dest
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
