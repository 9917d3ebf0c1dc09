"""pyfw.ruleset.pickling: rulesets pickled as constructor calls load as the
very rulesets they were (the CLI's cache, the daemon's workers)."""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
import sys
from pathlib import Path

import pytest

from pyfw.ruleset import pickling
from pyfw.ruleset.format import save_table
from pyfw.ruleset.model import Ruleset
from pyfw.ruleset.restore import RestoreOptions, restore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from gen_ruleset import generate  # noqa: E402


def _texts() -> list[str]:
    return [generate(2000, seed=4)] + [p.read_text() for p in sorted((REPO / "rulesets").glob("*.rules"))]


@pytest.mark.parametrize("index", range(len(_texts())))
def test_round_trip_is_the_same_ruleset(index: int) -> None:
    text = _texts()[index]
    rs = restore(Ruleset(), text, RestoreOptions(counters=True, keep_order=True)).ruleset
    pickling.register_loaded()
    back = pickle.loads(pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == rs
    assert [save_table(t, True, 0) for t in back.tables.values()] == [save_table(t, True, 0) for t in rs.tables.values()]


def test_smaller_than_the_default_way() -> None:
    rs = restore(Ruleset(), generate(2000, seed=5), RestoreOptions(counters=True)).ruleset
    pickling.register_loaded()
    compact = pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL)
    for name in pickling._registered:
        for cls in vars(sys.modules[name]).values():
            if isinstance(cls, type):
                copyreg.dispatch_table.pop(cls, None)
    try:
        default = pickle.dumps(rs, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        pickling._registered.clear()
        pickling.register_loaded()
    assert len(compact) < len(default)
    assert pickle.loads(default) == pickle.loads(compact) == rs


def test_only_plain_dataclasses_qualify() -> None:
    @dataclasses.dataclass
    class Later:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclasses.dataclass
    class Post:
        a: int

        def __post_init__(self) -> None:
            self.a += 1

    @dataclasses.dataclass(kw_only=True)
    class Keywords:
        a: int

    @dataclasses.dataclass
    class Plain:
        a: int
        b: str = "x"

    assert not pickling.by_constructor(Later)
    assert not pickling.by_constructor(Post)
    assert not pickling.by_constructor(Keywords)
    assert pickling.by_constructor(Plain)
    reducer = copyreg.dispatch_table.pop(Plain)
    assert reducer(Plain(3, "y")) == (Plain, (3, "y"))
