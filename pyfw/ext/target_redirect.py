"""REDIRECT: DNAT to the local machine (nat PREROUTING and OUTPUT).

Revision 0 (compat range): a shifted port map `A-B/C` is refused by the
final check, as iptables refuses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyfw.errors import ParameterProblem
from pyfw.ext.base import Opt
from pyfw.ext.nat_common import RANGE_PROTO_OFFSET, NatRange, NatTarget, range_opt

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


class Redirect(NatTarget):
    name = "REDIRECT"
    hooks = frozenset({"PREROUTING", "OUTPUT"})
    options = (
        range_opt("to-ports", mand=False),
        Opt("random"),
    )
    range_option = "to-ports"
    save_prefix = "--to-ports "
    print_prefix = "redir ports "
    skip_colon = True

    def final_check(self, data: NatRange, xflags: set[str], udata: dict[str, Any]) -> None:
        if data.flags & RANGE_PROTO_OFFSET:
            raise ParameterProblem("Shifted portmap ranges not supported with this kernel")

    def compile(self, data: NatRange, env: Env) -> TargetFn:
        """redirect_tg4: DNAT to this host (127.0.0.1 from OUTPUT)."""
        nat = env.nat()

        def redirect(pkt: Packet) -> int:
            return int(nat.redirect(pkt, data))

        return redirect


EXTENSIONS = [Redirect()]
