"""owner (revision 1): libxt_owner.t, the kernel's OUTPUT/POSTROUTING rule
and range check, and iptables-legacy 1.8.9's texts and messages."""

from __future__ import annotations

import pytest
from checks import kernel_refused, listed, refused, rule_text, run_t, t_cases


@pytest.mark.parametrize("table,chains,rule,expected,result", t_cases("libxt_owner.t"))
def test_t_file(table: str, chains: list[str], rule: str, expected: str, result: str) -> None:
    run_t(table, chains, rule, expected, result)


@pytest.mark.parametrize("args,save,text,numeric_text", [
    ("--uid-owner root", "--uid-owner 0", " owner UID match root", " owner UID match 0"),
    ("! --uid-owner 0-10 ! --gid-owner 5:7 --suppl-groups",
     "! --uid-owner 0-10 ! --gid-owner 5-7 --suppl-groups",
     " ! owner UID match 0-10 ! owner GID match 5-7 incl. suppl. groups",
     " ! owner UID match 0-10 ! owner GID match 5-7 incl. suppl. groups"),
    ("! --socket-exists --gid-owner root", "! --socket-exists --gid-owner 0",
     " ! owner socket exists owner GID match root", " ! owner socket exists owner GID match 0"),
    ("--uid-owner 4294967294", "--uid-owner 4294967294", " owner UID match 4294967294",
     " owner UID match 4294967294"),
    ("--uid-owner 0x10", "--uid-owner 16", None, " owner UID match 16"),
])
def test_texts(args: str, save: str, text: str | None, numeric_text: str) -> None:
    assert rule_text("-m owner " + args, "mangle", "OUTPUT") == "-m owner " + save
    if text is not None:
        assert listed("-m owner " + args, False, "mangle", "OUTPUT") == text
    assert listed("-m owner " + args, True, "mangle", "OUTPUT") == numeric_text


@pytest.mark.parametrize("table,chain", [
    ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"), ("nat", "OUTPUT"), ("raw", "OUTPUT"),
    ("filter", "OUTPUT"),
])
def test_output_hooks(table: str, chain: str) -> None:
    assert rule_text("-m owner --socket-exists", table, chain) == "-m owner --socket-exists"


@pytest.mark.parametrize("args,table,chain", [
    ("--uid-owner 1", "mangle", "INPUT"),
    ("--uid-owner 1", "mangle", "PREROUTING"),
    ("--uid-owner 1", "filter", "FORWARD"),
    ("--uid-owner 10-5", "mangle", "OUTPUT"),
    ("--gid-owner 10-5", "mangle", "OUTPUT"),
    ("--uid-owner 3 --gid-owner 10-5 --suppl-groups", "mangle", "OUTPUT"),
])
def test_kernel_refused(args: str, table: str, chain: str) -> None:
    kernel_refused("-m owner " + args, table, chain)


@pytest.mark.parametrize("args,message", [
    ("--uid-owner 4294967295", 'owner: Bad value for "--uid-owner" option: "4294967295"'),
    ("--uid-owner 5-", 'owner: Bad value for "--uid-owner" option: "5-"'),
    ("--uid-owner foo-no-such-user", 'owner: Bad value for "--uid-owner" option: "foo-no-such-user"'),
    ("--gid-owner 1,2", 'owner: Bad value for "--gid-owner" option: "1,2"'),
    ("--gid-owner 0-10 ! --suppl-groups", 'owner: option "--suppl-groups" cannot be inverted.\n'),
    ("--suppl-groups --gid-owner 0-10",
     'owner: Bad value for "--suppl-groups" option: "you need to use --gid-owner first"'),
    ("", "owner: At least one of --uid-owner, --gid-owner or --socket-exists is required"),
    ("--uid-owner 1 --uid-owner 2", 'owner: option "--uid-owner" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-m owner " + args, "mangle", "OUTPUT") == message
