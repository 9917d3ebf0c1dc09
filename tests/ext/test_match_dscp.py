"""dscp: libxt_dscp.t and iptables-legacy 1.8.9's texts and messages."""

from __future__ import annotations

import pytest
from checks import listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_dscp.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--dscp 0x3f", "--dscp 0x3f", " DSCP match 0x3f"),
    ("! --dscp 10", "! --dscp 0x0a", " DSCP match !0x0a"),
    ("! --dscp-class EF", "! --dscp 0x2e", " DSCP match !0x2e"),
    ("--dscp-class af41xyz", "--dscp 0x22", " DSCP match 0x22"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m dscp " + args) == "-m dscp " + save
    assert listed("-m dscp " + args, False) == text


@pytest.mark.parametrize("args,message", [
    ("--dscp 0x40", 'dscp: bad value for option "--dscp", or out of range (0-63).\n'),
    ("--dscp -1", 'dscp: bad value for option "--dscp", or out of range (0-63).\n'),
    ("--dscp 0x3f --dscp-class CS0", 'dscp: option "--dscp" cannot be used together with "--dscp-class".\n'),
    ("--dscp-class foo", "Invalid DSCP value `foo'"),
    ("", "DSCP match: Parameter --dscp is required"),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m dscp " + args) == message
