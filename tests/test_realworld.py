"""Real rulesets: pyfw must print exactly what iptables-legacy 1.8.9 prints.

For each /work/shared/realworld-rulesets/rulesets/*.rules the file is
restored into the kernel (a fresh network namespace per file) and into a
fresh pyfw ruleset file; then the restore's own output, the save text (`#`
lines aside) and, for each table of the file, `-t T -S` and
`-t T -L -n -v -x` must agree byte for byte.

For each refusals/*.rules, iptables-legacy-restore refuses the file; pyfw-
restore must refuse it with the same exit status and stderr (program name
aside), and leave the same tables behind (legacy commits each table at its
COMMIT, so tables before the broken one stay loaded).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from oracle import Netns, requires_root_netns

from pyfw.cli.main import run

pytestmark = [pytest.mark.root, requires_root_netns, pytest.mark.usefixtures("no_network")]

_BASE = None
try:
    import conformance as _conf

    _BASE = _conf.shared_dir() / "realworld-rulesets"
except Exception:  # pragma: no cover
    pass


def _names(sub: str) -> list[str]:
    if _BASE is None or not (_BASE / sub).is_dir():
        return []
    return sorted(p.name for p in (_BASE / sub).glob("*.rules"))


RULESETS = _names("rulesets")
REFUSALS = _names("refusals")
_NO_DATA = f"no realworld rulesets at {_BASE} (set PYFW_SHARED)"

_PROG = re.compile(r"\biptables(?:-legacy)?-restore\b")


def tables_of(text: str) -> list[str]:
    """Tables the restore text names (`*T` lines, `* T` too), first-seen order."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            words = line[1:].split()
            if words and words[0] not in out:
                out.append(words[0])
    return out


def strip_comments(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))


def normalise_prog(text: str) -> str:
    return _PROG.sub("pyfw-restore", text)


def difference(label: str, want: str, got: str, limit: int = 40) -> str | None:
    """None when equal; else the first differing line and a unified diff."""
    if want == got:
        return None
    w, g = want.splitlines(keepends=True), got.splitlines(keepends=True)
    first = next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g)))
    wl = w[first] if first < len(w) else "<end>"
    gl = g[first] if first < len(g) else "<end>"
    head = (f"--- {label}: first difference at line {first + 1} "
            f"(kernel {len(w)} lines, pyfw {len(g)} lines)\n"
            f"    kernel: {wl!r}\n    pyfw:   {gl!r}\n")
    diff = list(difflib.unified_diff(w, g, f"iptables-legacy {label}", f"pyfw {label}", n=2))
    body = "".join(d if d.endswith("\n") else d + "\n" for d in diff[:limit])
    if len(diff) > limit:
        body += f"... ({len(diff) - limit} more diff lines)\n"
    return head + body


class Pyfw:
    """pyfw commands on one ruleset file, in-process."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def iptables(self, *args: str) -> tuple[int, str, str]:
        return tuple(run(["pyfw", "--file", self.path, *args]))  # type: ignore[return-value]

    def save(self, *args: str) -> tuple[int, str, str]:
        return tuple(run(["pyfw-save", "--file", self.path, *args]))  # type: ignore[return-value]

    def restore(self, text: str, *args: str) -> tuple[int, str, str]:
        return tuple(run(["pyfw-restore", "--file", self.path, *args], stdin=text))  # type: ignore[return-value]


def _compare_listings(kernel: Netns, pyfw: Pyfw, tables: list[str]) -> list[str]:
    problems = []
    k_rc, k_out, k_err = kernel.save()
    p_rc, p_out, p_err = pyfw.save()
    if (k_rc, k_err) != (p_rc, p_err):
        problems.append(f"--- save: exit/stderr differ: kernel {k_rc} {k_err!r}, pyfw {p_rc} {p_err!r}\n")
    d = difference("save", strip_comments(k_out), strip_comments(p_out))
    if d:
        problems.append(d)
    for table in tables:
        for args in (["-t", table, "-S"], ["-t", table, "-L", "-n", "-v", "-x"]):
            label = " ".join(args)
            k_rc, k_out, k_err = kernel.iptables(*args)
            p_rc, p_out, p_err = pyfw.iptables(*args)
            if k_rc != p_rc:
                problems.append(f"--- {label}: exit kernel {k_rc} ({k_err.strip()!r}), "
                                f"pyfw {p_rc} ({p_err.strip()!r})\n")
            d = difference(label, k_out, p_out)
            if d:
                problems.append(d)
    return problems


@pytest.mark.skipif(not RULESETS, reason=_NO_DATA)
@pytest.mark.parametrize("name", RULESETS or ["-"])
def test_ruleset(kernel: Netns, tmp_path: Path, name: str) -> None:
    assert _BASE is not None
    text = (_BASE / "rulesets" / name).read_text(encoding="utf-8", errors="surrogateescape")
    k_rc, k_out, k_err = kernel.restore(text)
    assert k_rc == 0, f"iptables-legacy-restore refused {name} (exit {k_rc}): {k_err}"
    pyfw = Pyfw(tmp_path / "rules")
    p_rc, p_out, p_err = pyfw.restore(text)
    if p_rc != 0:
        pytest.fail(f"pyfw-restore refused {name} (exit {p_rc}):\n{p_err}", pytrace=False)
    problems = []
    if (k_out, normalise_prog(k_err)) != (p_out, p_err):
        problems.append(f"--- restore output differs: kernel out {k_out!r} err {k_err!r}; "
                        f"pyfw out {p_out!r} err {p_err!r}\n")
    problems += _compare_listings(kernel, pyfw, tables_of(text))
    if problems:
        pytest.fail(f"{name}: {len(problems)} difference(s)\n" + "\n".join(problems), pytrace=False)


@pytest.mark.skipif(not REFUSALS, reason=_NO_DATA)
@pytest.mark.parametrize("name", REFUSALS or ["-"])
def test_refusal(kernel: Netns, tmp_path: Path, name: str) -> None:
    """Same exit status and message as iptables-legacy-restore."""
    assert _BASE is not None
    text = (_BASE / "refusals" / name).read_text(encoding="utf-8", errors="surrogateescape")
    k_rc, k_out, k_err = kernel.restore(text)
    assert k_rc != 0, f"iptables-legacy-restore accepted {name}"
    p_rc, p_out, p_err = Pyfw(tmp_path / "rules").restore(text)
    want = f"exit {k_rc}\n{normalise_prog(k_err)}"
    got = f"exit {p_rc}\n{p_err}"
    d = difference("restore exit+stderr", want, got)
    if d:
        pytest.fail(f"{name}:\n{d}", pytrace=False)


@pytest.mark.skipif(not REFUSALS, reason=_NO_DATA)
@pytest.mark.parametrize("name", REFUSALS or ["-"])
def test_refusal_leaves_the_ruleset_as_it_was(tmp_path: Path, name: str) -> None:
    """A refused restore changes nothing (the contract's all-or-nothing; the
    kernel would keep the tables committed before the bad line)."""
    assert _BASE is not None
    text = (_BASE / "refusals" / name).read_text(encoding="utf-8", errors="surrogateescape")
    pyfw = Pyfw(tmp_path / "rules")
    good = (_BASE / "rulesets" / "home-user.rules")
    seed = good.read_text() if good.exists() else "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"
    assert pyfw.restore(seed)[0] == 0
    before = (tmp_path / "rules").read_bytes()
    rc, _, _ = pyfw.restore(text)
    assert rc != 0
    assert (tmp_path / "rules").read_bytes() == before
