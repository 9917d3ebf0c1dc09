"""SNAT: rewrite the source address/port of new connections.

iptables 1.8.9 has only revision 0 for IPv4 (the compat range struct): a
`/BASE` shifted port map is accepted but its base is lost (saved as /0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.ext.base import Opt
from pyfw.ext.nat_common import NatRange, NatTarget, range_opt

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


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

    def compile(self, data: NatRange, env: Env) -> TargetFn:
        """xt_snat_target: bind the new connection's source (nf_nat_setup_info)."""
        from pyfw.engine.nat import MANIP_SRC

        nat = env.nat()

        def snat(pkt: Packet) -> int:
            return int(nat.setup(pkt, data, MANIP_SRC))

        return snat


EXTENSIONS = [Snat()]
