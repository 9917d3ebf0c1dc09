"""limit: a token bucket shared by every packet the rule sees.

The rate is kept as the kernel gets it (`avg`: the average time between
packets in 1/10000 s, struct xt_rateinfo) plus the burst; `cost` and
`credit_cap` are the credits xt_limit derives from them at checkentry, so the
packet engine can run the same bucket.  The kernel refuses (ERANGE) a burst
of 0 and an avg*burst that overflows its 32-bit credit arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

XT_LIMIT_SCALE = 10000
DEFAULT_AVG_TEXT = "3/hour"
DEFAULT_BURST = 5
U32 = 0xFFFFFFFF

# libiptc prints strerror(ERANGE) for what xt_limit refuses with -ERANGE.
ERANGE = "Numerical result out of range"

# The kernel's jiffy arithmetic (CONFIG_HZ of the reference machine: 250).
HZ = 250


def _pow2_below32(x: int) -> int:
    for shift in (1, 2, 4, 8, 16):
        x |= x >> shift
    return (x >> 1) + 1


CREDITS_PER_JIFFY = _pow2_below32(U32 // (HZ * 60 * 60 * 24))

# (name, period of one packet per unit in avg units), slowest first, as
# iptables' print_rate walks them.
RATES: tuple[tuple[str, int], ...] = (
    ("day", XT_LIMIT_SCALE * 24 * 60 * 60),
    ("hour", XT_LIMIT_SCALE * 60 * 60),
    ("min", XT_LIMIT_SCALE * 60),
    ("sec", XT_LIMIT_SCALE),
)

UNITS: tuple[tuple[str, int], ...] = (
    ("second", 1), ("minute", 60), ("hour", 60 * 60), ("day", 24 * 60 * 60),
)


def c_strtol(s: str) -> int:
    """glibc strtol(s, NULL, 10) clamped to a 64-bit long (atoi/atoll)."""
    i = 0
    n = len(s)
    while i < n and s[i] in " \t\n\v\f\r":
        i += 1
    sign = 1
    if i < n and s[i] in "+-":
        sign = -1 if s[i] == "-" else 1
        i += 1
    j = i
    while j < n and "0" <= s[j] <= "9":
        j += 1
    value = sign * int(s[i:j]) if j > i else 0
    return max(-(1 << 63), min((1 << 63) - 1, value))


def ascii_lower(s: str) -> str:
    """tolower() in the C locale: ASCII letters only."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def rate_unit(rate: str) -> int | None:
    """The seconds per unit of "N/unit" (unit a case-blind prefix of
    second/minute/hour/day, first match wins); 1 without "/"; None if bad."""
    slash = rate.find("/")
    if slash < 0:
        return 1
    unit = ascii_lower(rate[slash + 1:])
    if unit == "":
        return None
    for word, mult in UNITS:
        if len(unit) <= len(word) and word.startswith(unit):
            return mult
    return None


def parse_rate(rate: str) -> int | None:
    """limit's parse_rate: avg in 1/10000 s, None when the text is bad."""
    mult = rate_unit(rate)
    if mult is None:
        return None
    r = c_strtol(rate) & U32  # atoi() stored in a uint32_t
    if r == 0:
        return None
    avg = (XT_LIMIT_SCALE * mult) // r
    if avg == 0:
        raise ParameterProblem(f'Rate too fast "{rate}"')
    return avg


def rate_text(period: int) -> str:
    """print_rate: " N/unit" with the coarsest unit that shows it exactly
    enough, or " inf" for a zero period."""
    if period == 0:
        return " inf"
    i = 1
    while i < len(RATES):
        mult = RATES[i][1]
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, mult = RATES[i - 1]
    return f" {mult // period}/{name}"


def user2credits(user: int) -> int:
    """xt_limit's conversion of avg units to credits (32-bit arithmetic)."""
    user &= U32
    if user > U32 // (HZ * CREDITS_PER_JIFFY):
        return ((user // XT_LIMIT_SCALE) * HZ * CREDITS_PER_JIFFY) & U32
    return ((user * HZ * CREDITS_PER_JIFFY) & U32) // XT_LIMIT_SCALE


DEFAULT_AVG = (XT_LIMIT_SCALE * 60 * 60) // 3


@dataclass
class LimitData:
    avg: int = DEFAULT_AVG   # average period between packets, 1/10000 s
    burst: int = DEFAULT_BURST

    @property
    def cost(self) -> int:
        """Credits one packet takes (the kernel's r->cost)."""
        return user2credits(self.avg)

    @property
    def credit_cap(self) -> int:
        """Credits the bucket holds when full, also its start value."""
        return user2credits(self.avg * self.burst)


class Limit(Match):
    name = "limit"
    options = (
        Opt("limit", ArgType.STRING),
        Opt("limit-burst", ArgType.UINT32, min=0, max=10000),
    )

    def new_data(self) -> LimitData:
        return LimitData()

    def parse(self, call: Call) -> None:
        data: LimitData = call.data
        if call.opt.name == "limit":
            avg = parse_rate(call.value)
            if avg is None:
                raise ParameterProblem(f'bad rate "{call.value}"\'')
            data.avg = avg
        else:
            data.burst = call.value

    def check(self, data: LimitData, ctx: CheckContext) -> None:
        if data.burst == 0 or user2credits(data.avg * data.burst) < user2credits(data.avg):
            raise KernelError(ERANGE)

    def save(self, data: LimitData, ip: RuleIp) -> str:
        text = " --limit" + rate_text(data.avg)
        if data.burst != DEFAULT_BURST:
            text += f" --limit-burst {data.burst}"
        return text

    def print(self, data: LimitData, ip: RuleIp, numeric: bool) -> str:
        return f" limit: avg{rate_text(data.avg)} burst {data.burst}"

    def compile(self, data: LimitData, env: Env) -> MatchFn:
        """limit_mt: see compile_limit."""
        return compile_limit(data)


U64 = 0xFFFFFFFFFFFFFFFF


def jiffies(now: float) -> int:
    """The jiffy count (HZ per second) at engine time `now`.  The kernel's
    counter starts elsewhere, but every rate match only takes differences.
    The tiny offset keeps a pcap timestamp that falls on a jiffy boundary
    (4 ms steps) from rounding down through float error."""
    return math.floor(now * HZ + 1e-6)


def compile_limit(data: LimitData) -> MatchFn:
    """limit_mt: one token bucket per rule, in 32-bit credits.  It starts
    full (credit_cap) when the rule is loaded; here the bucket's clock
    starts at the first packet, which is the same as long as the bucket was
    full then.  Each jiffy since the last packet adds CREDITS_PER_JIFFY (the
    increase is cut to 32 bits, as in the kernel, so a gap of about 37 hours
    wraps), the credit is capped, and a packet passes when it can pay
    `cost`.  A new ruleset makes new buckets, as the kernel's replace does."""
    cost = data.cost
    cap = data.credit_cap
    state: list[int | None] = [None, cap]  # prev jiffies, credit

    def match(pkt: Packet) -> bool:
        now = jiffies(pkt.time)
        prev = state[0]
        credit = state[1]
        assert credit is not None
        if prev is None:
            prev = now
        elif credit < cost and prev == now:
            return False
        increase = (((now - prev) & U64) * CREDITS_PER_JIFFY) & U32
        credit = (credit + increase) & U32
        if credit > cap:
            credit = cap
        state[0] = now
        if credit >= cost:
            state[1] = credit - cost
            return True
        state[1] = credit
        return False

    return match


EXTENSIONS = [Limit()]
