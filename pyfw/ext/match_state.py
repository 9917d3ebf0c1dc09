"""state: the classic connection state match.

In iptables 1.8.9 `-m state` is an alias: the kernel gets conntrack
revision 3 with only the state set and the STATE_ALIAS flag, which makes
iptables print it back as `-m state --state ...` / `state ...`.  The data is
therefore match_conntrack's ConntrackInfo, so one packet test serves both.
"""

from __future__ import annotations

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp
from pyfw.ext.match_conntrack import (
    F_STATE,
    F_STATE_ALIAS,
    STATE_ESTABLISHED,
    STATE_INVALID,
    STATE_NEW,
    STATE_RELATED,
    STATE_UNTRACKED,
    ConntrackInfo,
    compile_conntrack,
    conntrack_dump,
)
from pyfw.ext.types import strncasecmp_eq

# Only these five; SNAT/DNAT are conntrack-only.
_STATES: tuple[tuple[str, int], ...] = (
    ("INVALID", STATE_INVALID), ("NEW", STATE_NEW), ("ESTABLISHED", STATE_ESTABLISHED),
    ("RELATED", STATE_RELATED), ("UNTRACKED", STATE_UNTRACKED),
)


def _one(word: str) -> int:
    for name, bit in _STATES:
        if strncasecmp_eq(word, name, len(word)):
            return bit
    return 0


def parse_states(arg: str) -> int:
    """state_parse_states: a comma list of (abbreviated) state names."""
    mask = 0
    rest = arg
    while "," in rest:
        word, tail = rest.split(",", 1)
        bit = _one(word) if word else 0
        if bit == 0:
            raise ParameterProblem(f'Bad state "{rest}"')
        mask |= bit
        rest = tail
    if rest == "":
        raise ParameterProblem(
            '"--state" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED')
    bit = _one(rest)
    if bit == 0:
        raise ParameterProblem(f'Bad state "{rest}"')
    return mask | bit


class State(Match):
    name = "state"
    revision = 3  # the kernel sees conntrack revision 3
    options = (Opt("state", ArgType.STRING, invert=True, mand=True),)

    def new_data(self) -> ConntrackInfo:
        return ConntrackInfo()

    def parse(self, call: Call) -> None:
        d: ConntrackInfo = call.data
        d.match_flags = F_STATE | F_STATE_ALIAS
        d.state_mask = parse_states(call.arg or "")
        if call.invert:
            d.invert_flags |= F_STATE

    def save(self, data: ConntrackInfo, ip: RuleIp) -> str:
        return conntrack_dump(data, "--", True)

    def print(self, data: ConntrackInfo, ip: RuleIp, numeric: bool) -> str:
        return conntrack_dump(data, "", numeric)

    def compile(self, data: ConntrackInfo, env: Env) -> MatchFn:
        """The kernel runs conntrack_mt for `-m state` too."""
        return compile_conntrack(data)


EXTENSIONS = [State()]
