"""TCPMSS: libxt_TCPMSS.t and the kernel's checks (-p tcp, a tcp match
requiring SYN, clamping only from FORWARD/OUTPUT/POSTROUTING), as
iptables-legacy 1.8.9 does them."""

from __future__ import annotations

import pytest
from targetkit import check, refused, texts

from pyfw.errors import EINVAL, KernelError

CHAINS = ("FORWARD", "OUTPUT", "POSTROUTING")


def test_t_no_option() -> None:
    """libxt_TCPMSS.t:3."""
    assert refused("-j TCPMSS") == "TCPMSS target: At least one parameter is required"


def test_t_no_syn_match() -> None:
    """libxt_TCPMSS.t:4: accepted by iptables, refused by the kernel."""
    for chain in CHAINS:
        assert texts("-p tcp -j TCPMSS --set-mss 42", "mangle", chain)[0] == " --set-mss 42"
        with pytest.raises(KernelError) as info:
            check("-p tcp -j TCPMSS --set-mss 42", "mangle", chain)
        assert info.value.message == EINVAL


@pytest.mark.parametrize("args,expected", [
    ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --set-mss 42", " --set-mss 42"),
    ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu", " --clamp-mss-to-pmtu"),
])
def test_t_ok(args: str, expected: str) -> None:
    """libxt_TCPMSS.t:5-6."""
    for chain in CHAINS:
        assert texts(args, "mangle", chain)[0] == expected
        check(args, "mangle", chain)


@pytest.mark.parametrize("args,save,listed", [
    ("--set-mss 65515", " --set-mss 65515", " TCPMSS set 65515"),
    ("--set-mss 0", " --set-mss 0", " TCPMSS set 0"),
    ("--set-mss 42 --clamp-mss-to-pmtu", " --clamp-mss-to-pmtu", " TCPMSS clamp to PMTU"),
    ("--clamp-mss-to-pmtu --set-mss 42", " --set-mss 42", " TCPMSS set 42"),
])
def test_options(args: str, save: str, listed: str) -> None:
    rule = "-p tcp --syn -j TCPMSS " + args
    assert texts(rule, "mangle", "FORWARD") == (save, listed, listed)
    check(rule, "mangle", "FORWARD")


@pytest.mark.parametrize("args,message", [
    ("--set-mss 65516", 'TCPMSS: bad value for option "--set-mss", or out of range (0-65515).\n'),
    ("--set-mss 1 --set-mss 2", 'TCPMSS: option "--set-mss" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-p tcp --syn -j TCPMSS " + args) == message


@pytest.mark.parametrize("rule", [
    "-p tcp --tcp-flags SYN SYN",
    "-p tcp --tcp-flags ALL SYN,ACK",
    "-p tcp --tcp-flags ACK SYN",
    "-p tcp -m tcp --dport 22 -m tcp --syn",
    "-p 6 -m tcp --syn",
])
def test_syn_matches(rule: str) -> None:
    check(rule + " -j TCPMSS --set-mss 4", "filter", "INPUT")


@pytest.mark.parametrize("rule", [
    "-p tcp ! --syn",
    "-p tcp ! --tcp-flags SYN SYN",
    "-p tcp --tcp-flags SYN NONE",
    "-p tcp --dport 22",
    "! -p tcp --syn",
    "-p udp",
])
def test_kernel_refuses(rule: str) -> None:
    with pytest.raises(KernelError):
        check(rule + " -j TCPMSS --set-mss 4", "mangle", "FORWARD")


@pytest.mark.parametrize("chain", ["PREROUTING", "INPUT"])
def test_clamp_hooks(chain: str) -> None:
    """Clamping is refused from PREROUTING/INPUT; a fixed MSS is not."""
    check("-p tcp --syn -j TCPMSS --set-mss 5", "mangle", chain)
    with pytest.raises(KernelError):
        check("-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "mangle", chain)


def test_clamp_in_unreferenced_user_chain() -> None:
    """A user chain reachable from no hook passes the hook test."""
    check("-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "mangle", "INPUT", hooks=frozenset())
    with pytest.raises(KernelError):
        check("-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", "mangle", "INPUT",
              hooks=frozenset({"FORWARD", "INPUT"}))
