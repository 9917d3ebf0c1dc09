"""Run iptables' own `.t` rule tests against pyfw, in-process.

The data and the judging rules are in /work/shared/conformance/iptables-t/
(README.md there).  In short, for every test line `RULE;EXPECTED;RESULT`
and every chain C of the current `:` list:

1. `pyfw -A C [-t TABLE] RULE` (RULE split like `sh` would: shlex);
2. a non-zero exit passes iff RESULT is FAIL; exit 0 with FAIL fails;
3. `pyfw-save` must contain the whole line `-A C EXPECTED` (OK) or must
   not (NOMATCH);
4. OK: `pyfw -D C [-t TABLE] RULE` with `-c`/`--set-counters` removed must
   succeed.

One ruleset file per `.t` file (state carries over between lines, as it does
in the namespace the reference results came from).  `%` lines are run
(`iptables` -> pyfw), `@` lines ignored.

A line is skipped, naming the extension, when it uses a match or target
(`-m`, `-j`, or the protocol match `-p` loads implicitly) that pyfw does not
have yet.

Usage: .venv/bin/python tests/conformance.py [FILE.t ...] [-v] [-q]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tempfile
import traceback
from collections.abc import Iterable, Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make `pyfw` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyfw.cli.main import run  # noqa: E402

if TYPE_CHECKING:
    from oracle import Netns

# What the rules issue asks pyfw for (lines needing anything else are not
# required, though they still run once their extension exists).
REQUIRED_MATCHES = frozenset((
    "tcp", "udp", "icmp", "multiport", "conntrack", "state", "mark", "connmark",
    "comment", "iprange", "addrtype", "limit", "hashlimit", "recent", "length",
    "ttl", "mac", "pkttype", "tos", "dscp", "owner",
))
REQUIRED_TARGETS = frozenset((
    "ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "NFLOG", "DNAT", "SNAT",
    "MASQUERADE", "REDIRECT", "MARK", "CONNMARK", "NOTRACK", "CT", "TRACE",
    "NFQUEUE", "TCPMSS", "DSCP", "TOS", "TTL",
))
STANDARD_TARGETS = frozenset(("ACCEPT", "DROP", "RETURN", "QUEUE"))

# Protocols whose name is also a match iptables loads implicitly after `-p`
# (libxt_/libipt_ files of 1.8.9 that register a match of that name).
PROTO_MATCHES = {
    "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp",
    "sctp": "sctp", "132": "sctp", "dccp": "dccp", "33": "dccp", "esp": "esp",
    "50": "esp", "ah": "ah", "51": "ah", "ipcomp": "ipcomp", "108": "ipcomp",
}

# Options of the iptables command itself (long forms), i.e. not extension options.
CORE_LONG = frozenset((
    "--source", "--src", "--destination", "--dst", "--in-interface", "--out-interface",
    "--protocol", "--fragment", "--jump", "--goto", "--match", "--set-counters", "--table",
    "--ipv4", "--ipv6", "--verbose", "--wait", "--wait-interval", "--numeric", "--exact",
    "--line-numbers", "--modprobe",
))


def shared_dir() -> Path:
    """The shared test data (tests/paths.py: $PYFW_SHARED, ../shared beside
    the checkout, else /work/shared)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from paths import SHARED

    return SHARED


def conformance_dir() -> Path:
    return shared_dir() / "conformance" / "iptables-t"


# --------------------------------------------------------------------------
# .t file model


@dataclass
class TestLine:
    file: str           # basename, e.g. libxt_tcp.t
    lineno: int         # 1-based
    rule: str
    expected: str       # text after `-A CHAIN ` (already resolved from `=`)
    result: str         # OK / FAIL / NOMATCH, as it applies to the legacy variant
    chains: list[str]
    table: str          # "" = no -t given (filter)
    raw: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"


@dataclass
class Command:
    file: str
    lineno: int
    kind: str           # "%" or "@"
    text: str


def variant_result(res: str, variant: str | None, alt: str | None, ours: str = "LEGACY") -> str:
    """The RESULT that applies to `ours` (upstream's variant_res)."""
    if variant is None or variant == ours:
        return res
    if alt is not None:
        return alt
    return {"OK": "FAIL", "FAIL": "OK", "NOMATCH": "OK"}[res]


def parse_t(path: Path) -> Iterator[TestLine | Command]:
    """The test lines and commands of one .t file, in order."""
    table = ""
    chains: list[str] = []
    name = path.name
    with open(path, encoding="utf-8") as f:
        for idx, line in enumerate(f):
            lineno = idx + 1
            if line[0:1] == "#" or not line.strip():
                continue
            if line[0] == ":":
                chains = line.rstrip()[1:].split(",")
                continue
            if line[0] in "@%":
                yield Command(name, lineno, line[0], line.rstrip()[1:])
                continue
            if line[0] == "*":
                table = line.rstrip()[1:]
                continue
            item = line.split(";")
            rule = item[0]
            expected = rule if item[1] == "=" else item[1]
            res = item[2].rstrip()
            variant = item[3].rstrip() if len(item) > 3 else None
            alt = item[4].rstrip() if len(item) > 4 else None
            yield TestLine(name, lineno, rule, expected, variant_result(res, variant, alt),
                           list(chains), table, line.rstrip("\n"))


def load_legacy_results(path: Path | None = None) -> dict[str, str]:
    """{"file.t:LINE": "PASS" or "FAIL <reason>"} as iptables-legacy 1.8.9 scored them."""
    path = path or conformance_dir() / "legacy-1.8.9-results.txt"
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and ":" in parts[0] and parts[1].split()[0] in ("PASS", "FAIL", "SKIP"):
            out[parts[0]] = parts[1]
    return out


def reason_kind(reason: str) -> str:
    """`cannot load` / `should fail` / `cannot find` / ... of a failure reason."""
    text = reason.split("] ", 1)[1] if reason.startswith("[") else reason
    for kind in ("cannot load", "should fail", "cannot find", "should not match", "cannot delete"):
        if text.startswith(kind):
            return kind
    return text.split(":", 1)[0]


# --------------------------------------------------------------------------
# which extensions a line uses


def _opt_value(words: list[str], i: int, short: str, long: str) -> tuple[str | None, int]:
    """If words[i] is option `short`/`long` (any spelling), (value, next index)."""
    w = words[i]
    if w == short or w == long:
        return (words[i + 1] if i + 1 < len(words) else None), i + 2
    if w.startswith(long + "="):
        return w[len(long) + 1:], i + 1
    if w.startswith(short) and len(w) > len(short) and not w.startswith("--"):
        return w[len(short):], i + 1
    return None, i


def extensions_used(words: list[str]) -> list[tuple[str, str]]:
    """[("match"|"target", NAME)] the rule loads, in order, without duplicates.

    `-p P` counts as loading match P when P has a protocol match and the rule
    carries an option that is neither the iptables command's own nor one of
    an explicitly loaded pyfw extension (iptables loads the protocol match
    only to parse such an option).  Conservative on purpose: a false "uses
    sctp" only skips a line, a false "uses nothing" would require it.
    """
    used: list[tuple[str, str]] = []
    proto: str | None = None
    longs: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        for kind, short, long in (("match", "-m", "--match"), ("target", "-j", "--jump"),
                                  ("goto", "-g", "--goto"), ("proto", "-p", "--protocol")):
            value, nxt = _opt_value(words, i, short, long)
            if value is not None:
                if kind == "proto":
                    proto = value.lower()
                elif kind in ("match", "target"):
                    if (kind, value) not in used:
                        used.append((kind, value))
                i = nxt
                break
        else:
            if w.startswith("--") and w.split("=", 1)[0] not in CORE_LONG:
                longs.append(w.split("=", 1)[0][2:])
            i += 1
    if proto in PROTO_MATCHES:
        known = _option_names(used)
        if any(not any(k.startswith(o) for k in known) for o in longs):
            key = ("match", PROTO_MATCHES[proto])
            if key not in used:
                used.insert(0, key)
    return used


def _option_names(used: Iterable[tuple[str, str]]) -> list[str]:
    """Long option names of the listed extensions pyfw has."""
    from pyfw import ext

    names: list[str] = []
    for kind, name in used:
        try:
            found = ext.find_match(name) if kind == "match" else ext.find_target(name)
        except Exception:
            continue
        if found is not None:
            names.extend(opt.name for opt in found.options)
    return names


def _exists(kind: str, name: str) -> bool:
    from pyfw import ext

    try:
        found = ext.find_match(name) if kind == "match" else ext.find_target(name)
    except Exception:  # a module that exists but is broken: run it and show the error
        return True
    return found is not None


def missing_extensions(used: Iterable[tuple[str, str]], chains: Set[str] = frozenset()) -> list[str]:
    """Names (as `-m x` / `-j X`) of used extensions pyfw lacks."""
    missing = []
    for kind, name in used:
        if kind == "target" and (name in STANDARD_TARGETS or name in chains):
            continue
        if not _exists(kind, name):
            missing.append(("-m " if kind == "match" else "-j ") + name)
    return missing


def is_required(used: Iterable[tuple[str, str]]) -> bool:
    """All the line's extensions are in the issue's list."""
    for kind, name in used:
        if kind == "match" and name not in REQUIRED_MATCHES:
            return False
        if kind == "target" and name not in REQUIRED_TARGETS and name not in STANDARD_TARGETS:
            return False
    return True


# --------------------------------------------------------------------------
# running


@dataclass
class Outcome:
    line: TestLine
    status: str                 # PASS / FAIL / SKIP
    reason: str = ""
    detail: str = ""            # longer text for -v
    used: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    required: bool = False
    legacy: str | None = None   # 1.8.9's verdict (PASS/FAIL) if known
    legacy_reason: str = ""     # 1.8.9's failure reason (e.g. "cannot find: -A ...")
    oracle: list[str] = field(default_factory=list)  # differences from the live kernel (--oracle)

    @property
    def like_legacy(self) -> bool:
        """pyfw behaves as 1.8.9 did: both pass, or both fail the same way."""
        if self.legacy == "PASS":
            return self.status == "PASS"
        if self.legacy == "FAIL":
            return self.status == "FAIL" and reason_kind(self.reason) == reason_kind(self.legacy_reason)
        return self.status == "PASS"

    def short(self) -> str:
        tag = self.status
        note = ""
        if self.legacy == "FAIL":
            same = "same way" if self.like_legacy else "DIFFERENTLY"
            note = f" (1.8.9 fails too, {same}: {self.legacy_reason})" if self.status == "FAIL" \
                else f" (1.8.9 FAILS: {self.legacy_reason})"
        return f"{tag} {self.line.where}{note}: {self.line.raw}" + (f"\n    {self.reason}" if self.reason else "")


def strip_counters(words: list[str]) -> list[str]:
    """Drop `-c P,B` / `-c P B` / `--set-counters ...` (-D refuses them)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-c", "--set-counters"):
            i += 1
            if i < len(words):
                arg = words[i]
                i += 1
                if "," not in arg and i < len(words) and not words[i].startswith("-"):
                    i += 1
            continue
        if w.startswith("--set-counters="):
            i += 1
            if "," not in w and i < len(words) and not words[i].startswith("-"):
                i += 1
            continue
        out.append(w)
        i += 1
    return out


def _first_err(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


class FileRunner:
    """Runs the lines of one .t file against one fresh pyfw ruleset file."""

    def __init__(self, path: Path, legacy: dict[str, str], kernel: Netns | None = None) -> None:
        self.path = path
        self.kernel = kernel
        self.offline = False
        self.legacy = legacy
        self._tmp = tempfile.TemporaryDirectory(prefix="pyfw-conf-")
        self.rules = str(Path(self._tmp.name) / "rules")
        self.user_chains: set[str] = set()
        self.current = path.name
        self.leaks: list[tuple[str, str]] = []

    def close(self) -> None:
        self._tmp.cleanup()

    def _run(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        """run() in-process; text written straight to sys.stderr/stdout (not
        returned in the Result, so lost for the daemon) is noted in `leaks`."""
        leaked = io.StringIO()
        try:
            with contextlib.redirect_stderr(leaked), contextlib.redirect_stdout(leaked):
                rc, out, err = run(argv, stdin=stdin)
        except Exception as exc:  # a crash in pyfw is a failure, not the runner's
            return -1, "", f"EXCEPTION {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        finally:
            if leaked.getvalue():
                self.leaks.append((self.current, leaked.getvalue()))
        return rc, out, err

    def pyfw(self, args: list[str]) -> tuple[int, str, str]:
        return self._run(["pyfw", "--file", self.rules, *args])

    def save(self) -> tuple[int, str, str]:
        return self._run(["pyfw-save", "--file", self.rules])

    def command(self, cmd: Command) -> None:
        """A `%` line: an iptables command run for its effect (result ignored)."""
        if cmd.kind != "%":
            return
        try:
            words = shlex.split(cmd.text)
        except ValueError:
            return
        if not words:
            return
        prog = words[0]
        if prog in ("iptables", "iptables-legacy"):
            self.pyfw(words[1:])
            if self.kernel is not None:
                self.kernel.iptables(*words[1:])
            if len(words) > 2 and words[1] in ("-N", "--new-chain"):
                self.user_chains.add(words[2])
        elif prog in ("iptables-restore", "iptables-legacy-restore"):
            self._run(["pyfw-restore", "--file", self.rules, *words[1:]], stdin="")

    def run_line(self, line: TestLine) -> Outcome:
        self.current = line.where
        verdict = self.legacy.get(line.where)
        legacy = verdict.split()[0] if verdict else None
        legacy_reason = verdict.split(None, 1)[1] if verdict and " " in verdict else ""
        try:
            words = shlex.split(line.rule)
        except ValueError as exc:
            return Outcome(line, "FAIL", f"bad shell quoting in test: {exc}", legacy=legacy,
                           legacy_reason=legacy_reason)
        used = extensions_used(words)
        missing = missing_extensions(used, self.user_chains)
        oc = Outcome(line, "PASS", used=used, missing=missing, required=is_required(used), legacy=legacy,
                     legacy_reason=legacy_reason)
        if missing:
            oc.status = "SKIP"
            oc.reason = "no pyfw extension " + ", ".join(missing)
            return oc
        if not line.chains:
            oc.status, oc.reason = "FAIL", "broken test, missing chain"
            return oc
        if self.kernel is not None:
            for chain in line.chains:
                oc.oracle.extend(self._versus_kernel(line, chain, words))
        for chain in line.chains:
            problem = self._run_chain(line, chain, words)
            if problem is not None:
                oc.status = "FAIL"
                oc.reason, oc.detail = problem
                break
        return oc

    def _versus_kernel(self, line: TestLine, chain: str, words: list[str]) -> list[str]:
        """Run the rule on both sides and compare exit, stderr, -S and -L of
        the chain, and the delete; each side is left as it was."""
        assert self.kernel is not None
        k = self.kernel
        tbl = ["-t", line.table] if line.table else []
        diffs: list[str] = []

        def cmp(what: str, kp: tuple[int, str, str], pp: tuple[int, str, str], out: bool) -> None:
            krc, kout, kerr = kp
            prc, pout, perr = pp
            kerr = normalise_prog(kerr)
            if krc != prc:
                diffs.append(f"[{chain}] {what}: exit kernel {krc} pyfw {prc}"
                             f"\n      kernel: {kerr.strip()!r}\n      pyfw:   {perr.strip()!r}")
            elif kerr != perr:
                diffs.append(f"[{chain}] {what}: stderr\n      kernel: {kerr!r}\n      pyfw:   {perr!r}")
            if out and kout != pout:
                kl, pl = kout.splitlines(), pout.splitlines()
                first = next((i for i, (a, b) in enumerate(zip(kl, pl)) if a != b), min(len(kl), len(pl)))
                kx = kl[first] if first < len(kl) else "<end>"
                px = pl[first] if first < len(pl) else "<end>"
                diffs.append(f"[{chain}] {what}: output line {first + 1}\n      kernel: {kx!r}\n      pyfw:   {px!r}")

        add = ["-A", chain, *tbl, *words]
        kp, pp = k.iptables(*add), self.pyfw(add)
        cmp("-A", kp, pp, out=True)
        if kp[0] == 0 and pp[0] == 0:
            # `-L` without -n resolves addresses: only compared when this
            # process is offline (main() unshares), else pyfw would query DNS.
            views = [["-S", chain], ["-L", chain, "-n", "-v", "-x"], ["-L", chain, "-n"]]
            if self.offline:
                views.append(["-L", chain])
            for view in views:
                cmp(" ".join(view), k.iptables(*tbl, *view), self.pyfw([*tbl, *view]), out=True)
        delete = ["-D", chain, *tbl, *strip_counters(words)]
        kd = k.iptables(*delete) if kp[0] == 0 else None
        pd = self.pyfw(delete) if pp[0] == 0 else None
        if kd is not None and pd is not None:
            cmp("-D", kd, pd, out=False)
        return diffs

    def _run_chain(self, line: TestLine, chain: str, words: list[str]) -> tuple[str, str] | None:
        """None when this chain's run passes, else (reason, detail)."""
        tbl = ["-t", line.table] if line.table else []
        add = ["-A", chain, *tbl, *words]
        shown = "pyfw " + shlex.join(add)
        rc, out, err = self.pyfw(add)
        if rc != 0:
            if line.result == "FAIL":
                return None
            return (f"[{chain}] cannot load: {shown} -> exit {rc}: {_first_err(err)}", err)
        if line.result == "FAIL":
            self.pyfw(["-D", chain, *tbl, *strip_counters(words)])
            return (f"[{chain}] should fail: {shown} -> exit 0", "")
        want = f"-A {chain} {line.expected}"
        src, saved, serr = self.save()
        if src != 0:
            return (f"[{chain}] pyfw-save exit {src}: {_first_err(serr)}", serr)
        found = ("\n" + want + "\n") in saved
        got = [ln for ln in saved.splitlines() if ln.startswith(f"-A {chain} ")]
        if line.result == "OK" and not found:
            self.pyfw(["-D", chain, *tbl, *strip_counters(words)])
            got_s = " | ".join(got) if got else "(no -A line)"
            return (f"[{chain}] cannot find: expected {want!r}\n    got {got_s!r}", saved)
        if line.result == "NOMATCH":
            if found:
                return (f"[{chain}] should not match: {want!r} is in the save output", saved)
            return None
        delete = ["-D", chain, *tbl, *strip_counters(words)]
        rc, out, err = self.pyfw(delete)
        if rc != 0:
            return (f"[{chain}] cannot delete: pyfw {shlex.join(delete)} -> exit {rc}: {_first_err(err)}", err)
        return None


def normalise_prog(text: str) -> str:
    """iptables' program name in a message -> pyfw's."""
    return _PROG_RE.sub("pyfw", text)


_PROG_RE = re.compile(r"(?<![\w-])iptables(?:-legacy)?(?![\w-])")


_OFFLINE = False  # set by main() when the process is in an empty network namespace


def run_file(path: Path, legacy: dict[str, str] | None = None,
             leaks: list[tuple[str, str]] | None = None, kernel: Netns | None = None,
             offline: bool | None = None) -> list[Outcome]:
    """All outcomes of one .t file; direct writes to stderr go to `leaks`.
    With `kernel` (a fresh oracle namespace) each line is also compared with
    the live iptables-legacy (Outcome.oracle); `offline` says this thread is
    in an empty network namespace, so name-resolving listings are safe."""
    legacy = load_legacy_results() if legacy is None else legacy
    runner = FileRunner(path, legacy, kernel)
    runner.offline = _OFFLINE if offline is None else offline
    outcomes = []
    try:
        for item in parse_t(path):
            if isinstance(item, Command):
                runner.current = f"{item.file}:{item.lineno}"
                runner.command(item)
            else:
                outcomes.append(runner.run_line(item))
    finally:
        runner.close()
    if leaks is not None:
        leaks.extend(runner.leaks)
    return outcomes


def leak_summary(leaks: list[tuple[str, str]]) -> str:
    """One line per distinct text an extension wrote to sys.stderr itself."""
    seen: dict[str, list[str]] = {}
    for where, text in leaks:
        seen.setdefault(text.strip(), [])
        if where not in seen[text.strip()]:
            seen[text.strip()].append(where)
    return "\n".join(f"written to sys.stderr directly (not in Result.err): {t!r} at {' '.join(w)}"
                     for t, w in seen.items())


def all_files(names: Iterable[str] = ()) -> list[Path]:
    base = conformance_dir()
    names = list(names)
    if not names:
        return sorted(base.glob("*.t"))
    out = []
    for n in names:
        p = Path(n)
        if not p.exists() and (base / n).exists():
            p = base / n
        elif not p.exists() and (base / (n + ".t")).exists():
            p = base / (n + ".t")
        out.append(p)
    return out


def tally(outcomes: list[Outcome]) -> str:
    """Counts overall and for the required lines 1.8.9 passes; skipped extensions."""
    from collections import Counter

    c = Counter(o.status for o in outcomes)
    req = [o for o in outcomes if o.required and o.legacy == "PASS"]
    rc = Counter(o.status for o in req)
    skipped = Counter(m for o in outcomes if o.status == "SKIP" for m in o.missing)
    newer = [o for o in outcomes if o.status != "SKIP" and o.legacy == "FAIL" and not o.like_legacy]
    lines = [
        f"tally: {c['PASS']} pass, {c['FAIL']} fail, {c['SKIP']} skip (of {len(outcomes)} lines)",
        f"required (1.8.9 passes, extensions in the issue): {rc['PASS']} pass, {rc['FAIL']} fail, "
        f"{rc['SKIP']} skip (of {len(req)})",
    ]
    if newer:
        lines.append("1.8.9 fails these, pyfw not the same way (newer behaviour?): "
                     + " ".join(o.line.where for o in newer))
    if skipped:
        lines.append("skipped for: " + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="iptables .t conformance for pyfw")
    ap.add_argument("files", nargs="*", help="FILE.t (a name in the conformance dir or a path)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show pyfw's stderr / save text on failure")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="print only lines where pyfw differs from 1.8.9, and the tally")
    ap.add_argument("--oracle", action="store_true",
                    help="also compare every line with the live iptables-legacy (root; a netns per file)")
    ap.add_argument("--required", action="store_true",
                    help="only lines 1.8.9 passes whose extensions the issue requires")
    args = ap.parse_args(argv)
    if not conformance_dir().is_dir():
        print(f"no conformance data at {conformance_dir()}", file=sys.stderr)
        return 2
    legacy = load_legacy_results()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from oracle import offline

    global _OFFLINE
    with offline(required=args.oracle) as _OFFLINE:
        return _main(args, legacy)


def _main(args: argparse.Namespace, legacy: dict[str, str]) -> int:
    outcomes: list[Outcome] = []
    leaks: list[tuple[str, str]] = []
    for path in all_files(args.files):
        if not path.exists():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        if args.oracle:
            from oracle import Netns

            with Netns() as ns:
                file_outcomes = run_file(path, legacy, leaks, ns)
        else:
            file_outcomes = run_file(path, legacy, leaks)
        for oc in file_outcomes:
            if args.required and not (oc.required and oc.legacy == "PASS"):
                continue
            outcomes.append(oc)
            if args.quiet and (oc.status == "SKIP" or oc.like_legacy) and not oc.oracle:
                continue
            print(oc.short())
            for od in oc.oracle:
                print("    ORACLE " + od)
            if args.verbose and oc.status == "FAIL" and oc.detail:
                for dl in oc.detail.rstrip("\n").splitlines():
                    if dl.startswith("#"):
                        continue
                    print("      | " + dl)
    print(tally(outcomes))
    if args.oracle:
        odiff = [o for o in outcomes if o.oracle]
        print(f"oracle: {len(odiff)} line(s) differ from the live iptables-legacy: "
              + " ".join(o.line.where for o in odiff))
    if leaks:
        print(leak_summary(leaks))
    bad = [o for o in outcomes if o.status != "SKIP" and not o.like_legacy]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
