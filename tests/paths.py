"""Where the shared test data is: $PYFW_SHARED, else ../shared beside the
checkout (as CI lays it out), else /work/shared."""

from __future__ import annotations

import os
from pathlib import Path


def _find() -> Path:
    env = os.environ.get("PYFW_SHARED")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared"
    if beside.is_dir():
        return beside
    return Path("/work/shared")


SHARED = _find()
HAVE_SHARED = (SHARED / "conformance").is_dir()
