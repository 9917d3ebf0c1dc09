"""mark (revision 1): libxt_mark.t and iptables-legacy 1.8.9's texts."""

from __future__ import annotations

import pytest
from checks import listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_mark.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--mark 0xfeedcafe/0xfeedcafe", "--mark 0xfeedcafe/0xfeedcafe", " mark match 0xfeedcafe/0xfeedcafe"),
    ("! --mark 5", "! --mark 0x5", " mark match ! 0x5"),
    ("--mark 5/0xffffffff", "--mark 0x5", " mark match 0x5"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m mark " + args) == "-m mark " + save
    assert listed("-m mark " + args, False) == text
    assert listed("-m mark " + args, True) == text


@pytest.mark.parametrize("args,message", [
    ("--mark 5/", 'mark: bad integer value for option "--mark", or out of range.\n'),
    ("--mark 5x", 'mark: trailing garbage after value for option "--mark".\n'),
    ("--mark 0x100000000", 'mark: bad integer value for option "--mark", or out of range.\n'),
    ("--mark 5/7/8", 'mark: trailing garbage after value for option "--mark".\n'),
    ("", 'mark: option "--mark" must be specified\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m mark " + args) == message
