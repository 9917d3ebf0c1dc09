"""`pyfw SUBCOMMAND`: lint, simulate, daemon, conntrack."""

from __future__ import annotations

import sys


def main_sub(name: str, argv: list[str]) -> None:
    if name == "lint":
        from pyfw.lint import main as lint_main

        raise SystemExit(lint_main(argv))
    if name == "simulate":
        from pyfw.cli.simulate import main

        raise SystemExit(main(argv))
    if name == "conntrack":
        from pyfw.cli.conntrack import main as conntrack_main

        raise SystemExit(conntrack_main(argv))
    if name == "daemon":
        from pyfw.daemon.main import main as daemon_main

        raise SystemExit(daemon_main(argv))
    sys.stderr.write(f"pyfw {name}: not available in this version yet\n")
    raise SystemExit(2)
