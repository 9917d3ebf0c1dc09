"""recent: libipt_recent.t and libxt_recent.t, the exclusive commands, the
kernel's checks and %d printing (texts from iptables-legacy 1.8.9)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import CheckContext, RuleIp
from pyfw.ext.match_recent import CHECK, EXTENSIONS, SET, RecentData

EXT = EXTENSIONS[0]
T_DIR = (SHARED / "conformance/iptables-t")
EINVAL_TEXT = "pyfw: Invalid argument. Run `dmesg' for more information.\n"


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    rc, out, err = run(["pyfw", "--file", str(tmp_path / "rules"), *args])
    return rc, out, err


def add(tmp_path: Path, rule: str) -> tuple[int, str]:
    rc, _, err = cli(tmp_path, "-A", "INPUT", *shlex.split(rule))
    return rc, err


def t_lines() -> list[tuple[str, str, str]]:
    out = []
    for name in ("libipt_recent.t", "libxt_recent.t"):
        path = T_DIR / name
        if path.exists():
            for line in path.read_text().splitlines():
                if line and line[0] not in "#:":
                    rule, expected, result = line.split(";")[:3]
                    out.append((rule, rule if expected == "=" else expected, result))
    return out


@pytest.mark.parametrize("rule,expected,result", t_lines())
def test_t_files(tmp_path: Path, rule: str, expected: str, result: str) -> None:
    rc, err = add(tmp_path, rule)
    if result == "FAIL":
        assert rc != 0
        return
    assert rc == 0, err
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1:] == [f"-A INPUT {expected}"]
    assert cli(tmp_path, "-D", "INPUT", *shlex.split(rule))[0] == 0


@pytest.mark.parametrize("rule,saved,listed", [
    ("--rcheck --reap --seconds 4294967295 --hitcount 255 --rttl --rdest --name foo --mask 255.255.0.0",
     "--rcheck --seconds -1 --reap --hitcount 255 --rttl --name foo --mask 255.255.0.0 --rdest",
     "recent: CHECK seconds: -1 reap hit_count: 255 TTL-Match name: foo side: dest mask: 255.255.0.0"),
    ("! --update --seconds 2147483648 --rsource --rdest",
     "! --update --seconds -2147483648 --name DEFAULT --mask 255.255.255.255 --rdest",
     "! recent: UPDATE seconds: -2147483648 name: DEFAULT side: dest mask: 255.255.255.255"),
    ("--rcheck --hitcount 65535", "--rcheck --hitcount 65535 --name DEFAULT --mask 255.255.255.255 --rsource",
     "recent: CHECK hit_count: 65535 name: DEFAULT side: source mask: 255.255.255.255"),
    ("--remove --mask 1.2.3 --hitcount 0", "--remove --name DEFAULT --mask 1.2.0.3 --rsource",
     "recent: REMOVE name: DEFAULT side: source mask: 1.2.0.3"),
    ("--set --name 'a b'", "--set --name a b --mask 255.255.255.255 --rsource",
     "recent: SET name: a b side: source mask: 255.255.255.255"),
    ("--set --name " + "r" * 250, f"--set --name {'r' * 199} --mask 255.255.255.255 --rsource",
     f"recent: SET name: {'r' * 199} side: source mask: 255.255.255.255"),
])
def test_texts(tmp_path: Path, rule: str, saved: str, listed: str) -> None:
    assert add(tmp_path, f"-m recent {rule}")[0] == 0
    assert cli(tmp_path, "-S", "INPUT")[1].splitlines()[1] == f"-A INPUT -m recent {saved}"
    assert cli(tmp_path, "-L", "INPUT", "-n")[1].splitlines()[2].endswith(f"0.0.0.0/0            {listed}")


@pytest.mark.parametrize("rule,message", [
    ("--set --rttl", 'recent: option "--rttl" cannot be used together with "--set".\n'),
    ("--rttl --set", 'recent: option "--rttl" cannot be used together with "--set".\n'),
    ("--remove --rttl", 'recent: option "--rttl" cannot be used together with "--remove".\n'),
    ("--rcheck --reap", 'recent: option "--reap" also requires "--seconds".\n'),
    ("--rcheck --seconds 0",
     'recent: bad value for option "--seconds", or out of range (1-4294967295).\n'),
    ("--name x", "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'"),
    ("--set --update", 'recent: option "--set" cannot be used together with "--update".\n'),
    ("--update --set", 'recent: option "--set" cannot be used together with "--update".\n'),
    ("--set --set", 'recent: option "--set" can only be used once.\n'),
    ("--remove ! --rdest", 'recent: option "--rdest" cannot be inverted.\n'),
])
def test_parameter_problems(tmp_path: Path, rule: str, message: str) -> None:
    rc, err = add(tmp_path, f"-m recent {rule}")
    assert rc == 2
    assert err.startswith(f"pyfw v1.8.9 (legacy): {message}\n")


@pytest.mark.parametrize("rule", [
    "--set --seconds 5", "--set --hitcount 2", "--set --reap --seconds 3", "--rcheck --hitcount 65536",
    "--rcheck --hitcount 4294967295", "--remove --name .", "--remove --name ..", "--remove --name a/b",
    "--remove --name ''",
])
def test_kernel_refusals(tmp_path: Path, rule: str) -> None:
    assert add(tmp_path, f"-m recent {rule}") == (1, EINVAL_TEXT)


def test_check_api() -> None:
    ctx = CheckContext("filter", "INPUT", frozenset({"INPUT"}), RuleIp())
    EXT.check(RecentData(check_set=CHECK, hit_count=65535), ctx)
    with pytest.raises(KernelError) as exc:
        EXT.check(RecentData(check_set=SET | CHECK), ctx)
    assert exc.value.message == EINVAL
