"""Running every line of a .t file end to end through the CLI, as the
upstream harness does (for target files 1.8.9 passes whole)."""

from __future__ import annotations

import shlex
from pathlib import Path


def t_lines(t_file: Path) -> list[tuple[int, str, str, str, list[str]]]:
    """(line number, table, rule, expected, chains) of the .t file; expected
    is "" on a FAIL line."""
    out = []
    chains: list[str] = []
    table = "filter"
    for n, line in enumerate(t_file.read_text().splitlines(), 1):
        if not line or line[0] in "#@%":
            continue
        if line[0] == ":":
            chains = line[1:].split(",")
        elif line[0] == "*":
            table = line[1:]
        else:
            rule, expected, result = line.split(";")[:3]
            out.append((n, table, rule, expected if result.rstrip() == "OK" else "", chains))
    return out


def check_t_line(tmp_path: Path, table: str, rule: str, expected: str, chains: list[str]) -> None:
    """-A in each chain, the whole line in pyfw-save, then -D; FAIL lines refused."""
    from pyfw.cli.main import run as cli

    for chain in chains:
        path = str(tmp_path / f"rs-{chain}")
        rc, _, err = cli(["pyfw", "--file", path, "-A", chain, "-t", table, *shlex.split(rule)])
        if not expected:
            assert rc != 0
            continue
        assert rc == 0, err
        saved = cli(["pyfw-save", "--file", path]).out
        want = rule if expected == "=" else expected
        assert f"\n-A {chain} {want}\n" in saved
        assert cli(["pyfw", "--file", path, "-D", chain, "-t", table, *shlex.split(rule)]).rc == 0
