"""tos (revision 1): libxt_tos.t and iptables-legacy 1.8.9's texts and messages."""

from __future__ import annotations

import pytest
from checks import listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_tos.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text,numeric_text", [
    ("--tos Minimize-Delay", "--tos 0x10/0x3f", " tos match Minimize-Delay", " tos match0x10/0x3f"),
    ("! --tos 0xff", "! --tos 0xff/0xff", " tos match!0xff/0xff", " tos match!0xff/0xff"),
    ("--tos 0x0f/0x0f", "--tos 0x0f/0x0f", " tos match0x0f/0x0f", " tos match0x0f/0x0f"),
    ("--tos normal-service", "--tos 0x00/0x3f", " tos match Normal-Service", " tos match0x00/0x3f"),
    ("--tos 0x02/0x3f", "--tos 0x02/0x3f", " tos match Minimize-Cost", " tos match0x02/0x3f"),
    ("--tos 0x02/0x3e", "--tos 0x02/0x3e", " tos match0x02/0x3e", " tos match0x02/0x3e"),
])
def test_texts(args: str, save: str, text: str, numeric_text: str) -> None:
    assert rule_text("-m tos " + args) == "-m tos " + save
    assert listed("-m tos " + args, False) == text
    assert listed("-m tos " + args, True) == numeric_text


@pytest.mark.parametrize("args,message", [
    ("--tos 0x100", 'Symbolic name "0x100" is unknown'),
    ("--tos 1x", 'Illegal value: "1x"'),
    ("--tos 0x10/0x100", 'Illegal value: "0x10/0x100"'),
    ("--tos wrong", 'Symbolic name "wrong" is unknown'),
    ("", 'tos: option "--tos" must be specified\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m tos " + args) == message
