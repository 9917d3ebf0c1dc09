"""The helpers the MARK/CONNMARK/CT/NOTRACK/TCPMSS/DSCP/TOS/TTL target
tests share: parse a rule with the core's parser, the target's texts, the
kernel's check (the core's generic table/hooks/proto check, then the
target's own), and parameter refusals."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from pyfw.errors import ParameterProblem
from pyfw.ext.base import CheckContext
from pyfw.ruleset.argparse import parse_command
from pyfw.ruleset.commands import _check_ext


def parse(args: str, table: str = "mangle", chain: str = "INPUT") -> Any:
    """Parse `-A chain ARGS` with the core's parser; the target's use."""
    return parse_command(["iptables", "-t", table, "-A", chain, *shlex.split(args)])


def texts(args: str, table: str = "mangle", chain: str = "INPUT") -> tuple[str, str, str]:
    """(save, print, print numeric) of the rule's target."""
    p = parse(args, table, chain)
    t = p.target_ext
    ip = p.base.ip
    return t.ext.save(t.data, ip), t.ext.print(t.data, ip, False), t.ext.print(t.data, ip, True)


def check(args: str, table: str = "mangle", chain: str = "INPUT",
          hooks: frozenset[str] | None = None) -> None:
    """The kernel's check of the rule's target, as a commit runs it."""
    p = parse(args, table, chain)
    t = p.target_ext
    ctx = CheckContext(table, chain, frozenset({chain}) if hooks is None else hooks, p.base.ip,
                       matches=tuple((m.ext.name, m.data) for m in p.matches), target=t.ext.name)
    _check_ext(t.ext, t.data, ctx)


def refused(args: str, table: str = "mangle", chain: str = "INPUT") -> str:
    with pytest.raises(ParameterProblem) as info:
        parse(args, table, chain)
    return info.value.message
