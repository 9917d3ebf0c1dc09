"""`python -m pyfw.daemon ARGS` = `pyfw daemon ARGS`."""

import sys

from pyfw.daemon.main import main

raise SystemExit(main(sys.argv[1:]))
