"""DNAT: rewrite the destination address/port of new connections.

iptables 1.8.9 uses revision 2 when the kernel has it (every kernel since
4.19): struct nf_nat_range2, so shifted port maps `PORT-PORT/BASE` work.
"""

from __future__ import annotations

from pyfw.ext.base import Opt
from pyfw.ext.nat_common import NatTarget, range_opt


class Dnat(NatTarget):
    name = "DNAT"
    revision = 2
    hooks = frozenset({"PREROUTING", "OUTPUT"})
    options = (
        range_opt("to-destination", mand=True),
        Opt("random"),
        Opt("persistent"),
    )
    range_option = "to-destination"
    save_prefix = "--to-destination "
    print_prefix = "to:"
    compat = False

EXTENSIONS = [Dnat()]
