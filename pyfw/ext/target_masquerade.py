"""MASQUERADE: SNAT to the outgoing interface's address (nat POSTROUTING).

Revision 0 (compat range): `--to-ports A-B/C` is accepted and keeps the
offset flag but not C, so it saves as /0, as iptables-legacy does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.ext.base import Opt
from pyfw.ext.nat_common import NatRange, NatTarget, range_opt

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


class Masquerade(NatTarget):
    name = "MASQUERADE"
    hooks = frozenset({"POSTROUTING"})
    options = (
        range_opt("to-ports", mand=False),
        Opt("random"),
        Opt("random-fully"),
    )
    range_option = "to-ports"
    save_prefix = "--to-ports "
    print_prefix = "masq ports: "
    skip_colon = True

    def compile(self, data: NatRange, env: Env) -> TargetFn:
        """masquerade_tg: SNAT to the out interface's address."""
        nat = env.nat()

        def masquerade(pkt: Packet) -> int:
            return int(nat.masquerade(pkt, data))

        return masquerade


EXTENSIONS = [Masquerade()]
