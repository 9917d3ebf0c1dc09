"""Which of pyfw's modules run compiled, and keeping a stale build out.

The data path's modules are plain, typed Python that mypyc also compiles
to C extensions (scripts/native.py in a checkout, the wheel's build hook on
`pip install`): the same source, about twice as fast.  A compiled module
sits beside its .py file and Python's importer prefers it, so in a checkout
an extension built from an older version of the source would silently run
instead of the file being edited.  The build therefore writes a manifest of
the sources it compiled (their SHA-256); at `import pyfw` any module whose
source no longer matches is imported from its .py file instead, with one
warning.  PYFW_NATIVE=0 imports every module from source (A/B runs,
debugging with pdb).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The modules mypyc compiles: the per-packet path of the engine and of the
# NFQUEUE adapter.  (The wheel's build hook, hatch_build.py, compiles this
# list too, through scripts/native.py: there is no second copy of it.)
NATIVE_MODULES: tuple[str, ...] = (
    "pyfw.engine.host",
    "pyfw.engine.conntrack",
    "pyfw.engine.fastpath",
    "pyfw.engine.result",
    "pyfw.engine.newflow",
    "pyfw.engine.engine",
    "pyfw.engine.packet",
    "pyfw.engine.tables",
    "pyfw.engine.jhash",
    "pyfw.engine.conntrack.conn",
    "pyfw.engine.conntrack.tcp",
    "pyfw.engine.conntrack.udp",
    "pyfw.engine.conntrack.icmp",
    "pyfw.engine.conntrack.generic",
    "pyfw.engine.conntrack.table",
    "pyfw.engine.conntrack.timeouts",
    "pyfw.engine.nat.core",
    "pyfw.engine.nat.manip",
    "pyfw.engine.nat.addr",
    "pyfw.wire.checksum",
    "pyfw.wire.ipv4",
    "pyfw.wire.frag",
    "pyfw.io.pcap",
    "pyfw.cli.simloop",
    "pyfw.daemon.nfqnl",
    "pyfw.daemon.nfqueue",
    "pyfw.ruleset.counters",
    "pyfw.ruleset.argparse",
    "pyfw.ruleset.tokens",
    "pyfw.ext.types",
    "pyfw.ruleset.format",
    "pyfw.ruleset.execute",
    "pyfw.ruleset.commands",
    "pyfw.ext.match_addrtype",
    "pyfw.ext.match_comment",
    "pyfw.ext.match_connmark",
    "pyfw.ext.match_conntrack",
    "pyfw.ext.match_icmp",
    "pyfw.ext.match_iprange",
    "pyfw.ext.match_length",
    "pyfw.ext.match_limit",
    "pyfw.ext.match_mac",
    "pyfw.ext.match_mark",
    "pyfw.ext.match_multiport",
    "pyfw.ext.match_pkttype",
    "pyfw.ext.match_state",
    "pyfw.ext.match_tcp",
    "pyfw.ext.match_udp",
    "pyfw.ext.nat_common",
    "pyfw.ext.target_connmark",
    "pyfw.ext.target_dnat",
    "pyfw.ext.target_log",
    "pyfw.ext.target_mark",
    "pyfw.ext.target_masquerade",
    "pyfw.ext.target_redirect",
    "pyfw.ext.target_reject",
    "pyfw.ext.target_snat",
    "pyfw.ext.target_tcpmss",
)

MANIFEST = "_native.json"
_PACKAGE_DIR = Path(__file__).resolve().parent


def source_path(module: str) -> Path:
    """The .py file of one of pyfw's modules."""
    p = _PACKAGE_DIR.parent.joinpath(*module.split("."))
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def source_stat(module: str) -> list[int]:
    st = source_path(module).stat()
    return [st.st_size, st.st_mtime_ns]


def source_digest(module: str) -> str:
    import hashlib  # (only when a stat changed: `import pyfw` stays cheap)

    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def compiled_file(module: str) -> Path | None:
    """The extension module beside the .py file, if there is one."""
    src = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        cand = src.with_name(src.stem + suffix)
        if cand.exists():
            return cand
    return None


class _SourceFirst:
    """A meta-path finder that imports the listed modules from their .py
    files even though a compiled extension sits beside them."""

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.modules:
            return None
        return importlib.util.spec_from_file_location(name, source_path(name))


def stale_modules() -> set[str]:
    """The compiled modules of a checkout that do not match their source
    (every compiled one when the manifest is missing or unreadable), and
    those of an older build whose module is no longer in NATIVE_MODULES."""
    try:
        doc = json.loads((_PACKAGE_DIR / MANIFEST).read_text())
        built = doc["modules"]
        stats = doc.get("stats") or {}
        if not isinstance(built, dict) or not isinstance(stats, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        built = None
    names = set(NATIVE_MODULES) | (set(built) if built else set())
    compiled = {m for m in names if compiled_file(m) is not None}
    if not compiled or built is None:
        return compiled
    return {m for m in compiled if m not in NATIVE_MODULES
            or (stats.get(m) != source_stat(m) and built.get(m) != source_digest(m))}


def native_status() -> dict[str, str]:
    """Each native module and how it is loaded: "compiled" or "source"."""
    out = {}
    for m in NATIVE_MODULES:
        mod = sys.modules.get(m)
        if mod is None:
            __import__(m)
            mod = sys.modules[m]
        out[m] = "compiled" if str(getattr(mod, "__file__", "")).endswith(tuple(
            importlib.machinery.EXTENSION_SUFFIXES)) else "source"
    return out


def install_guard() -> None:
    """Called once by pyfw/__init__: route every compiled module to its
    source when one of them is stale, or with PYFW_NATIVE=0."""
    if os.environ.get("PYFW_NATIVE", "1") in ("0", "off", "no", "false"):
        forced = {m for m in NATIVE_MODULES if compiled_file(m) is not None}
    else:
        stale = stale_modules()
        forced = set()
        if stale:
            # all of it: compiled modules use each other's classes natively
            # (a compiled caller of a class now defined in Python would
            # misread it), so a build is used whole or not at all
            forced = stale | {m for m in NATIVE_MODULES if compiled_file(m) is not None}
            print(f"pyfw: the compiled build of {len(stale)} module(s) is older than the source "
                  f"({', '.join(sorted(stale))}); running all of pyfw from source "
                  "(rebuild: python scripts/native.py)", file=sys.stderr)
    if forced:
        sys.meta_path.insert(0, _SourceFirst(forced))
