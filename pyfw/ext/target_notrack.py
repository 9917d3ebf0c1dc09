"""NOTRACK: leave the packet untracked.

In iptables 1.8.9 this is an alias of CT revision 2 (the kernel target is
CT, so `-L` shows CT in the target column) whose data carries the NOTRACK
and NOTRACK_ALIAS flags; the alias flag makes `-S` print `-j NOTRACK` with
no options and `-L` print " NOTRACK".  Raw table only, like CT.  It is a
different rule from `-j CT --notrack` (the flags differ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfw.ext.base import CheckContext, RuleIp, Target
from pyfw.ext.target_ct import CT_NOTRACK, CT_NOTRACK_ALIAS, CTData, ct_check, ct_compile, ct_save_name

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn



class Notrack(Target):
    name = "NOTRACK"
    revision = 2
    table = "raw"
    real_name = "CT"

    def new_data(self) -> CTData:
        return CTData(flags=CT_NOTRACK | CT_NOTRACK_ALIAS)

    def check(self, data: CTData, ctx: CheckContext) -> None:
        ct_check(data, ctx)

    def save_name(self, data: CTData) -> str:
        return ct_save_name(data)

    def save(self, data: CTData, ip: RuleIp) -> str:
        return ""

    def print(self, data: CTData, ip: RuleIp, numeric: bool) -> str:
        return " NOTRACK"

    def compile(self, data: CTData, env: Env) -> TargetFn:
        """CT --notrack: the packet is untracked."""
        return ct_compile(data)


EXTENSIONS = [Notrack()]
