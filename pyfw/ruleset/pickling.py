"""Rulesets pickled as constructor calls (the CLI's cache beside a ruleset
file, the daemon's copies for its workers).

A compiled (mypyc) class has no __dict__: pickle's default way for it is
an object made empty and then given a state dict, field name by field name,
which for the ten thousand counters and extension data objects of a large
ruleset is a third of a `pyfw -A`.  Each plain dataclass of the loaded
extension modules and the counters is pickled instead as the call of its
constructor with its fields in order, made natively on load; the same
compiled or from source.  Only classes whose constructor is the
dataclass's own (every field an init field, none keyword-only, no
__post_init__) qualify, so the call makes exactly the object it came from.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
import sys
from collections.abc import Callable
from typing import Any

_registered: set[str] = set()


def by_constructor(cls: type) -> bool:
    """Pickle instances of `cls` as cls(*fields); False when it does not qualify."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.init or hasattr(cls, "__post_init__"):
        return False
    fields = dataclasses.fields(cls)
    if not fields or any(not f.init or f.kw_only for f in fields):
        return False
    names = [f.name for f in fields]
    get: Callable[[Any], Any] = operator.attrgetter(*names)
    if len(names) == 1:
        one = get
        get = lambda obj: (one(obj),)  # noqa: E731  (attrgetter of one name gives the value itself)
    copyreg.pickle(cls, lambda obj: (cls, get(obj)))
    return True


def register_loaded() -> None:
    """by_constructor for the dataclasses of every loaded extension module
    (pyfw.ext.*) and the counters; cheap when nothing new was loaded."""
    for name in [n for n in sys.modules if n not in _registered
                 and (n.startswith("pyfw.ext.") or n == "pyfw.ruleset.counters")]:
        _registered.add(name)
        module = sys.modules[name]
        for cls in list(vars(module).values()):
            if isinstance(cls, type) and cls.__module__ == name and dataclasses.is_dataclass(cls):
                by_constructor(cls)
