"""ttl: compare the IPv4 TTL (`-m ttl --ttl-lt 5`).

`--ttl` is an old alias of `--ttl-eq` with the same option id, so iptables
accepts `! --ttl` and names "--ttl-eq" in its messages; all four options
exclude each other.  The once/exclusion rules are therefore checked here by
id (the aliased options are multi in the generic table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyfw.engine.api import Env, MatchFn
from pyfw.ext.base import ArgType, Call, Match, Opt, RuleIp, fail
from pyfw.ext.types import parse_typed

# enum ipt_ttl_mode
EQ = 0
NE = 1
LT = 2
GT = 3

# option name -> id name; ids in iptables' numbering order (eq, lt, gt).
_IDS = {"ttl-lt": "ttl-lt", "ttl-gt": "ttl-gt", "ttl-eq": "ttl-eq", "ttl": "ttl-eq"}
_ID_ORDER = ("ttl-eq", "ttl-lt", "ttl-gt")
_TABLE_ORDER = ("ttl-lt", "ttl-gt", "ttl-eq")

# The id's own option entry, for the generic UINT8 parse and its messages.
_UINT8 = {n: Opt(n, ArgType.UINT8) for n in _ID_ORDER}

_SAVE = {EQ: " --ttl-eq", NE: " ! --ttl-eq", LT: " --ttl-lt", GT: " --ttl-gt"}
_PRINT = {EQ: "TTL ==", NE: "TTL !=", LT: "TTL <", GT: "TTL >"}


@dataclass
class TtlData:
    mode: int = EQ
    ttl: int = 0
    seen: set[str] = field(default_factory=set, compare=False, repr=False)


class Ttl(Match):
    name = "ttl"
    options = (
        Opt("ttl-lt", ArgType.RAW, multi=True),
        Opt("ttl-gt", ArgType.RAW, multi=True),
        Opt("ttl-eq", ArgType.RAW, invert=True, multi=True),
        Opt("ttl", ArgType.RAW, invert=True, multi=True),
    )

    def new_data(self) -> TtlData:
        return TtlData()

    def parse(self, call: Call) -> None:
        data: TtlData = call.data
        ident = _IDS[call.opt.name]
        if ident in data.seen:
            raise fail(f'ttl: option "--{ident}" can only be used once.\n')
        data.ttl = parse_typed("ttl", _UINT8[ident], call.arg if call.arg is not None else "")
        if ident == "ttl-eq":
            data.mode = NE if call.invert else EQ
        else:
            data.mode = LT if ident == "ttl-lt" else GT
        data.seen.add(ident)

    def final_check(self, data: TtlData, xflags: set[str], udata: dict[str, object]) -> None:
        if not data.seen:
            raise fail("TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt")
        # xtables_options_fcheck: table order for the first, id order for the other.
        for first in _TABLE_ORDER:
            if first not in data.seen:
                continue
            for other in _ID_ORDER:
                if other != first and other in data.seen:
                    raise fail(f'ttl: option "--{first}" cannot be used together '
                               f'with "--{other}".\n')

    def save(self, data: TtlData, ip: RuleIp) -> str:
        return f"{_SAVE.get(data.mode, '')} {data.ttl}"

    def print(self, data: TtlData, ip: RuleIp, numeric: bool) -> str:
        return f" TTL match {_PRINT.get(data.mode, '')} {data.ttl}"

    def compile(self, data: TtlData, env: Env) -> MatchFn:
        """ttl_mt: compare the header's TTL (after the FORWARD decrement)."""
        ttl, mode = data.ttl, data.mode
        if mode == EQ:
            return lambda pkt: pkt.ttl == ttl
        if mode == NE:
            return lambda pkt: pkt.ttl != ttl
        if mode == LT:
            return lambda pkt: pkt.ttl < ttl
        if mode == GT:
            return lambda pkt: pkt.ttl > ttl
        return lambda pkt: False


EXTENSIONS = [Ttl()]
