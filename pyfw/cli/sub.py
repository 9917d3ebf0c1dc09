"""Subcommands that later issues fill in (simulate, daemon, conntrack, lint)."""

from __future__ import annotations

import sys


def main_sub(name: str, argv: list[str]) -> None:
    sys.stderr.write(f"pyfw {name}: not available in this version yet\n")
    raise SystemExit(2)
