"""The grammar and the fast word splitter agree; the file structure parses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfw.errors import ParameterProblem
from pyfw.ruleset.restore import Block, Stray, classify, grammar_split_words, parse_file
from pyfw.ruleset.tokens import split_counters, split_words


@pytest.mark.parametrize("line, words", [
    ("-A INPUT -j ACCEPT", ["-A", "INPUT", "-j", "ACCEPT"]),
    ('-m comment --comment "a b"', ["-m", "comment", "--comment", "a b"]),
    ('x "a\\"b" y', ["x", 'a"b', "y"]),
    ('abc"d e"f', ["abcd e", "f"]),
    ('"" z', ["", "z"]),
    ("a\tb\nc", ["a", "b", "c"]),
    ('"unterminated x', ["unterminated x"]),
])
def test_split_words(line: str, words: list[str]) -> None:
    assert split_words(line) == words
    assert grammar_split_words(line) == words


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='ab \t"\\-', max_size=30))
def test_split_words_matches_grammar(line: str) -> None:
    assert split_words(line) == grammar_split_words(line)


def test_counters_prefix() -> None:
    assert split_counters("[1:2] -A X", 1) == ("1", "2", " -A X")
    assert split_counters("-A X", 1) == (None, None, "-A X")
    with pytest.raises(ParameterProblem, match="need ]"):
        split_counters("[1:2 -A X", 3)


def test_file_structure() -> None:
    text = "# c\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n-A stray\n"
    items, missing = parse_file(text)
    assert missing is None
    assert isinstance(items[0], Block)
    assert items[0].table.number == 2
    assert [i.kind for i in items[0].items] == ["CHAIN_DECL", "RULE"]
    assert isinstance(items[1], Stray) and items[1].line.number == 6


def test_missing_commit_is_reported_after_the_last_line() -> None:
    items, missing = parse_file("*filter\n-A INPUT -j ACCEPT\n")
    assert missing == 3


def test_classify_follows_iptables_restore() -> None:
    # a '*' line inside a block is a rule line; COMMIT outside one is stray;
    # "COMMIT" without a newline is not a commit.
    kinds = [l.kind for l in classify(["*filter\n", "*nat\n", "COMMIT\n", "COMMIT\n", "*raw\n", "COMMIT"])]
    assert kinds == ["TABLE", "RULE", "COMMIT", "STRAY", "TABLE", "RULE"]
