"""The extension registry: names to modules, imported on first use so that a
CLI call loads only the extensions its rules name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyfw.ext.base import Extension

# -m NAME -> module under pyfw.ext.  A module defines EXTENSIONS, a list of
# Extension instances (one per name it serves).
MATCH_MODULES: dict[str, str] = {
    name: f"match_{name}"
    for name in (
        "tcp", "udp", "icmp", "multiport", "conntrack", "state", "mark",
        "connmark", "comment", "iprange", "addrtype", "limit", "hashlimit",
        "recent", "length", "ttl", "mac", "pkttype", "tos", "dscp", "owner",
    )
}

# -j NAME -> module.  ACCEPT, DROP, RETURN, QUEUE are the standard target and
# handled by the core; a name not here may be a user chain.
TARGET_MODULES: dict[str, str] = {
    name: f"target_{name.lower()}"
    for name in (
        "REJECT", "LOG", "NFLOG", "DNAT", "SNAT", "MASQUERADE", "REDIRECT",
        "MARK", "CONNMARK", "NOTRACK", "CT", "TRACE", "NFQUEUE", "TCPMSS",
        "DSCP", "TOS", "TTL",
    )
}

STANDARD_TARGETS = ("ACCEPT", "DROP", "QUEUE", "RETURN")

_cache: dict[tuple[str, str], Extension | None] = {}


def _load(kind: str, name: str, modules: dict[str, str]) -> Extension | None:
    key = (kind, name)
    if key in _cache:
        return _cache[key]
    ext = None
    modname = modules.get(name)
    if modname is not None:
        try:
            module = importlib.import_module(f"pyfw.ext.{modname}")
        except ModuleNotFoundError as exc:  # not written yet
            if exc.name != f"pyfw.ext.{modname}":
                raise
            module = None
        if module is not None:
            for candidate in module.EXTENSIONS:
                if candidate.kind == kind and (candidate.name == name or name in candidate.aliases):
                    ext = candidate
                    break
    _cache[key] = ext
    return ext


def find_match(name: str) -> Extension | None:
    """The match extension `-m name` loads, or None (iptables: Couldn't load)."""
    return _load("match", name, MATCH_MODULES)


def find_target(name: str) -> Extension | None:
    """The target extension `-j name` loads, or None (maybe a chain)."""
    return _load("target", name, TARGET_MODULES)


def supported_matches() -> list[str]:
    return sorted(n for n in MATCH_MODULES if find_match(n) is not None)


def supported_targets() -> list[str]:
    return sorted(n for n in TARGET_MODULES if find_target(n) is not None)
