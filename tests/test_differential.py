"""Differential test: seeded random rule commands against the real kernel.

A few hundred command lines from tests/rulegen.py (valid and invalid; every
supported match and target, all four tables, user chains, -g, negations,
address lists, interfaces with +, -f, -c) go to iptables-legacy 1.8.9 in a
fresh network namespace and to pyfw on one ruleset file.  Each must end the
same way: exit status, stdout and stderr (program name aside).  Afterwards
the listings (-S [-v], -L [-n] [-v] [-x], --line-numbers, save [-c]) must agree; the
accepted rules, written as a save file, must restore the same way on both
sides; refused rules inside a restore file must fail the same way; and
edits on the generated state (-C, -D by spec and number, -I N, -R, -Z,
-N/-X/-E/-P, -F) must agree step by step.

PYFW_DIFF_SEED overrides the seed, PYFW_DIFF_COUNT the number of commands.
A failure message names the seed; rerun with it to reproduce.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rulegen
from oracle import IPTABLES, Netns, NetnsError, Proc, requires_root_netns, skip_unless_root_netns
from rulegen import TABLES, USER_CHAINS, Case

from pyfw.cli.main import run

pytestmark = [pytest.mark.root, requires_root_netns, pytest.mark.usefixtures("no_network")]

SEED = int(os.environ.get("PYFW_DIFF_SEED", "20240917"))
COUNT = int(os.environ.get("PYFW_DIFF_COUNT", "800"))
MAX_SHOWN = 25

# The program name, not where iptables' messages name it literally ("can't
# initialize iptables table", "from iptables-restore", "iptables who?").
_PROG = re.compile(r"(?<!from )\biptables(?:-legacy)?(-restore|-save)?\b(?! table `| who\?)")


def normalise(text: str) -> str:
    """iptables' program names as pyfw spells them."""
    return _PROG.sub(lambda m: "pyfw" + (m.group(1) or ""), text)


def strip_comments(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))


class Kernel:
    """iptables-legacy in a namespace, the same call shape as `Pyfw`."""

    def __init__(self, ns: Netns) -> None:
        self.ns = ns

    def cmd(self, argv: list[str]) -> Proc:
        pre = [] if "-w" in argv or "--wait" in argv else ["-w"]
        return self.ns.run([IPTABLES, *pre, *argv])

    def save(self, *args: str) -> Proc:
        return self.ns.save(*args)

    def restore(self, text: str, *args: str) -> Proc:
        return self.ns.restore(text, *args)


class Pyfw:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def cmd(self, argv: list[str]) -> Proc:
        r = run(["pyfw", "--file", self.path, *argv])
        return Proc(r.rc, r.out, r.err)

    def save(self, *args: str) -> Proc:
        r = run(["pyfw-save", "--file", self.path, *args])
        return Proc(r.rc, r.out, r.err)

    def restore(self, text: str, *args: str) -> Proc:
        r = run(["pyfw-restore", "--file", self.path, *args], stdin=text)
        return Proc(r.rc, r.out, r.err)


def same(k: Proc, p: Proc, comments: bool = False) -> bool:
    kout = strip_comments(k.out) if comments else k.out
    pout = strip_comments(p.out) if comments else p.out
    return (k.rc, kout, normalise(k.err)) == (p.rc, pout, p.err)


def describe(label: str, k: Proc, p: Proc, comments: bool = False) -> str:
    kout = strip_comments(k.out) if comments else k.out
    pout = strip_comments(p.out) if comments else p.out
    lines = [f"--- {label}"]
    if k.rc != p.rc:
        lines.append(f"    exit: kernel {k.rc}, pyfw {p.rc}")
    if normalise(k.err) != p.err:
        lines.append(f"    stderr kernel: {normalise(k.err)!r}\n    stderr pyfw:   {p.err!r}")
    if kout != pout:
        kl, pl = kout.splitlines(), pout.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(kl, pl)) if a != b), min(len(kl), len(pl)))
        lines.append(f"    stdout differs at line {first + 1} (kernel {len(kl)} lines, pyfw {len(pl)}):\n"
                     f"      kernel: {kl[first] if first < len(kl) else '<end>'!r}\n"
                     f"      pyfw:   {pl[first] if first < len(pl) else '<end>'!r}")
    return "\n".join(lines)


def fail_with(title: str, problems: list[str]) -> None:
    if problems:
        shown = "\n".join(problems[:MAX_SHOWN])
        more = f"\n... and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
        pytest.fail(f"{title} (seed {SEED}): {len(problems)} difference(s)\n{shown}{more}", pytrace=False)


LISTINGS: tuple[tuple[str, ...], ...] = (("-S",), ("-L", "-n", "-v", "-x"), ("-L", "-n", "--line-numbers"),
                                         ("-L", "-v", "-x"), ("-S", "-v"), ("-L", "-n", "-v"))


def compare_state(k: Kernel, p: Pyfw, label: str, full: bool = True, saves: bool = True) -> list[str]:
    """Every table's listings and the save texts."""
    problems = []
    for table in TABLES:
        for args in (LISTINGS if full else LISTINGS[:1]):
            argv = ["-t", table, *args]
            kr, pr = k.cmd(argv), p.cmd(argv)
            if not same(kr, pr):
                problems.append(describe(f"{label}: {' '.join(argv)}", kr, pr))
        if full:
            for chain in USER_CHAINS[table]:
                argv = ["-t", table, "-S", chain]
                kr, pr = k.cmd(argv), p.cmd(argv)
                if not same(kr, pr):
                    problems.append(describe(f"{label}: {' '.join(argv)}", kr, pr))
    for args in ((("-c",), ()) if full else (("-c",),)) if saves else ():
        kr, pr = k.save(*args), p.save(*args)
        if not same(kr, pr, comments=True):
            problems.append(describe(f"{label}: save {' '.join(args)}", kr, pr, comments=True))
    return problems


# ---- the command phase, shared by the tests of this module -----------------

@dataclass
class Outcome:
    case: Case
    k: Proc
    p: Proc

    @property
    def agree(self) -> bool:
        return same(self.k, self.p)


@dataclass
class Run:
    kernel: Kernel
    pyfw: Pyfw
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def accepted(self) -> list[Case]:
        return [o.case for o in self.outcomes if o.k.rc == 0 and o.p.rc == 0]


@contextlib.contextmanager
def fresh(tmp: Path, name: str) -> Iterator[tuple[Kernel, Pyfw]]:
    """A new namespace and a new pyfw file; the namespace goes whatever happens."""
    skip_unless_root_netns()
    try:
        ns = Netns().__enter__()
    except NetnsError as exc:
        pytest.skip(str(exc))
    try:
        yield Kernel(ns), Pyfw(tmp / name)
    finally:
        ns.close()


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return rulegen.generate(SEED, COUNT)


@pytest.fixture(scope="module")
def commands(no_network: bool, cases: list[Case], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with fresh(tmp_path_factory.mktemp("diff"), "commands.rules") as (k, p):
        state = Run(k, p)
        for case in cases:
            state.outcomes.append(Outcome(case, k.cmd(case.argv), p.cmd(case.argv)))
        yield state


def tally(outcomes: list[Outcome]) -> str:
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        row = rows[o.case.tag]
        row["cases"] += 1
        row["ok" if o.k.rc == 0 else f"rc{o.k.rc}"] += 1
        row["good" if o.case.intent == "good" else "bad"] += 1
        if not o.agree:
            row["DIFF"] += 1
    total: Counter[str] = Counter()
    for row in rows.values():
        total.update(row)
    cols = ("cases", "good", "bad", "ok", "rc1", "rc2", "rc3", "DIFF")
    out = [f"differential: seed {SEED}, {len(outcomes)} commands "
           f"(kernel accepted {total['ok']}, refused {total['cases'] - total['ok']}; "
           f"pyfw disagreed on {total['DIFF']})",
           f"  {'subject':14}" + "".join(f"{c:>7}" for c in cols)]
    for tag in sorted(rows):
        out.append(f"  {tag:14}" + "".join(f"{rows[tag][c]:>7}" for c in cols))
    out.append(f"  {'total':14}" + "".join(f"{total[c]:>7}" for c in cols))
    return "\n".join(out)


def test_commands_agree(commands: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + tally(commands.outcomes))
    problems = [describe(f"#{i} {o.case.tag} {o.case.intent} {o.case.note}: {' '.join(o.case.argv)}", o.k, o.p)
                for i, o in enumerate(commands.outcomes) if not o.agree]
    fail_with("commands", problems)


def test_every_subject_has_accepted_and_refused_cases(commands: Run) -> None:
    """The generator's own check: each subject gets rules into the kernel,
    and nearly every one has refused cases too (a dozen draws per subject
    may miss the few mistakes a lenient extension has)."""
    seen: dict[str, set[bool]] = defaultdict(set)
    for o in commands.outcomes:
        seen[o.case.tag].add(o.k.rc == 0)
    never_ok = [s for s in rulegen.SUBJECTS if s != "cmd" and True not in seen.get(s, set())]
    never_refused = [s for s in rulegen.SUBJECTS if False not in seen.get(s, set())]
    assert not never_ok, f"subjects the kernel never accepted (seed {SEED}): {never_ok}"
    assert len(never_refused) <= 3, f"subjects the kernel never refused (seed {SEED}): {never_refused}"


def test_listings_agree(commands: Run) -> None:
    fail_with("listings after the commands", compare_state(commands.kernel, commands.pyfw, "after commands"))


# ---- restore ----------------------------------------------------------------

_COMMANDS = ("-A", "-I", "-N", "--append", "--insert", "--new-chain", "--app", "--ap")


def split_argv(argv: list[str]) -> tuple[str, list[str]] | None:
    """(table, the rest as a restore line takes it) of a command line, or
    None when its shape is unusual (several -t, no table command first, a
    -w that restore refuses)."""
    table = "filter"
    rest: list[str] = []
    i = 0
    seen_table = False
    while i < len(argv):
        w = argv[i]
        if w in ("-t", "--table") or (w.startswith("-t") and not w.startswith("--")):
            if seen_table or (len(w) == 2 or w == "--table") and i + 1 >= len(argv):
                return None
            table = argv[i + 1] if w in ("-t", "--table") else w[2:]
            seen_table = True
            i += 2 if w in ("-t", "--table") else 1
            continue
        if w in ("-w", "--wait") or w.startswith("--modprobe"):
            i += 1  # command-line only: restore refuses -w
            continue
        rest.append(w)
        i += 1
    if table not in TABLES or not rest:
        return None
    head = rest[0]
    if head.startswith("-A") and len(head) > 2:  # glued -ACHAIN
        rest[0:1] = ["-A", head[2:]]
    elif head in _COMMANDS:
        rest[0] = {"--append": "-A", "--insert": "-I", "--new-chain": "-N", "--app": "-A",
                   "--ap": "-A"}.get(head, head)
    else:
        return None
    return (table, rest) if len(rest) > 1 else None


def quote(word: str) -> str:
    if word == "" or any(c.isspace() for c in word):
        return f'"{word}"'
    return word


def restore_text(lines: list[tuple[str, list[str]]], chains: dict[str, list[str]]) -> str:
    out = []
    for table, builtins in TABLES.items():
        body = [" ".join(quote(w) for w in rest) for t, rest in lines if t == table]
        if not body and not chains.get(table):
            continue
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in builtins]
        out += [f":{c} - [0:0]" for c in chains.get(table, [])]
        out += body
        out.append("COMMIT")
    return "\n".join(out) + "\n"


_FAILED_AT = re.compile(r"line:? (\d+)")


def untouched_tables(text: str, err: str) -> list[str]:
    """The tables a refused restore left alone on both sides: the failing
    block's and those after it.  Legacy commits each table at its COMMIT, so
    the tables before stay loaded in the kernel, while pyfw-restore (all or
    nothing by contract) keeps none of them; those are not compared."""
    m = _FAILED_AT.search(err)
    if m is None:
        return list(TABLES)
    line = int(m.group(1))
    starts = [(i + 1, ln[1:].split()[0]) for i, ln in enumerate(text.splitlines())
              if ln.startswith("*") and ln[1:].split()]
    before = {t for n, t in starts if n <= line}
    failing = max(((n, t) for n, t in starts if n <= line), default=(0, ""))[1]
    return [t for t in TABLES if t == failing or t not in before]


def compare_after_restore(k: Kernel, p: Pyfw, text: str, label: str, *args: str) -> list[str]:
    """Restore `text` on both sides; the same outcome, then the same state."""
    kr, pr = k.restore(text, *args), p.restore(text, *args)
    if not same(kr, pr):
        return [describe(f"{label}: restore {' '.join(args)}", kr, pr)]
    if kr.rc == 0:
        return compare_state(k, p, f"after {label}")
    problems = []
    for table in untouched_tables(text, kr.err):
        kl, pl = k.cmd(["-t", table, "-S"]), p.cmd(["-t", table, "-S"])
        if not same(kl, pl):
            problems.append(describe(f"after the refused {label}: -t {table} -S", kl, pl))
    return problems


def test_restore_accepted_rules(commands: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The accepted rules as one save file, restored into fresh state on both sides."""
    lines: list[tuple[str, list[str]]] = []
    chains: dict[str, list[str]] = defaultdict(list)
    for case in commands.accepted:
        split = split_argv(case.argv)
        if split is None or any("\n" in w or '"' in w for w in case.argv):
            continue
        table, rest = split
        if rest[0] == "-N":
            chains[table].append(rest[1])
        else:
            lines.append((table, rest))
    text = restore_text(lines, chains)
    problems = []
    with fresh(tmp_path, "restored.rules") as (k, p):
        problems += compare_after_restore(k, p, text, f"restore of {len(lines)} accepted rules")
        # --noflush --test of the same text again changes nothing and says the same
        kr, pr = k.restore(text, "--noflush", "--test"), p.restore(text, "--noflush", "--test")
        if not same(kr, pr):
            problems.append(describe("restore --noflush --test", kr, pr))
    # and the kernel's own save text of the command phase, restored -c on both sides
    ksave = commands.kernel.save("-c").out
    with fresh(tmp_path, "from-kernel.rules") as (k, p):
        problems += compare_after_restore(k, p, ksave, "restore of the kernel's save", "-c")
    with capsys.disabled():
        print(f"\ndifferential restore: {len(lines)} accepted rules, "
              f"{sum(len(v) for v in chains.values())} user chains; and the kernel's save")
    fail_with("restore of the accepted rules", problems)


def test_restore_refused_rules(commands: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused command lines inside a restore file fail the same way (line number, message)."""
    rng = random.Random(SEED + 1)
    refused = [o.case for o in commands.outcomes if o.k.rc != 0 and split_argv(o.case.argv) is not None
               and not any("\n" in w or '"' in w for w in o.case.argv)]
    sample = rng.sample(refused, min(90, len(refused)))
    problems = []
    with fresh(tmp_path, "refused.rules") as (k, p):
        for case in sample:
            split = split_argv(case.argv)
            assert split is not None
            table, rest = split
            if rest[0] == "-N":
                continue
            pre = [(table, ["-A", TABLES[table][0], "-j", "ACCEPT"])]
            text = restore_text(pre + [(table, rest)], {table: list(USER_CHAINS[table])})
            if rng.random() < 0.3:  # a second, good table after the broken one
                other = rng.choice([t for t in TABLES if t != table])
                text += restore_text([(other, ["-A", TABLES[other][-1], "-j", "RETURN"])], {})
            args = ("--noflush",) if rng.random() < 0.3 else ()
            kr, pr = k.restore(text, *args), p.restore(text, *args)
            if not same(kr, pr):
                problems.append(describe(f"restore {' '.join(args)} of {case.tag} {case.note}: "
                                         f"{' '.join(rest)}", kr, pr))
        # Not the save texts: a refused restore leaves pyfw's file as it was (its
        # all-or-nothing contract), while legacy has loaded the table it named
        # (an empty table then shows in iptables-save, newest first).
        problems += compare_state(k, p, "after refused restores", full=False, saves=False)
    with capsys.disabled():
        print(f"\ndifferential restore refusals: {len(sample)} refused rules in restore files")
    fail_with("restore of refused rules", problems)


# ---- edits on the generated state -------------------------------------------

def _rules(k: Kernel, table: str, chain: str) -> int:
    out = k.cmd(["-t", table, "-S", chain]).out
    return sum(1 for ln in out.splitlines() if ln.startswith("-A "))


def _body(case: Case) -> list[str] | None:
    """The rule part of an accepted -A/-I case (after the chain and index)."""
    split = split_argv(case.argv)
    if split is None or split[1][0] not in ("-A", "-I"):
        return None
    rest = split[1][2:]
    if split[1][0] == "-I" and rest and rest[0].isdigit():
        rest = rest[1:]
    return rest


def edit_ops(rng: random.Random, accepted: list[Case], k: Kernel, n: int) -> Iterator[tuple[str, list[str]]]:
    """Seeded edit commands on the current state; numbers are drawn from the kernel's rule counts."""
    rules = [(c.table, c.chain, b) for c in accepted if (b := _body(c)) is not None]
    made: list[tuple[str, str]] = []
    for i in range(n):
        table, chain, body = rng.choice(rules)
        count = _rules(k, table, chain)
        num = str(rng.randint(1, count + 2)) if count else rng.choice(("1", "2"))
        kind = rng.choice(("C", "C", "Cbad", "D", "D", "Dnum", "Dnum", "Inum", "Inum", "R", "Rbad", "Z",
                           "N", "X", "E", "P", "F", "Lnum", "Snum", "LZ", "Xall", "verbose"))
        if kind == "C":
            yield kind, ["-t", table, "-C", chain, *body]
        elif kind == "Cbad":
            yield kind, ["-t", table, "-C", chain, "-s", "203.0.113.7", *body]
        elif kind == "D":
            yield kind, ["-t", table, "-D", chain, *body]
        elif kind == "Dnum":
            yield kind, ["-t", table, "-D", chain, num]
        elif kind == "Inum":
            t2, c2, b2 = rng.choice([r for r in rules if r[0] == table])
            yield kind, ["-t", table, "-I", chain, num, *b2]
        elif kind == "R":
            t2, c2, b2 = rng.choice([r for r in rules if r[0] == table])
            yield kind, ["-t", table, "-R", chain, num, *b2]
        elif kind == "Rbad":
            yield kind, ["-t", table, "-R", chain, *body]
        elif kind == "Z":
            yield kind, rng.choice((["-t", table, "-Z"], ["-t", table, "-Z", chain], ["-t", table, "-Z", chain, num]))
        elif kind == "N":
            name = rng.choice(("new1", "new-2", f"n{i}", chain, "x" * 28, "x" * 29))
            made.append((table, name))
            yield kind, ["-t", table, "-N", name]
        elif kind == "X":
            if made and rng.random() < 0.5:
                t2, name = rng.choice(made)
                yield kind, ["-t", t2, "-X", name]
            else:
                yield kind, ["-t", table, "-X", rng.choice(USER_CHAINS[table] + ("nosuch", TABLES[table][0]))]
        elif kind == "E":
            old = rng.choice(USER_CHAINS[table] + tuple(n for t, n in made if t == table)
                             + ("nosuch", TABLES[table][0]))
            new = rng.choice((f"ren{i}", f"ren{i}", USER_CHAINS[table][0], TABLES[table][-1], "x" * 29,
                              "x" * 30, "ACCEPT", "RETURN", "-x"))
            made.append((table, new))
            yield kind, ["-t", table, "-E", old, new]
        elif kind == "P":
            counters = rng.choice(([], [], ["-c", str(rng.randint(0, 999)), str(rng.randint(0, 99999))]))
            yield kind, ["-t", table, "-P", rng.choice(TABLES[table] + USER_CHAINS[table]),
                         rng.choice(("ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "accept")), *counters]
        elif kind == "F":
            yield kind, ["-t", table, "-F", rng.choice((chain, "nosuch"))]
        elif kind == "Lnum":
            yield kind, ["-t", table, "-L", chain, num, "-n", "-v", "-x", "--line-numbers"]
        elif kind == "Snum":
            yield kind, ["-t", table, "-S", chain, num]
        elif kind == "Xall":
            yield kind, ["-t", table, "-X", *rng.choice(([], ["-v"]))]
        elif kind == "verbose":
            # one -v only: -vv makes iptables dump libiptc's internal table (offsets, sizes)
            body = [w for w in body if w not in ("-v", "--verbose")]
            yield kind, rng.choice((["-t", table, "-F", rng.choice((chain, "nosuch")), "-v"],
                                    ["-t", table, "-Z", "-v"], ["-t", table, "-D", chain, "-v", *body],
                                    ["-t", table, "-C", chain, "-v", *body],
                                    ["-t", table, "-I", chain, num, "-v", *body],
                                    ["-t", table, "-R", chain, num, "-v", *body]))
        else:
            yield kind, ["-t", table, "-L", chain, "-Z", "-n", "-v", "-x"]


def test_edits_agree(commands: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Replay the accepted commands on fresh state, then edit it step by step."""
    rng = random.Random(SEED + 2)
    problems = []
    done: Counter[str] = Counter()
    with fresh(tmp_path, "edits.rules") as (k, p):
        for case in commands.accepted:
            kr, pr = k.cmd(case.argv), p.cmd(case.argv)
            if not same(kr, pr):
                problems.append(describe(f"replay {' '.join(case.argv)}", kr, pr))
        for step, (kind, argv) in enumerate(edit_ops(rng, commands.accepted, k, 150)):
            kr, pr = k.cmd(argv), p.cmd(argv)
            done[kind] += 1
            if not same(kr, pr):
                problems.append(describe(f"edit #{step} {kind}: {' '.join(argv)}", kr, pr))
            table = argv[1]
            kr, pr = k.cmd(["-t", table, "-S"]), p.cmd(["-t", table, "-S"])
            if not same(kr, pr):
                problems.append(describe(f"-t {table} -S after edit #{step} {kind}: {' '.join(argv)}", kr, pr))
                break  # later steps would only repeat the divergence
        problems += compare_state(k, p, "after edits")
        # then tear down: flush, delete every chain, policies back
        for table in TABLES:
            for argv in (["-t", table, "-F"], ["-t", table, "-X"], ["-t", table, "-Z"],
                         ["-t", table, "-P", TABLES[table][0], "ACCEPT"]):
                kr, pr = k.cmd(argv), p.cmd(argv)
                if not same(kr, pr):
                    problems.append(describe(" ".join(argv), kr, pr))
        problems += compare_state(k, p, "after teardown", full=False)
    with capsys.disabled():
        print(f"\ndifferential edits: {len(commands.accepted)} replayed, {sum(done.values())} edits ("
              + ", ".join(f"{kind} {n}" for kind, n in sorted(done.items())) + ")")
    fail_with("edits", problems)
