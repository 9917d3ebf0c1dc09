"""`pyfw SUBCOMMAND`: simulate now; daemon, conntrack and lint come with
their issues."""

from __future__ import annotations

import sys


def main_sub(name: str, argv: list[str]) -> None:
    if name == "lint":
        from pyfw.lint import main as lint_main

        raise SystemExit(lint_main(argv))
    if name == "simulate":
        from pyfw.cli.simulate import main

        raise SystemExit(main(argv))
    if name == "daemon":
        from pyfw.daemon.main import main as daemon_main

        raise SystemExit(daemon_main(argv))
    sys.stderr.write(f"pyfw {name}: not available in this version yet\n")
    raise SystemExit(2)
