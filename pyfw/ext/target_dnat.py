"""DNAT: rewrite the destination address/port of new connections.

iptables 1.8.9 uses revision 2 when the kernel has it (every kernel since
4.19): struct nf_nat_range2, so shifted port maps `PORT-PORT/BASE` work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.ext.base import Opt
from pyfw.ext.nat_common import NatRange, NatTarget, range_opt

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


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

    def compile(self, data: NatRange, env: Env) -> TargetFn:
        """xt_dnat_target_v2: bind the new connection's destination."""
        from pyfw.engine.nat import MANIP_DST

        nat = env.nat()

        def dnat(pkt: Packet) -> int:
            return int(nat.setup(pkt, data, MANIP_DST))

        return dnat


EXTENSIONS = [Dnat()]
