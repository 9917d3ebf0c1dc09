"""LOG: libipt_LOG.t, level names, prefix cutting and quoting, -L texts
(from iptables-legacy 1.8.9)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.ext.base import RuleIp
from pyfw.ext.target_log import EXTENSIONS, IPOPT, TCPSEQ, LogData

EXT = EXTENSIONS[0]
T_FILE = (SHARED / "conformance/iptables-t/libipt_LOG.t")


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


def t_lines() -> list[tuple[str, str, str]]:
    out = []
    if T_FILE.exists():
        for line in T_FILE.read_text().splitlines():
            if line and line[0] not in "#:":
                rule, expected, result = line.split(";")[:3]
                out.append((rule, rule if expected == "=" else expected, result))
    return out


@pytest.mark.parametrize("rule,expected,result", t_lines())
def test_t_file(tmp_path: Path, rule: str, expected: str, result: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", *shlex.split(rule))
    if result == "FAIL":
        assert rc == 2
        return
    assert rc == 0, err
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1:] == [f"-A INPUT {expected}"]
    assert cli(tmp_path, "-D", "INPUT", *shlex.split(rule))[0] == 0


@pytest.mark.parametrize("rule,saved,listed,numeric", [
    ("", "", "LOG level warn", "LOG flags 0 level 4"),
    (("--log-level 0 --log-prefix abcdefghijklmnopqrstuvwxyz0123456789 --log-tcp-sequence "
     "--log-tcp-options --log-ip-options --log-uid --log-macdecode"),
     (" --log-prefix abcdefghijklmnopqrstuvwxyz012 --log-level 0 --log-tcp-sequence --log-tcp-options "
     "--log-ip-options --log-uid --log-macdecode"),
     'LOG level emerg tcp-sequence tcp-options ip-options uid macdecode prefix "abcdefghijklmnopqrstuvwxyz012"',
     'LOG flags 47 level 0 prefix "abcdefghijklmnopqrstuvwxyz012"'),
    ("--log-level 3", " --log-level 3", "LOG level err", "LOG flags 0 level 3"),
    ("--log-level 5 --log-prefix 'a\"b c'", ' --log-prefix "a\\"b c" --log-level 5',
     'LOG level notice prefix "a"b c"', 'LOG flags 0 level 5 prefix "a"b c"'),
    ("--log-level ' 07'", " --log-level 7", "LOG level debug", "LOG flags 0 level 7"),
    ("--log-level panic", " --log-level 0", "LOG level emerg", "LOG flags 0 level 0"),
    ("--log-level error", " --log-level 3", "LOG level err", "LOG flags 0 level 3"),
])
def test_texts(tmp_path: Path, rule: str, saved: str, listed: str, numeric: str) -> None:
    assert cli(tmp_path, "-A", "INPUT", "-j", "LOG", *shlex.split(rule))[0] == 0
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1] == f"-A INPUT -j LOG{saved}"
    assert cli(tmp_path, "-L", "INPUT")[1].splitlines()[2].endswith(f"anywhere             {listed}")
    assert cli(tmp_path, "-L", "INPUT", "-n")[1].splitlines()[2].endswith(f"0.0.0.0/0            {numeric}")


@pytest.mark.parametrize("rule,message", [
    ("--log-level 8", 'log level "8" unknown\n'),
    ("--log-level warn", 'log level "warn" unknown\n'),
    ("--log-level err", 'log level "err" unknown\n'),
    ("--log-level 08", 'log level "08" unknown\n'),
    ("--log-prefix ''", "Argument must have a minimum length of 1 characters\n"),
    ("--log-prefix 'a\nb'", "Newlines not allowed in --log-prefix"),
    ("--log-level 6 --log-level 5", 'LOG: option "--log-level" can only be used once.\n'),
    ("! --log-uid", 'LOG: option "--log-uid" cannot be inverted.\n'),
])
def test_parameter_problems(tmp_path: Path, rule: str, message: str) -> None:
    rc, _, err = cli(tmp_path, "-A", "INPUT", "-j", "LOG", *shlex.split(rule))
    assert rc == 2
    assert err.startswith(f"pyfw v1.8.9 (legacy): {message}\n")


def test_api() -> None:
    data = LogData(level=9, logflags=TCPSEQ | IPOPT | 0x40)
    assert EXT.print(data, RuleIp(), False) == " LOG UNKNOWN level 9 tcp-sequence ip-options unknown-flags"
    assert EXT.save(data, RuleIp()) == " --log-level 9 --log-tcp-sequence --log-ip-options"
