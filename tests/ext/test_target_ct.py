"""CT (revision 2): libxt_CT.t, events, zones, helpers and timeouts, and
the kernel's checks (raw table only; helper and timeout need -p and must
exist), as iptables-legacy 1.8.9 on this kernel does them."""

from __future__ import annotations

import pytest
from targetkit import check, parse, refused, texts

from pyfw.errors import EINVAL, ENOENT_CHAIN, KernelError


@pytest.mark.parametrize("args", [
    "-j CT --notrack",
    "-j CT --ctevents new,related,destroy,reply,assured,protoinfo,helper,mark",
    "-j CT --expevents new",
    "-j CT --zone 65535",
])
def test_t_ok(args: str) -> None:
    """libxt_CT.t:3-5,8 print back as given (raw table)."""
    for chain in ("PREROUTING", "OUTPUT"):
        assert texts(args, "raw", chain)[0] == args[len("-j CT"):]
        check(args, "raw", chain)


@pytest.mark.parametrize("args,message", [
    ("-j CT --zone 65536", "Cannot parse 65536 as a zone ID"),
    ("-j CT --zone -1", "Cannot parse -1 as a zone ID"),
])
def test_t_fail(args: str, message: str) -> None:
    """libxt_CT.t:9-10."""
    assert refused(args, "raw", "PREROUTING") == message


@pytest.mark.parametrize("args,save,listed", [
    ("", "", " CT"),
    ("--zone 0", "", " CT"),
    ("--zone 5", " --zone 5", " CT zone 5"),
    ("--zone 0x10", " --zone 16", " CT zone 16"),
    ("--zone mark", " --zone mark", " CT zone mark"),
    ("--zone MARK", " --zone mark", " CT zone mark"),
    ("--zone-orig 5 --zone-reply 6", " --zone 6", " CT zone 6"),
    ("--zone-orig 5 --zone 6", " --zone-orig 6", " CT zone-orig 6"),
    ("--zone-orig mark", " --zone-orig mark", " CT zone-orig mark"),
    ("--zone-reply 3", " --zone-reply 3", " CT zone-reply 3"),
    ("--ctevents new,natseqinfo,secmark --expevents new",
     " --ctevents new,natseqinfo,secmark --expevents new",
     " CT ctevents new,natseqinfo,secmark expevents new"),
    ("--ctevents mark,new,mark", " --ctevents new,mark", " CT ctevents new,mark"),
    ("-p tcp --notrack --helper foo", " --notrack --helper foo", " CT notrack helper foo"),
    ("--notrack --timeout foo", " --notrack --timeout foo", " CT notrack timeout foo"),
    ("-p tcp --helper ftp", " --helper ftp", " CT helper ftp"),
    ("--helper ''", "", " CT"),
])
def test_options(args: str, save: str, listed: str) -> None:
    """Checked against iptables-legacy 1.8.9 -S and -L."""
    assert texts("-j CT " + args, "raw", "OUTPUT") == (save, listed, listed)
    check("-j CT " + args, "raw", "OUTPUT")


@pytest.mark.parametrize("args,message", [
    ("--ctevents foo", 'Unknown event type "foo"'),
    ("--ctevents new,", 'Unknown event type ""'),
    ("--ctevents ''", 'Unknown event type ""'),
    ("--ctevents NEW", 'Unknown event type "NEW"'),
    ("--expevents destroy", 'Unknown event type "destroy"'),
    ("--zone foo", "Cannot parse foo as a zone ID"),
    ("--zone 5 --zone 6", 'CT: option "--zone" can only be used once.\n'),
])
def test_refused(args: str, message: str) -> None:
    assert refused("-j CT " + args, "raw") == message


def test_helper_cut_to_buffer() -> None:
    """XTOPT_PUT into char helper[16] keeps 15 bytes, silently."""
    p = parse("-j CT --helper abcdefghijklmnopqrst", "raw")
    assert p.target_ext.data.helper == "abcdefghijklmno"


@pytest.mark.parametrize("proto,helper", [
    ("tcp", "ftp"), ("udp", "sip"), ("tcp", "sip"), ("udp", "tftp"), ("tcp", "irc"),
    ("udp", "amanda"), ("tcp", "pptp"), ("udp", "RAS"), ("tcp", "Q.931"), ("udp", "snmp"),
    ("udp", "netbios-ns"), ("tcp", "sane"), ("udp", "snmp_trap"), ("udp", "H.245"), ("6", "ftp"),
])
def test_known_helpers(proto: str, helper: str) -> None:
    check(f"-p {proto} -j CT --helper {helper}", "raw", "OUTPUT")


@pytest.mark.parametrize("args,error", [
    ("-p udp -j CT --helper ftp", ENOENT_CHAIN),
    ("-p tcp -j CT --helper amanda", ENOENT_CHAIN),
    ("-p tcp -j CT --helper H.245", ENOENT_CHAIN),
    ("-p sctp -j CT --helper sip", ENOENT_CHAIN),
    ("-p tcp -j CT --helper foo", ENOENT_CHAIN),
    ("-p tcp -j CT --helper FTP", ENOENT_CHAIN),
    ("-j CT --helper ftp", ENOENT_CHAIN),
    ("! -p tcp -j CT --helper ftp", ENOENT_CHAIN),
    ("-p tcp -j CT --timeout foo", ENOENT_CHAIN),
    ("-j CT --timeout foo", EINVAL),
    ("-p tcp -j CT --helper foo --timeout bar", ENOENT_CHAIN),
    ("-j CT --helper ftp --timeout bar", ENOENT_CHAIN),
    ("-p tcp -j CT --helper ftp --timeout bar", ENOENT_CHAIN),
])
def test_kernel_refuses(args: str, error: str) -> None:
    with pytest.raises(KernelError) as info:
        check(args, "raw", "OUTPUT")
    assert info.value.message == error


@pytest.mark.parametrize("table", ["filter", "mangle", "nat"])
def test_raw_only(table: str) -> None:
    from pyfw.ext import find_target

    ext = find_target("CT")
    assert ext is not None and ext.table == "raw"
    with pytest.raises(KernelError):
        check("-j CT", table, "OUTPUT")


def test_data_differs_from_notrack() -> None:
    """`-j CT --notrack` and `-j NOTRACK` are different rules."""
    ct = parse("-j CT --notrack", "raw").target_ext
    nt = parse("-j NOTRACK", "raw").target_ext
    assert ct.data != nt.data
    assert ct.ext.save_name(ct.data) == "CT"
