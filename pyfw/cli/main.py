"""The `pyfw`, `pyfw-save` and `pyfw-restore` commands (iptables mirrors).

`run(argv, stdin)` does the whole job in-process and returns the exit code
and both outputs, so tests and the daemon's control socket share one code
path with the console scripts.  Imports stay lazy: scripts call these
commands hundreds of times.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = "/run/pyfw/pyfw.sock"
VERSION_TEXT = "v1.8.9 (legacy)"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.rc, self.out, self.err))


class _Where:
    def __init__(self, file: str | None, socket: str | None) -> None:
        self.file = file
        self.socket = socket


def _extract_where(argv: list[str]) -> tuple[list[str], _Where, str | None]:
    """Take --file/--socket out of argv (anywhere before `--`)."""
    rest: list[str] = []
    file = socket = None
    error = None
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--":
            rest.extend(argv[i:])
            break
        for name in ("--file", "--socket"):
            if w == name or w.startswith(name + "="):
                if w == name:
                    if i + 1 >= len(argv):
                        error = f"option \"{name}\" requires an argument"
                        value = None
                    else:
                        value = argv[i + 1]
                        i += 1
                else:
                    value = w[len(name) + 1:]
                if name == "--file":
                    file = value
                else:
                    socket = value
                break
        else:
            rest.append(w)
        i += 1
    return rest, _Where(file, socket), error


# Rulesets held in memory by a running daemon, by socket path: commands
# naming that socket act on them (pyfw.daemon.control), not on a file.  A
# store has the interface of pyfw.cli.store: locked, load, save, LockTimeout.
LIVE_STORES: dict[str, Any] = {}


def _store_for(path: Path) -> Any:
    """The daemon's live store for `path` if it is one, else the file store."""
    live = LIVE_STORES.get(str(path))
    if live is not None:
        return live
    from pyfw.cli import store

    return store


def _forward_to_daemon(argv: list[str], stdin: str | None) -> Result | None:
    """Send the command to the daemon listening on --socket (or PYFW_SOCKET),
    if there is one and it is not this process's own live store."""
    _, where, error = _extract_where(argv[1:])
    if error or where.file:
        return None
    sock = where.socket
    if sock is None and not os.environ.get("PYFW_FILE"):
        sock = os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET
    if not sock or sock in LIVE_STORES or not os.path.exists(sock):
        return None
    from pyfw.daemon.control import request

    rest = [argv[0], *_extract_where(argv[1:])[0]]
    if stdin is None and os.path.basename(argv[0]).endswith("-restore") and not sys.stdin.isatty():
        stdin = sys.stdin.read()
    return request(sock, rest, stdin)


def _resolve_where(where: _Where) -> tuple[Path | None, str | None]:
    """(file, error message)."""
    if where.file and where.socket:
        return None, "--file and --socket cannot be used together"
    if where.file:
        return Path(where.file), None
    if where.socket and where.socket in LIVE_STORES:
        return Path(where.socket), None
    if where.socket:
        return None, (f"cannot reach the pyfw daemon at {where.socket}: the daemon is not "
                      "available yet; use --file PATH (or PYFW_FILE) for a ruleset file")
    env_file = os.environ.get("PYFW_FILE")
    if env_file:
        return Path(env_file), None
    sock = os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET
    return None, ("no ruleset to act on: give --file PATH (or set PYFW_FILE) for a ruleset "
                  f"file, or --socket PATH (or PYFW_SOCKET) for a running pyfw daemon; "
                  f"no daemon is listening on {sock}")


def _format_error(exc: Exception, prog: str, line: int | None = None) -> tuple[int, str]:
    from pyfw.errors import KernelError, OtherProblem, ParameterProblem
    from pyfw.ruleset.argparse import BadArgument, TryHelp
    from pyfw.ruleset.commands import TableMissing
    from pyfw.ruleset.restore import CommitExpected, LineError, LineFailed

    tryhelp = f"Try `{prog} -h' or '{prog} --help' for more information.\n"
    at = f"Error occurred at line: {line}\n" if line is not None else ""
    if isinstance(exc, LineError):
        return _format_error(exc.error, prog, exc.line)
    pre = "".join(getattr(exc, "warnings", []))
    if pre:
        rc, text = _format_error(_without_warnings(exc), prog, line)
        return rc, pre + text
    if isinstance(exc, TryHelp):
        return 2, f"{at}{tryhelp}"
    if isinstance(exc, BadArgument):
        return 2, f"Bad argument `{exc.word}'\n{at}{tryhelp}"
    if isinstance(exc, ParameterProblem):
        msg = exc.message.replace("{PROG}", prog)
        return exc.exit_code, f"{prog} {VERSION_TEXT}: {msg}\n{at}{tryhelp}"
    if isinstance(exc, TableMissing):
        return 3, (f"{prog} {VERSION_TEXT}: can't initialize iptables table `{exc.message}': "
                   f"Table does not exist (do you need to insmod?)\n"
                   f"Perhaps {prog} or your kernel needs to be upgraded.\n")
    if isinstance(exc, (LineFailed, CommitExpected)):
        return 1, f"{prog}: {exc.message}\n"
    if isinstance(exc, KernelError):
        return 1, f"{prog}: {exc.message}.\n"
    if isinstance(exc, OtherProblem):
        return exc.exit_code, f"{prog} {VERSION_TEXT}: {exc.message}\n"
    raise exc


def _without_warnings(exc: Exception) -> Exception:
    exc.warnings = []  # type: ignore[attr-defined]
    return exc


def run(argv: list[str], stdin: str | None = None) -> Result:
    """Run one command line (argv[0] picks the program) in-process.

    The cyclic garbage collector is paused meanwhile: a command builds tens
    of thousands of small objects (rules, match data) and holds them all, so
    collections find nothing and used to cost more than the work itself."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(argv, stdin)
    finally:
        if was_enabled:
            gc.enable()


def _run(argv: list[str], stdin: str | None) -> Result:
    prog = os.path.basename(argv[0]) if argv else "pyfw"
    forwarded = _forward_to_daemon(argv, stdin) if argv else None
    if forwarded is not None:
        return forwarded
    if prog.endswith("-save"):
        return _run_save(argv)
    if prog.endswith("-restore"):
        return _run_restore(argv, stdin)
    return _run_pyfw(argv)


def _run_pyfw(argv: list[str]) -> Result:
    from pyfw.errors import PyfwError

    prog = "pyfw"
    args, where, error = _extract_where(argv[1:])
    if error:
        return Result(2, "", f"{prog} {VERSION_TEXT}: {error}\n")
    from pyfw.ruleset.argparse import parse_command

    try:
        parsed = parse_command([prog, *args])
    except PyfwError as exc:
        rc, err = _format_error(exc, prog)
        return Result(rc, "", err)
    if parsed.version:
        return Result(0, f"{prog} {VERSION_TEXT}\n", "")
    if parsed.help:
        return Result(0, _usage(prog), "")
    path, problem = _resolve_where(where)
    if path is None:
        return Result(2, "", f"{prog}: {problem}\n")
    store = _store_for(path)
    from pyfw.ruleset.commands import (
        chain_hooks,
        collect_uses,
        commit_check_change,
        reset_policy_counters,
    )
    from pyfw.ruleset.execute import execute

    outcome = None
    try:
        with store.locked(path, parsed.wait if parsed.wait > 0 else None):
            ruleset = store.load(path)
            known = set(ruleset.tables)
            live = collect_uses(ruleset) if _checks_tables(parsed) else None
            before = ruleset.tables.get(parsed.table)
            hooks_before = chain_hooks(before) if before is not None else {}
            outcome = execute(ruleset, parsed)
            if outcome.changed:
                commit_check_change(ruleset.tables[parsed.table], hooks_before, outcome.added, live)
                reset_policy_counters(ruleset.tables[parsed.table], _policy_with_counters(parsed))
            if outcome.changed or set(ruleset.tables) != known:
                store.save(path, ruleset)
    except store.LockTimeout:
        return Result(4, "", "Another app is currently holding the xtables lock; "
                             f"still {parsed.wait}s 0us time ahead to have a chance to grab the lock...\n")
    except PyfwError as exc:
        rc, err = _format_error(exc, prog)
        # what iptables printed before failing (-v rule lines) stays printed
        printed = (outcome.verbose_lines + outcome.output if outcome is not None
                   else getattr(exc, "stdout", ""))
        return Result(rc, printed, "".join(parsed.warnings) + err)
    return Result(0, outcome.verbose_lines + outcome.output, "".join(outcome.warnings))


def _policy_with_counters(parsed) -> str | None:  # type: ignore[no-untyped-def]
    """The chain whose policy counters this command sets (-P ... -c), if any."""
    from pyfw.ruleset.argparse import CMD_SET_POLICY, OPT_COUNTERS

    if parsed.command == CMD_SET_POLICY and parsed.options & OPT_COUNTERS:
        return str(parsed.chain)
    return None


def _checks_tables(parsed) -> bool:  # type: ignore[no-untyped-def]
    """Whether the command adds a use of an extension that checks across rules."""
    uses = [m.ext for m in parsed.matches]
    if parsed.target_ext is not None:
        uses.append(parsed.target_ext.ext)
    return any(ext.checks_tables() for ext in uses)


def _run_save(argv: list[str]) -> Result:
    prog = "pyfw-save"
    args, where, error = _extract_where(argv[1:])
    if error:
        return Result(2, "", f"{prog}: {error}\n")
    counters = False
    table = None
    outfile = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "--counters"):
            counters = True
        elif a in ("-t", "--table") or a.startswith("--table="):
            if "=" in a:
                table = a.split("=", 1)[1]
            else:
                i += 1
                if i >= len(args):
                    return Result(1, "", f"Look at manual page `{prog}.8' for more information.\n")
                table = args[i]
        elif a.startswith("-t") and len(a) > 2:
            table = a[2:]
        elif a in ("-f",) or a.startswith("-f"):
            if a == "-f":
                i += 1
                if i >= len(args):
                    return Result(1, "", f"Look at manual page `{prog}.8' for more information.\n")
                outfile = args[i]
            else:
                outfile = a[2:]
        elif a in ("-M", "--modprobe"):
            i += 1
        elif a in ("-V", "--version"):
            return Result(0, f"{prog} {VERSION_TEXT}\n", "")
        elif a in ("-b", "--binary"):
            pass
        elif a.startswith("-"):
            return Result(1, "", f"Look at manual page `{prog}.8' for more information.\n")
        else:
            return Result(1, "", "Unknown arguments found on commandline\n")
        i += 1
    path, problem = _resolve_where(where)
    if path is None:
        return Result(2, "", f"{prog}: {problem}\n")
    store = _store_for(path)
    from pyfw.ruleset.format import save_table

    with store.locked(path):
        ruleset = store.load(path)
    if table is not None:
        t = ruleset.tables.get(table)
        if t is None:
            from pyfw.ruleset.model import BUILTIN_CHAINS

            if table not in BUILTIN_CHAINS:
                return Result(1, "", f"{prog} {VERSION_TEXT}: Cannot initialize: "
                                     "Table does not exist (do you need to insmod?)\n")
            from pyfw.ruleset.model import Table

            t = Table.new(table)
        text = save_table(t, counters, program=prog)
    else:
        text = "".join(save_table(t, counters, program=prog) for t in ruleset.ordered_tables())
    if outfile is not None:
        try:
            Path(outfile).write_text(text)
        except OSError as exc:
            return Result(1, "", f"Failed to open file, error: {exc.strerror}\n")
        return Result(0, "", "")
    return Result(0, text, "")


def _run_restore(argv: list[str], stdin: str | None) -> Result:
    from pyfw.errors import PyfwError
    from pyfw.ruleset.restore import RestoreOptions, restore

    prog = "pyfw-restore"
    args, where, error = _extract_where(argv[1:])
    if error:
        return Result(2, "", f"{prog}: {error}\n")
    opts = RestoreOptions()
    wait: int | None = None
    files: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            longs = {"counters": "c", "verbose": "v", "version": "V", "test": "t", "help": "h",
                     "noflush": "n", "modprobe": "M", "table": "T", "wait": "w", "wait-interval": "W",
                     "binary": "b"}
            hits = [k for k in longs if k == name] or [k for k in longs if k.startswith(name)]
            if len(hits) != 1:
                return Result(1, "", f"Try `{prog} -h' for more information.\n")
            letters = [longs[hits[0]]]
            if letters[0] in "MT":
                if eq:
                    val_word = val
                else:
                    i += 1
                    if i >= len(args):
                        return Result(1, "", f"Try `{prog} -h' for more information.\n")
                    val_word = args[i]
                if letters[0] == "T":
                    opts.table = val_word
                i += 1
                continue
            if letters[0] == "w":
                wait = int(val) if eq and val.isdigit() else 0
                letters = []
            if letters[0:1] == ["W"]:
                letters = []
        elif a.startswith("-") and len(a) > 1:
            letters = list(a[1:])
        else:
            files.append(a)
            i += 1
            continue
        j = 0
        while j < len(letters):
            ch = letters[j]
            if ch == "c":
                opts.counters = True
            elif ch == "v":
                opts.verbose += 1
            elif ch == "V":
                return Result(0, f"{prog} {VERSION_TEXT}\n", "")
            elif ch == "t":
                opts.test = True
            elif ch == "h":
                return Result(0, "", f"Usage: {prog} [-c] [-v] [-V] [-t] [-h] [-n] [-w secs] "
                                     "[-W usecs] [-T table] [-M command] [file]\n")
            elif ch == "n":
                opts.noflush = True
            elif ch == "b":
                pass
            elif ch in ("w", "W"):
                wait = 0 if ch == "w" else wait
                # an optional number may follow as the next word
                if i + 1 < len(args) and args[i + 1].isdigit():
                    if ch == "w":
                        wait = int(args[i + 1])
                    i += 1
            elif ch in ("T", "M"):
                rest = "".join(letters[j + 1:])
                if not rest:
                    i += 1
                    if i >= len(args):
                        return Result(1, "", f"Try `{prog} -h' for more information.\n")
                    rest = args[i]
                if ch == "T":
                    opts.table = rest
                break
            else:
                return Result(1, "", f"Try `{prog} -h' for more information.\n")
            j += 1
        i += 1
    if len(files) > 1:
        return Result(1, "", "Unknown arguments found on commandline\n")
    if files:
        try:
            text = Path(files[0]).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            return Result(1, "", f"Can't open {files[0]}: {exc.strerror}\n")
        opts.src_file = files[0]
    else:
        text = stdin if stdin is not None else sys.stdin.read()
    path, problem = _resolve_where(where)
    if path is None:
        return Result(2, "", f"{prog}: {problem}\n")
    store = _store_for(path)

    try:
        with store.locked(path, wait if wait else None):
            ruleset = store.load(path)
            result = restore(ruleset, text, opts, program=prog)
            if not opts.test:
                store.save(path, result.ruleset)
    except store.LockTimeout:
        return Result(4, "", "Another app is currently holding the xtables lock.\n")
    except PyfwError as exc:
        rc, err = _format_error(exc, prog)
        return Result(rc, getattr(exc, "stdout", ""), "".join(getattr(exc, "earlier_warnings", [])) + err)
    return Result(0, result.output, "".join(result.warnings))


def _usage(prog: str) -> str:
    return (
        f"{prog} {VERSION_TEXT}\n\n"
        f"Usage: {prog} [--file PATH | --socket PATH] -[ACD] chain rule-specification [options]\n"
        f"       {prog} -I chain [rulenum] rule-specification [options]\n"
        f"       {prog} -R chain rulenum rule-specification [options]\n"
        f"       {prog} -D chain rulenum [options]\n"
        f"       {prog} -[LS] [chain [rulenum]] [options]\n"
        f"       {prog} -[FZ] [chain] [options]\n"
        f"       {prog} -[NX] chain\n"
        f"       {prog} -E old-chain-name new-chain-name\n"
        f"       {prog} -P chain target [options]\n"
        f"       {prog} -h (print this help information)\n"
    )


def _emit(result: Result) -> None:
    if result.out:
        sys.stdout.write(result.out)
        sys.stdout.flush()
    if result.err:
        sys.stderr.write(result.err)
        sys.stderr.flush()
    raise SystemExit(result.rc)


def main_pyfw() -> None:
    argv = ["pyfw", *sys.argv[1:]]
    if len(argv) > 1 and argv[1] in ("simulate", "daemon", "conntrack", "lint"):
        from pyfw.cli.sub import main_sub

        main_sub(argv[1], argv[2:])
        return
    _emit(run(argv))


def main_save() -> None:
    _emit(run(["pyfw-save", *sys.argv[1:]]))


def main_restore() -> None:
    _emit(run(["pyfw-restore", *sys.argv[1:]]))


if __name__ == "__main__":
    main_pyfw()
