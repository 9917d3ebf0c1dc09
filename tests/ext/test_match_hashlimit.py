"""hashlimit revision 3: libxt_hashlimit.t, byte rates, rate-match, the
old --hashlimit spelling and the kernel's checkentry (texts and results
taken from iptables-legacy 1.8.9 on the reference kernel)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from paths import SHARED

from pyfw.cli.main import run
from pyfw.errors import EINVAL, KernelError
from pyfw.ext.base import CheckContext, RuleIp
from pyfw.ext.match_hashlimit import (
    BYTES,
    EXTENSIONS,
    INVERT,
    RATE_MATCH,
    HashlimitData,
    htable_conflict,
    inet_aton_exact,
    parse_plen,
)
from pyfw.ext.match_limit import ERANGE

EXT = EXTENSIONS[0]
T_FILE = (SHARED / "conformance/iptables-t/libxt_hashlimit.t")
EINVAL_TEXT = "pyfw: Invalid argument. Run `dmesg' for more information.\n"


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "rules")

    def __call__(self, *args: str) -> tuple[int, str, str]:
        rc, out, err = run(["pyfw", "--file", self.path, *args])
        return rc, out, err

    def add(self, rule: str) -> tuple[int, str]:
        rc, _, err = self("-A", "INPUT", *shlex.split(rule))
        return rc, err

    def rules(self) -> list[str]:
        return [line[len("-A INPUT "):] for line in self("-S", "INPUT")[1].splitlines()[1:]]

    def listing(self) -> list[str]:
        return [line.split("0.0.0.0/0")[-1].strip() for line in self("-L", "INPUT", "-n")[1].splitlines()[2:]]


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
    cli = Cli(tmp_path)
    rc, err = cli.add(rule)
    if result == "FAIL":
        assert rc != 0
        return
    assert rc == 0, err
    assert cli.rules() == [expected]
    assert cli("-D", "INPUT", *rule.split())[0] == 0


@pytest.mark.parametrize("rule,saved,listed", [
    ("--hashlimit-upto 1/sec --hashlimit-name x --hashlimit-htable-size 2000000 --hashlimit-htable-max 3000000",
     ("--hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name x --hashlimit-htable-size 1048576 "
     "--hashlimit-htable-max 1048576"),
     "limit: up to 1/sec burst 5 htable-size 1048576 htable-max 1048576"),
    (("--hashlimit-above 1/sec --hashlimit-name y --hashlimit-mode srcip,dstport,dstip,srcport "
     "--hashlimit-srcmask 24 --hashlimit-dstmask 16"),
     ("--hashlimit-above 1/sec --hashlimit-burst 5 --hashlimit-mode srcip,srcport,dstip,dstport "
     "--hashlimit-name y --hashlimit-srcmask 24 --hashlimit-dstmask 16"),
     "limit: above 1/sec burst 5 mode srcip-srcport-dstip-dstport srcmask 24 dstmask 16"),
    ("! --hashlimit-upto 1/min --hashlimit-name y --hashlimit-mode srcip|dstip",
     "--hashlimit-above 1/min --hashlimit-burst 5 --hashlimit-mode srcip,dstip --hashlimit-name y",
     "limit: above 1/min burst 5 mode srcip-dstip"),
    ("--hashlimit 1/min --hashlimit-name y --hashlimit-burst 1000000",
     "--hashlimit-upto 1/min --hashlimit-burst 1000000 --hashlimit-name y",
     "limit: up to 1/min burst 1000000"),
    ("--hashlimit-upto 1/s --hashlimit-burst 5k --hashlimit-name z --hashlimit-mode ,",
     "--hashlimit-upto 1/sec --hashlimit-burst 5120 --hashlimit-name z",
     "limit: up to 1/sec burst 5120"),
    (("--hashlimit-upto 1/s --hashlimit-srcmask 255.255.0.0 --hashlimit-dstmask 255.255.255.254 "
     "--hashlimit-name z"),
     ("--hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name z --hashlimit-srcmask 16 "
     "--hashlimit-dstmask 31"),
     "limit: up to 1/sec burst 5 srcmask 16 dstmask 31"),
    # The interval without rate-match is kept and only -L shows it.
    ("--hashlimit-upto 1/s --hashlimit-rate-interval 5 --hashlimit-name z",
     "--hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name z",
     "limit: up to 12/min burst 5 htable-expire 1000"),
    ("--hashlimit-upto 1/min --hashlimit-name q2 --hashlimit-rate-match",
     ("--hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name q2 --hashlimit-htable-expire 60000 "
     "--hashlimit-rate-match --hashlimit-rate-interval 60"),
     "limit: up to 1/min burst 5 rate-match rate-interval 60"),
    ("--hashlimit-upto 7/hour --hashlimit-name q3 --hashlimit-rate-match",
     ("--hashlimit-upto 7/sec --hashlimit-burst 5 --hashlimit-name q3 --hashlimit-htable-expire 3600000 "
     "--hashlimit-rate-match --hashlimit-rate-interval 3600"),
     "limit: up to 168/day burst 5 htable-expire 3600000 rate-match rate-interval 3600"),
    ("--hashlimit-upto 4kb/s --hashlimit-burst 400kb --hashlimit-name m",
     "--hashlimit-upto 4kb/s --hashlimit-burst 400kb --hashlimit-name m",
     "limit: up to 4kb/s burst 400kb"),
    ("--hashlimit-upto 1000b/s --hashlimit-name m",
     "--hashlimit-upto 992b/s --hashlimit-name m", "limit: up to 992b/s"),
    ("--hashlimit-upto 70000mb/s --hashlimit-name m",
     "--hashlimit-upto 4908534032b/s --hashlimit-name m", "limit: up to 4908534032b/s"),
    ("--hashlimit-upto 65536mb/s --hashlimit-name m",
     "--hashlimit-upto 0b/s --hashlimit-name m", "limit: up to 0b/s"),
    ("--hashlimit-upto 4kb/s --hashlimit-name m --hashlimit-htable-expire 16000",
     "--hashlimit-upto 4kb/s --hashlimit-name m --hashlimit-htable-expire 16000",
     "limit: up to 4kb/s htable-expire 16000"),
])
def test_texts(tmp_path: Path, rule: str, saved: str, listed: str) -> None:
    cli = Cli(tmp_path)
    assert cli.add(f"-m hashlimit {rule}")[0] == 0
    assert cli.rules() == [f"-m hashlimit {saved}"]
    assert cli.listing() == [listed]


@pytest.mark.parametrize("rule,message", [
    ("--hashlimit-upto 1/sec --hashlimit-name ''", "Argument must have a minimum length of 1 characters\n"),
    ("--hashlimit-upto 1/sec", 'hashlimit: option "--hashlimit-name" must be specified\n'),
    ("--hashlimit-name z", "You have to specify --hashlimit"),
    ("--hashlimit-upto 1/s --hashlimit-above 2/s --hashlimit-name z",
     'hashlimit: option "--hashlimit-upto" cannot be used together with "--hashlimit-above".\n'),
    ("--hashlimit-above 1/s --hashlimit 2/s --hashlimit-name z",
     'hashlimit: option "--hashlimit-upto" cannot be used together with "--hashlimit-above".\n'),
    ("--hashlimit-upto 1/s --hashlimit 2/s --hashlimit-name z",
     'hashlimit: option "--hashlimit-upto" can only be used once.\n'),
    ("--hashlimit 1/s --hashlimit-upto 2/s --hashlimit-name z",
     'hashlimit: option "--hashlimit-upto" can only be used once.\n'),
    ("--hashlimit 1/s --hashlimit 2/s --hashlimit-name z",
     'hashlimit: option "--hashlimit-upto" can only be used once.\n'),
    ("--hashlimit 1/fortnight --hashlimit-name z",
     'hashlimit: Bad value for "--hashlimit-upto" option: "1/fortnight"'),
    ("--hashlimit-above 0kb/s --hashlimit-name z",
     'hashlimit: Bad value for "--hashlimit-above" option: "0kb/s"'),
    ("--hashlimit-upto 2000000/s --hashlimit-name z", 'Rate too fast "2000000/s"'),
    # iptables dies of a division by zero here (SIGFPE); pyfw refuses.
    ("--hashlimit-upto 68719476720b/s --hashlimit-name z", 'Rate too high "68719476720b/s"'),
    ("--hashlimit-upto 1/s --hashlimit-mode foo --hashlimit-name z",
     'hashlimit: Bad value for "--hashlimit-mode" option: "foo"'),
    ("--hashlimit-upto 1/s --hashlimit-burst 0 --hashlimit-name z",
     'bad value for option "--hashlimit-burst", or out of range (1-1000000).'),
    ("--hashlimit-upto 1/s --hashlimit-burst 2000k --hashlimit-name z",
     'bad value for option "--hashlimit-burst", or out of range (1-1000000).'),
    ("--hashlimit-upto 4kb/s --hashlimit-burst 3kb --hashlimit-name z", "burst cannot be smaller than 4096b"),
    ("--hashlimit-upto 1/s --hashlimit-srcmask foo --hashlimit-name z",
     ('hashlimit: bad value for option "--hashlimit-srcmask", neither a valid network mask nor valid '
     'CIDR (0-32).\n')),
    ("--hashlimit-upto 1/s --hashlimit-rate-interval 0 --hashlimit-name z",
     'hashlimit: Bad value for "--hashlimit-rate-interval" option: "0"'),
])
def test_parameter_problems(tmp_path: Path, rule: str, message: str) -> None:
    rc, err = Cli(tmp_path).add(f"-m hashlimit {rule}")
    assert rc == 2
    assert err.startswith(f"pyfw v1.8.9 (legacy): {message}\n")


@pytest.mark.parametrize("rule,text", [
    ("--hashlimit-upto 1/s --hashlimit-name .", EINVAL_TEXT),
    ("--hashlimit-upto 1/s --hashlimit-name a/b", EINVAL_TEXT),
    ("--hashlimit-upto 1/s --hashlimit-name y --hashlimit-htable-gcinterval 0", EINVAL_TEXT),
    ("--hashlimit-upto 1/s --hashlimit-name y --hashlimit-htable-expire 0", EINVAL_TEXT),
    ("--hashlimit-upto 1/s --hashlimit-name y --hashlimit-srcmask 33", EINVAL_TEXT),
    ("--hashlimit 1/day --hashlimit-name y --hashlimit-burst 1000000", "pyfw: Numerical result out of range.\n"),
    ("--hashlimit-upto 2000000/day --hashlimit-name y --hashlimit-rate-match",
     "pyfw: Numerical result out of range.\n"),
    (("--hashlimit-upto 4/s --hashlimit-name b -m hashlimit --hashlimit-upto 4/s --hashlimit-name b "
     "--hashlimit-rate-match"), EINVAL_TEXT),
])
def test_kernel_refusals(tmp_path: Path, rule: str, text: str) -> None:
    assert Cli(tmp_path).add(f"-m hashlimit {rule}") == (1, text)


def test_long_names(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.add("-m hashlimit --hashlimit-upto 1/s --hashlimit-name " + "n" * 300)[0] == 0
    assert cli.rules() == ["-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name "
                           + "n" * 254]


def test_data_and_credits() -> None:
    data = HashlimitData(name="a", avg=1000000, burst=5, expire=1000)
    assert data.cost == 1000000 * 137438953
    assert data.credit_cap == 5 * data.cost
    assert htable_conflict(HashlimitData(name="a", mode=RATE_MATCH), data)
    assert not htable_conflict(HashlimitData(name="a", mode=BYTES | INVERT), data)
    ctx = CheckContext("filter", "INPUT", frozenset({"INPUT"}), RuleIp())
    EXT.check(data, ctx)
    with pytest.raises(KernelError) as exc:
        EXT.check(HashlimitData(name="a", avg=1, burst=0, expire=1000), ctx)
    assert exc.value.message == ERANGE
    with pytest.raises(KernelError) as exc:
        EXT.check(HashlimitData(name="..", avg=1, expire=1000), ctx)
    assert exc.value.message == EINVAL


@pytest.mark.parametrize("text,value", [
    ("1.2.3.4", 0x01020304), ("1.2.3", 0x01020003), ("1.2", 0x01000002), ("33", 33),
    ("0x21", 33), ("010.0.0.1", 0x08000001), ("1.2.3.4.5", None), ("256.0.0.0", None),
    ("1.2.65536", None), ("", None), (" 1", None), ("1.2.3.4 ", None), ("08", None),
])
def test_inet_aton(text: str, value: int | None) -> None:
    assert inet_aton_exact(text) == value


def test_plen() -> None:
    assert parse_plen("hashlimit-srcmask", "24") == 24
    assert parse_plen("hashlimit-srcmask", "255.255.255.0") == 24
    assert parse_plen("hashlimit-srcmask", "33") == 255  # 0.0.0.33: not contiguous


def test_first_htable_conflict() -> None:
    from pyfw.ext.match_hashlimit import first_htable_conflict

    plain, rated = HashlimitData(name="x"), HashlimitData(name="x", mode=RATE_MATCH)
    assert first_htable_conflict([plain], [plain, HashlimitData(name="y", mode=RATE_MATCH)]) is None
    assert first_htable_conflict([plain], [rated]) is rated
    other = HashlimitData(name="x", mode=RATE_MATCH | BYTES)
    assert first_htable_conflict([], [rated, plain, other]) is plain
