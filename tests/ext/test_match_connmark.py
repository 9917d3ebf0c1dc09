"""connmark (revision 1): libxt_connmark.t and iptables-legacy 1.8.9's texts."""

from __future__ import annotations

import pytest
from checks import listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_connmark.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--mark 0xffffffff/0x0", "--mark 0xffffffff/0x0", " connmark match  0xffffffff/0x0"),
    ("! --mark 7", "! --mark 0x7", " connmark match ! 0x7"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m connmark " + args) == "-m connmark " + save
    assert listed("-m connmark " + args, False) == text


def test_any_table() -> None:
    assert rule_text("-m connmark --mark 1", "filter", "INPUT") == "-m connmark --mark 0x1"


@pytest.mark.parametrize("args,message", [
    ("", 'connmark: option "--mark" must be specified\n'),
    ("--mark -1", 'connmark: bad integer value for option "--mark", or out of range.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m connmark " + args) == message
