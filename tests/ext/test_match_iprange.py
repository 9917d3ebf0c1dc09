"""iprange (revision 1): libxt_iprange.t, libipt_iprange.t and
iptables-legacy 1.8.9's texts and messages."""

from __future__ import annotations

import pytest
from checks import listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result",
                         t_cases("libxt_iprange.t") + t_cases("libipt_iprange.t"))
def test_t_files(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text", [
    ("--src-range 1.1.1.1-1.1.1.10 ! --dst-range 2.2.2.2",
     "--src-range 1.1.1.1-1.1.1.10 ! --dst-range 2.2.2.2-2.2.2.2",
     " source IP range 1.1.1.1-1.1.1.10 destination IP range ! 2.2.2.2-2.2.2.2"),
    ("--src-range 10-10.1", "--src-range 10.0.0.0-10.1.0.0", " source IP range 10.0.0.0-10.1.0.0"),
])
def test_texts(args: str, save: str, text: str) -> None:
    assert rule_text("-m iprange " + args) == "-m iprange " + save
    assert listed("-m iprange " + args, False) == text


def test_reversed_warns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pyfw.cli.main import run

    r = run(["pyfw", "--file", str(tmp_path / "f"), "-A", "INPUT", "-m", "iprange",
             "--src-range", "1.1.1.10-1.1.1.1"])
    assert r.rc == 0
    assert r.err == "xt_iprange: range 1.1.1.10-1.1.1.1 is reversed and will never match\n"


@pytest.mark.parametrize("args,message", [
    ("--src-range 1.1.1.1-", 'iprange: Bad value for "--src-range" option: ""'),
    ("--dst-range foo", 'iprange: Bad value for "--dst-range" option: "foo"'),
    ("--src-range 1.1.1.1-2.2.2.2-3.3.3.3", 'iprange: Bad value for "--src-range" option: "2.2.2.2-3.3.3.3"'),
    ("", "iprange match: You must specify `--src-range' or `--dst-range'"),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m iprange " + args) == message
