"""SNAT: rewrite the source address/port of new connections.

iptables 1.8.9 has only revision 0 for IPv4 (the compat range struct): a
`/BASE` shifted port map is accepted but its base is lost (saved as /0).
"""

from __future__ import annotations

from pyfw.ext.base import Opt
from pyfw.ext.nat_common import NatTarget, range_opt


class Snat(NatTarget):
    name = "SNAT"
    hooks = frozenset({"POSTROUTING", "INPUT"})
    options = (
        range_opt("to-source", mand=True),
        Opt("random"),
        Opt("random-fully"),
        Opt("persistent"),
    )
    range_option = "to-source"
    save_prefix = "--to-source "
    print_prefix = "to:"


EXTENSIONS = [Snat()]
