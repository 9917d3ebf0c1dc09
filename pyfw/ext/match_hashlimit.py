"""hashlimit: a token bucket per hash key (addresses, ports) of the packet.

iptables 1.8.9 uses revision 3 (struct xt_hashlimit_mtinfo3), the highest
this kernel has: 64-bit rates in 1/1000000 s, byte rates ("4kb/s"), and
`--hashlimit-rate-match`.  The data keeps the kernel's cfg fields.  What the
kernel does at checkentry is here too: it refuses bad names, zero
gc-interval or expire, masks over 32 and credit overflow, and truncates
htable size and max to 1048576 (visible in -S).  Rules naming the same
table must agree on rate-match (see `htable_conflict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.engine.api import Env, Hotdrop, MatchFn
from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.match_limit import ERANGE, HZ, c_strtol, jiffies, rate_unit
from pyfw.ext.types import mask_to_cidr, strtoul, strtoul_end

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

SCALE = 1000000  # XT_HASHLIMIT_SCALE_v2
BYTE_SHIFT = 4
DEFAULT_BURST = 5
BURST_MAX = 1000000
GCINTERVAL = 1000  # ms
BYTE_EXPIRE = 15  # s
BYTE_EXPIRE_BURST = 60  # s
NAME_MAX = 255
HASHLIMIT_MAX_SIZE = 1048576

HASH_DIP = 1 << 0
HASH_DPT = 1 << 1
HASH_SIP = 1 << 2
HASH_SPT = 1 << 3
INVERT = 1 << 4
BYTES = 1 << 5
RATE_MATCH = 1 << 6
HASH_ANY = HASH_DIP | HASH_DPT | HASH_SIP | HASH_SPT

MODE_WORDS = {"dstip": HASH_DIP, "srcip": HASH_SIP, "srcport": HASH_SPT, "dstport": HASH_DPT}
# print_mode's order.
MODE_ORDER = ((HASH_SIP, "srcip"), (HASH_SPT, "srcport"), (HASH_DIP, "dstip"), (HASH_DPT, "dstport"))

RATES: tuple[tuple[str, int], ...] = (
    ("day", SCALE * 24 * 60 * 60),
    ("hour", SCALE * 60 * 60),
    ("min", SCALE * 60),
    ("sec", SCALE),
)
BYTE_UNITS: tuple[tuple[str, int], ...] = (("m", 1024 * 1024), ("k", 1024), ("", 1))


def _pow2_below64(x: int) -> int:
    for shift in (1, 2, 4, 8, 16, 32):
        x |= x >> shift
    return (x >> 1) + 1


# Kernel constants for revision 2+ (u64 credits).
CREDITS_PER_JIFFY = _pow2_below64(U64 // (HZ * 60 * 60 * 24))
CREDITS_PER_JIFFY_BYTES = _pow2_below64(U32 // HZ) & U32


def user2credits(user: int) -> int:
    """xt_hashlimit's avg-units to credits conversion (u64, revision 3)."""
    user &= U64
    if SCALE >= HZ * CREDITS_PER_JIFFY:
        return user // (SCALE // (HZ * CREDITS_PER_JIFFY))
    return (user * ((HZ * CREDITS_PER_JIFFY) // SCALE)) & U64


def user2credits_byte(user: int) -> int:
    return ((user & U32) * HZ * CREDITS_PER_JIFFY_BYTES) >> 32 & U32


def cost_to_bytes(cost: int) -> int:
    r = U32 // cost if cost else U32
    return ((r - 1) << BYTE_SHIFT) & U64


def bytes_to_cost(nbytes: int) -> int:
    r = (nbytes >> BYTE_SHIFT) & U32
    return U32 // (r + 1) if r != U32 else 0  # C divides by zero there


def _factor(ch: str) -> int:
    return {"m": 1024 * 1024, "k": 1024}.get(ch, 1)


def parse_bytes(rate: str) -> int | None:
    """"Nb/s", "Nkb/s", "Nmb/s" (the "b/s" may be anywhere): the cost of one
    16-byte chunk, or None when it is not a byte rate."""
    pos = rate.find("b/s")
    if pos <= 0:
        return None
    r = c_strtol(rate) & U64
    if r == 0:
        return None
    cost = bytes_to_cost((r * _factor(rate[pos - 1])) & U64)
    if cost == 0:
        raise ParameterProblem(f'Rate too high "{rate}"')
    return cost


def parse_rate(rate: str) -> tuple[int, int] | None:
    """(avg in 1/1000000 s, seconds per unit), None when the text is bad."""
    mult = rate_unit(rate)
    if mult is None:
        return None
    r = c_strtol(rate) & U64
    if r == 0:
        return None
    avg = (SCALE * mult) // r
    if avg == 0:
        raise ParameterProblem(f'Rate too fast "{rate}"')
    return avg, mult


def parse_burst(burst: str) -> int:
    """parse_burst: a number, optionally with a k/m suffix (bytes)."""
    value, rest = strtoul_end(burst, 1, 0)
    if value is None or (rest == "" and value > BURST_MAX):
        raise _burst_error()
    return (value * _factor(rest[:1])) & U64


def _burst_error() -> ParameterProblem:
    return ParameterProblem(
        f'bad value for option "--hashlimit-burst", or out of range (1-{BURST_MAX}).')


def parse_mode(arg: str) -> int | None:
    mode = 0
    for word in arg.replace("|", ",").split(","):
        if word == "":
            continue
        bit = MODE_WORDS.get(word)
        if bit is None:
            return None
        mode |= bit
    return mode


def inet_aton_exact(s: str) -> int | None:
    """glibc's __inet_aton_exact (getaddrinfo AI_NUMERICHOST, AF_INET):
    "a", "a.b", "a.b.c", "a.b.c.d" in C number syntax, nothing after."""
    parts = s.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        if part == "" or not "0" <= part[0] <= "9":
            return None
        value = strtoul(part, 0, 0)
        if value is None or value > U32:
            return None
        values.append(value)
    last = values.pop()
    if any(v > 0xFF for v in values) or last > (U32 >> (8 * len(values))):
        return None
    addr = 0
    for i, v in enumerate(values):
        addr |= v << (24 - 8 * i)
    return addr | last


def parse_plen(optname: str, arg: str) -> int:
    """XTTYPE_PLEN for IPv4: 0-32, else a numeric address read as a mask
    (a non-contiguous one gives 255, which the kernel refuses)."""
    value = strtoul(arg, 0, 32)
    if value is not None:
        return value
    mask = inet_aton_exact(arg)
    if mask is None:
        raise ParameterProblem(
            f'hashlimit: bad value for option "--{optname}", neither a valid network mask '
            f'nor valid CIDR (0-32).\n')
    return mask_to_cidr(mask) & 0xFF


def rate_text(period: int) -> tuple[str, int]:
    """print_rate: (" N/unit", the unit in ms, the default expire)."""
    if period == 0:
        return " inf", 0
    i = 1
    while i < len(RATES):
        mult = RATES[i][1]
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, mult = RATES[i - 1]
    return f" {mult // period}/{name}", mult // SCALE * 1000


def bytes_text(avg: int, burst: int, prefix: str) -> tuple[str, int]:
    """print_bytes: (" 4kb/s[ PREFIXburst 400kb]", default expire in ms)."""
    r = cost_to_bytes(avg)
    i = 0
    while i < len(BYTE_UNITS) - 1:
        unit, thresh = BYTE_UNITS[i]
        # `r & ~(thresh - 1)` with a 32-bit mask: the upper half drops.
        if r >= thresh and bytes_to_cost(r & (~(thresh - 1) & U32)) == avg:
            break
        i += 1
    unit, thresh = BYTE_UNITS[i]
    text = f" {r // thresh}{unit}b/s"
    if burst == 0:
        return text, BYTE_EXPIRE * 1000
    r = (r * burst) & U64
    i = 0
    while i < len(BYTE_UNITS) - 1 and r < BYTE_UNITS[i][1]:
        i += 1
    unit, thresh = BYTE_UNITS[i]
    return text + f" {prefix}burst {r // thresh}{unit}b", BYTE_EXPIRE_BURST * 1000


def mode_text(mode: int, sep: str) -> str:
    return " " + sep.join(name for bit, name in MODE_ORDER if mode & bit)


def _truncate(name: str, size: int) -> str:
    """strncpy into char[size]: at most size-1 bytes."""
    raw = name.encode("utf-8", "surrogateescape")
    return raw[:size - 1].decode("utf-8", "surrogateescape")


@dataclass
class HashlimitData:
    """struct xt_hashlimit_mtinfo3 (name and hashlimit_cfg3)."""

    name: str = ""
    avg: int = 0          # packets: period in 1/1000000 s; bytes: cost per 16 B
    burst: int = DEFAULT_BURST
    mode: int = 0         # HASH_* | INVERT | BYTES | RATE_MATCH
    size: int = 0
    max: int = 0
    gc_interval: int = GCINTERVAL  # ms
    expire: int = 0       # ms
    interval: int = 0     # s, rate-match only
    srcmask: int = 32
    dstmask: int = 32

    @property
    def cost(self) -> int:
        """Credits one packet costs in packet mode (the kernel's rateinfo)."""
        return user2credits(self.avg)

    @property
    def credit_cap(self) -> int:
        return user2credits(self.avg * self.burst)


def htable_conflict(a: HashlimitData, b: HashlimitData) -> bool:
    """True when the kernel refuses `b` (EINVAL) because a table of the same
    name already exists for `a` with the other rate-match setting.  Tables
    live per network namespace, across all iptables tables."""
    return a.name == b.name and (a.mode & RATE_MATCH) != (b.mode & RATE_MATCH)


def first_htable_conflict(live: Iterable[HashlimitData],
                          new: Iterable[HashlimitData]) -> HashlimitData | None:
    """For a table commit: `live` are the hashlimit uses of the ruleset as it
    is before the commit (all tables, including the rules being replaced:
    the kernel checks the new table while the old one still holds its hash
    tables), `new` those of the table being committed, in rule order.
    Returns the first use the kernel refuses with EINVAL, or None."""
    seen: dict[str, int] = {}
    for data in live:
        seen.setdefault(data.name, data.mode & RATE_MATCH)
    for data in new:
        mode = seen.setdefault(data.name, data.mode & RATE_MATCH)
        if mode != data.mode & RATE_MATCH:
            return data
    return None


class Hashlimit(Match):
    """hashlimit revision 3."""

    name = "hashlimit"
    revision = 3
    # Table order of hashlimit_mt_opts; "hashlimit" is the old name of
    # --hashlimit-upto (same option id, so iptables reports it as upto).
    options = (
        Opt("hashlimit-upto", ArgType.STRING, invert=True, excl=("hashlimit-above",)),
        Opt("hashlimit-above", ArgType.STRING, invert=True, excl=("hashlimit-upto",)),
        Opt("hashlimit", ArgType.STRING, invert=True, multi=True, excl=("hashlimit-above",)),
        Opt("hashlimit-srcmask", ArgType.RAW),
        Opt("hashlimit-dstmask", ArgType.RAW),
        Opt("hashlimit-burst", ArgType.STRING),
        Opt("hashlimit-htable-size", ArgType.UINT32),
        Opt("hashlimit-htable-max", ArgType.UINT32),
        Opt("hashlimit-htable-gcinterval", ArgType.UINT32),
        Opt("hashlimit-htable-expire", ArgType.UINT32),
        Opt("hashlimit-mode", ArgType.STRING),
        Opt("hashlimit-name", ArgType.STRING, mand=True, min=1),
        Opt("hashlimit-rate-match"),
        Opt("hashlimit-rate-interval", ArgType.STRING),
    )

    def new_data(self) -> HashlimitData:
        return HashlimitData()

    def parse(self, call: Call) -> None:
        data: HashlimitData = call.data
        opt = call.opt.name
        arg: Any = call.value
        if opt == "hashlimit":
            if "hashlimit-upto" in call.xflags or "hashlimit" in call.xflags:
                raise ParameterProblem('hashlimit: option "--hashlimit-upto" can only be used once.\n')
            opt = "hashlimit-upto"
        elif opt == "hashlimit-upto" and "hashlimit" in call.xflags:
            raise ParameterProblem('hashlimit: option "--hashlimit-upto" can only be used once.\n')
        if opt in ("hashlimit-upto", "hashlimit-above"):
            if call.invert == (opt == "hashlimit-upto"):
                data.mode |= INVERT
            cost = parse_bytes(arg)
            if cost is not None:
                data.mode |= BYTES
                data.avg = cost
                call.udata["mult"] = BYTE_EXPIRE
                return
            parsed = parse_rate(arg)
            if parsed is None:
                raise ParameterProblem(f'hashlimit: Bad value for "--{opt}" option: "{arg}"')
            data.avg, call.udata["mult"] = parsed
        elif opt == "hashlimit-burst":
            data.burst = parse_burst(arg)
        elif opt == "hashlimit-mode":
            mode = parse_mode(arg)
            if mode is None:
                raise ParameterProblem(f'hashlimit: Bad value for "--hashlimit-mode" option: "{arg}"')
            data.mode |= mode
        elif opt == "hashlimit-srcmask":
            data.srcmask = parse_plen(opt, arg)
        elif opt == "hashlimit-dstmask":
            data.dstmask = parse_plen(opt, arg)
        elif opt == "hashlimit-name":
            data.name = _truncate(arg, NAME_MAX)
        elif opt == "hashlimit-htable-size":
            data.size = arg
        elif opt == "hashlimit-htable-max":
            data.max = arg
        elif opt == "hashlimit-htable-gcinterval":
            data.gc_interval = arg
        elif opt == "hashlimit-htable-expire":
            data.expire = arg
        elif opt == "hashlimit-rate-match":
            data.mode |= RATE_MATCH
        elif opt == "hashlimit-rate-interval":
            interval = c_strtol(arg) & U32
            if interval == 0 or interval > 0x7FFFFFFF:  # atoi() <= 0
                raise ParameterProblem(
                    f'hashlimit: Bad value for "--hashlimit-rate-interval" option: "{arg}"')
            data.interval = interval

    def final_check(self, data: HashlimitData, xflags: set[str], udata: dict[str, Any]) -> None:
        # The old name counts as --hashlimit-upto for the generic checks.
        if "hashlimit" in xflags:
            xflags.discard("hashlimit")
            xflags.add("hashlimit-upto")
        if not xflags & {"hashlimit-upto", "hashlimit-above"}:
            raise ParameterProblem("You have to specify --hashlimit")
        mult = udata.get("mult", 0)
        if "hashlimit-htable-expire" not in xflags:
            data.expire = (mult * 1000) & U32
        if data.mode & BYTES:
            burst = 0
            if "hashlimit-burst" in xflags:
                unit = cost_to_bytes(data.avg)
                if data.burst < unit:
                    raise ParameterProblem(f"burst cannot be smaller than {unit}b")
                burst = (data.burst & U32) // unit  # a uint32_t in iptables
                if data.burst % unit:
                    burst += 1
                if "hashlimit-htable-expire" not in xflags:
                    data.expire = BYTE_EXPIRE_BURST * 1000
            data.burst = burst
        elif data.burst > BURST_MAX:
            raise _burst_error()
        if "hashlimit-rate-match" in xflags:
            if not data.mode & BYTES:
                data.avg //= mult
            if data.interval == 0:
                data.interval = 1 if data.mode & BYTES else mult

    def check(self, data: HashlimitData, ctx: CheckContext) -> None:
        if data.name in ("", ".", "..") or "/" in data.name:
            raise KernelError(EINVAL)
        if data.gc_interval == 0 or data.expire == 0:
            raise KernelError(EINVAL)
        # The kernel writes these back into the rule.
        data.size = min(data.size, HASHLIMIT_MAX_SIZE)
        data.max = min(data.max, HASHLIMIT_MAX_SIZE)
        if data.srcmask > 32 or data.dstmask > 32:
            raise KernelError(EINVAL)
        if data.mode & RATE_MATCH:
            if data.avg == 0 or data.avg > U32:
                raise KernelError(ERANGE)
            if data.interval == 0:
                raise KernelError(EINVAL)
        elif data.mode & BYTES:
            if user2credits_byte(data.avg) == 0:
                raise KernelError(EINVAL)
        elif data.burst == 0 or user2credits(data.avg * data.burst) < user2credits(data.avg):
            raise KernelError(ERANGE)
        # An earlier hashlimit of this rule created the table already.
        for name, other in _earlier_matches(ctx.matches, data):
            if name == self.name and isinstance(other, HashlimitData) and htable_conflict(other, data):
                raise KernelError(EINVAL)

    def check_table(self, live: list[Any], new: list[Any]) -> None:
        """One hash table per name: its rate-match setting cannot change while
        another rule (or the table being replaced) holds it."""
        if first_htable_conflict(live, new) is not None:
            raise KernelError(EINVAL)

    def save(self, data: HashlimitData, ip: RuleIp) -> str:
        text = " --hashlimit-above" if data.mode & INVERT else " --hashlimit-upto"
        if data.mode & BYTES:
            rate, quantum = bytes_text(data.avg, data.burst, "--hashlimit-")
            text += rate
        else:
            rate, quantum = rate_text(data.avg)
            text += rate + f" --hashlimit-burst {data.burst}"
        if data.mode & HASH_ANY:
            text += " --hashlimit-mode" + mode_text(data.mode, ",")
        text += f" --hashlimit-name {data.name}"
        text += self._tail(data, quantum & U32, "--hashlimit-")
        return text

    def print(self, data: HashlimitData, ip: RuleIp, numeric: bool) -> str:
        text = " limit: above" if data.mode & INVERT else " limit: up to"
        if data.mode & BYTES:
            rate, quantum = bytes_text(data.avg, data.burst, "")
            text += rate
        else:
            period = data.avg
            if data.interval:
                period = (period * data.interval) & U64
            rate, quantum = rate_text(period)
            text += rate + f" burst {data.burst}"
        if data.mode & HASH_ANY:
            text += " mode" + mode_text(data.mode, "-")
        return text + self._tail(data, quantum, "")

    @staticmethod
    def _tail(data: HashlimitData, quantum: int, p: str) -> str:
        """The options save and print share, after the rate and mode."""
        text = ""
        if data.size:
            text += f" {p}htable-size {data.size}"
        if data.max:
            text += f" {p}htable-max {data.max}"
        if data.gc_interval != GCINTERVAL:
            text += f" {p}htable-gcinterval {data.gc_interval}"
        if data.expire != quantum:
            text += f" {p}htable-expire {data.expire}"
        if data.srcmask != 32:
            text += f" {p}srcmask {data.srcmask}"
        if data.dstmask != 32:
            text += f" {p}dstmask {data.dstmask}"
        if data.mode & RATE_MATCH:
            text += f" {p}rate-match"
            if data.interval != 1:
                text += f" {p}rate-interval {data.interval}"
        return text

    def compile(self, data: HashlimitData, env: Env) -> MatchFn:
        """hashlimit_mt (revision 3): see compile_hashlimit."""
        return compile_hashlimit(data, env)


def _earlier_matches(matches: Iterable[tuple[str, Any]], data: Any) -> list[tuple[str, Any]]:
    """The rule's matches before `data` (found by identity)."""
    out: list[tuple[str, Any]] = []
    for name, other in matches:
        if other is data:
            return out
        out.append((name, other))
    return []


# hashlimit tables are sized from the machine's memory when --htable-size
# is not given; above 1 GiB (the reference machine) that is 8192 buckets.
DEFAULT_HTABLE_SIZE = 8192
# proto_ports_offset: where the two 16-bit "ports" are for each protocol.
PORTS_OFFSET = {6: 0, 17: 0, 33: 0, 50: 0, 132: 0, 136: 0, 51: 4}
HASH_PORTS = HASH_SPT | HASH_DPT


def msecs_to_jiffies(ms: int) -> int:
    """Rounded up, as the kernel does for HZ dividing 1000."""
    step = 1000 // HZ
    return (ms + step - 1) // step


def _prefix_mask(bits: int) -> int:
    return (U32 << (32 - bits)) & U32 if bits else 0


def user2rate(user: int) -> int:
    return SCALE // user if user else 0


def user2rate_bytes(user: int) -> int:
    user &= U32
    r = U32 // user if user else U32
    return ((r - 1) << BYTE_SHIFT) & U64


class HashlimitEntry:
    """struct dsthash_ent's state: the token bucket, or the rate-match
    window (the kernel keeps both in one union)."""

    __slots__ = ("expires", "prev", "credit", "credit_cap", "cost",
                 "interval", "prev_window", "current_rate", "rate", "burst")

    def __init__(self) -> None:
        self.expires = self.prev = 0
        self.credit = self.credit_cap = self.cost = 0
        self.interval = self.prev_window = self.current_rate = self.rate = self.burst = 0


class HashlimitTable:
    """One named hash table (xt_hashlimit_htable), shared by every rule that
    names it and kept across ruleset swaps (env.shared).  Its configuration
    is that of the rule that created it: later rules with the same name use
    its mode, masks, rate, burst, expiry and sizes, and only their own
    rate-match, byte-mode and invert flags.  Entries are found by the masked
    addresses and ports; an expired entry stays (and is used again) until
    the garbage collector, run every gc-interval on the engine clock from
    the table's first packet, removes it; a full table (htable-max, default
    8 x size) hot-drops packets that need a new entry."""

    def __init__(self, cfg: HashlimitData) -> None:
        self.cfg = dataclasses.replace(cfg)
        size = cfg.size or DEFAULT_HTABLE_SIZE
        self.size = size
        limit = cfg.max
        if limit == 0:
            limit = 8 * size
        elif limit < size:
            limit = size
        self.max = limit
        self.expire_j = msecs_to_jiffies(cfg.expire & U32)
        self.gc_j = max(1, msecs_to_jiffies(cfg.gc_interval & U32))
        self.next_gc: int | None = None
        self.entries: dict[tuple[int, int, int, int], HashlimitEntry] = {}

    # ------------------------------------------------------------- timers
    def gc(self, now: int) -> None:
        """htable_gc runs that fell due before `now`: the last of them
        removes every entry whose expiry time it has reached."""
        nxt = self.next_gc
        if nxt is None:
            self.next_gc = now + self.gc_j
            return
        if now < nxt:
            return
        last = nxt + (now - nxt) // self.gc_j * self.gc_j
        self.next_gc = last + self.gc_j
        if self.entries:
            self.entries = {k: e for k, e in self.entries.items() if last < e.expires}

    # ------------------------------------------------------------- buckets
    def rateinfo_init(self, e: HashlimitEntry, now: int) -> None:
        cfg = self.cfg
        e.prev = now
        if cfg.mode & RATE_MATCH:
            e.prev_window = 0
            e.current_rate = 0
            if cfg.mode & BYTES:
                e.rate = user2rate_bytes(cfg.avg)
                e.burst = (cfg.burst * e.rate) & U64 if cfg.burst else e.rate
            else:
                e.rate = user2rate(cfg.avg)
                e.burst = (cfg.burst + e.rate) & U64
            e.interval = cfg.interval & U32
        elif cfg.mode & BYTES:
            e.credit = CREDITS_PER_JIFFY_BYTES * HZ
            e.cost = user2credits_byte(cfg.avg)
            e.credit_cap = cfg.burst
        else:
            e.credit = user2credits((cfg.avg * cfg.burst) & U64)
            e.cost = user2credits(cfg.avg)
            e.credit_cap = e.credit

    def rateinfo_recalc(self, e: HashlimitEntry, now: int) -> None:
        mode = self.cfg.mode
        delta = (now - e.prev) & U64
        if delta == 0:
            return
        if mode & RATE_MATCH:
            interval = ((e.interval * HZ) & U32)
            if delta < interval:
                return
            e.prev = now
            e.prev_window = int((e.current_rate * interval) & U64 > (delta * e.rate) & U64)
            e.current_rate = 0
            return
        e.prev = now
        if mode & BYTES:
            old = e.credit
            e.credit = (e.credit + CREDITS_PER_JIFFY_BYTES * delta) & U64
            cap = CREDITS_PER_JIFFY_BYTES * HZ
            if old >= e.credit:
                e.credit = cap
                return
        else:
            e.credit = (e.credit + delta * CREDITS_PER_JIFFY) & U64
            cap = e.credit_cap
        if e.credit > cap:
            e.credit = cap

    def lookup(self, key: tuple[int, int, int, int], now: int) -> HashlimitEntry:
        """dsthash_find, or a new entry (dsthash_alloc_init): the entry's
        expiry is pushed out and its bucket refilled for `now`."""
        e = self.entries.get(key)
        if e is None:
            if self.max and len(self.entries) >= self.max:
                raise Hotdrop()
            e = self.entries[key] = HashlimitEntry()
            e.expires = now + self.expire_j
            self.rateinfo_init(e, now)
        else:
            e.expires = now + self.expire_j
            self.rateinfo_recalc(e, now)
        return e

    def key_fn(self) -> Callable[[Packet], tuple[int, int, int, int]]:
        """hashlimit_init_dst for this table's mode and masks.  Ports are
        read where proto_ports_offset says, without looking at the fragment
        offset (the kernel does not); a protocol without ports hashes port
        0, a packet too short for them is a hot drop."""
        mode = self.cfg.mode
        smask = _prefix_mask(self.cfg.srcmask) if mode & HASH_SIP else 0
        dmask = _prefix_mask(self.cfg.dstmask) if mode & HASH_DIP else 0
        use_sp = bool(mode & HASH_SPT)
        use_dp = bool(mode & HASH_DPT)
        if not mode & HASH_PORTS:
            return lambda pkt: (pkt.src & smask, pkt.dst & dmask, 0, 0)

        def key(pkt: Packet) -> tuple[int, int, int, int]:
            poff = PORTS_OFFSET.get(pkt.proto)
            if poff is None:
                sport = dport = 0
            else:
                d = pkt.data
                off = pkt.ihl + poff
                if min(len(d), pkt.tot_len) < off + 4:
                    raise Hotdrop()
                sport = d[off] << 8 | d[off + 1]
                dport = d[off + 2] << 8 | d[off + 3]
            return (pkt.src & smask, pkt.dst & dmask,
                    sport if use_sp else 0, dport if use_dp else 0)

        return key


def byte_cost(length: int, e: HashlimitEntry) -> int:
    """hashlimit_byte_cost: credits for a packet of `length` bytes, and a
    refill from the burst allowance when the bucket cannot pay."""
    tmp = (((length >> BYTE_SHIFT) + 1) * e.cost) & U64
    full = CREDITS_PER_JIFFY_BYTES * HZ
    if tmp > full:
        tmp = full
    if e.credit < tmp and e.credit_cap:
        e.credit_cap -= 1
        e.credit = full
    return tmp & U32


def compile_hashlimit(data: HashlimitData, env: Env) -> MatchFn:
    """hashlimit_mt_common for one rule: its table is env.shared
    ("hashlimit", name), created with this rule's settings if it is the
    first.  Under the rate (or, in rate-match mode, within the window's
    allowance) the match is true for --hashlimit-upto and false for
    --hashlimit-above; over it, the reverse.  Byte modes cost the IP total
    length."""
    table: HashlimitTable = env.shared("hashlimit", data.name, lambda: HashlimitTable(data))
    key = table.key_fn()
    mode = data.mode
    invert = bool(mode & INVERT)
    rate_match = bool(mode & RATE_MATCH)
    by_bytes = bool(mode & BYTES)

    def match(pkt: Packet) -> bool:
        now = jiffies(pkt.time)
        table.gc(now)
        e = table.lookup(key(pkt), now)
        if rate_match:
            e.current_rate += pkt.tot_len if by_bytes else 1
            if not e.prev_window and e.current_rate <= e.burst:
                return not invert
            return invert
        cost = byte_cost(pkt.tot_len, e) if by_bytes else e.cost
        if e.credit >= cost:
            e.credit -= cost
            return not invert
        return invert

    return match


EXTENSIONS = [Hashlimit()]
