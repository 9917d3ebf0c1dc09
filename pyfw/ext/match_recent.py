"""recent: remember addresses in a named list and match on them.

Revision 1 (with --mask), struct xt_recent_mtinfo_v1.  Exactly one of
--set/--rcheck/--update/--remove is needed (iptables says so); the kernel
refuses --seconds/--hitcount with --set/--remove, --reap without --seconds,
a hit count of 65536 or more, and bad list names ("", ".", "..", "a/b").
-S prints seconds and hit count as C's %d does, so large values go negative.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.match_limit import HZ, jiffies
from pyfw.ext.types import ip_to_str

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

CHECK = 1 << 0
SET = 1 << 1
UPDATE = 1 << 2
REMOVE = 1 << 3
TTL = 1 << 4
REAP = 1 << 5
MODIFIERS = TTL | REAP
COMMANDS = SET | CHECK | UPDATE | REMOVE

SOURCE = 0
DEST = 1

NAME_LEN = 200
MAX_NSTAMPS = 65536  # the kernel's XT_RECENT_MAX_NSTAMPS on the reference machine

_OPS = ("set", "rcheck", "update", "remove")
_OP_BITS = {"set": SET, "rcheck": CHECK, "update": UPDATE, "remove": REMOVE}


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass
class RecentData:
    seconds: int = 0
    hit_count: int = 0
    check_set: int = 0
    invert: bool = False
    name: str = "DEFAULT"
    side: int = SOURCE
    mask: int = 0xFFFFFFFF


class Recent(Match):
    name = "recent"
    revision = 1
    options = (
        Opt("set", invert=True, excl=_OPS),
        Opt("rcheck", invert=True, excl=_OPS),
        Opt("update", invert=True, excl=_OPS),
        Opt("remove", invert=True, excl=_OPS),
        Opt("seconds", ArgType.UINT32, min=1),
        Opt("reap", also=("seconds",)),
        Opt("hitcount", ArgType.UINT32),
        Opt("rttl", excl=("set", "remove")),
        Opt("name", ArgType.STRING),
        Opt("rsource"),
        Opt("rdest"),
        Opt("mask", ArgType.HOST),
    )

    def new_data(self) -> RecentData:
        return RecentData()

    def parse(self, call: Call) -> None:
        data: RecentData = call.data
        opt = call.opt.name
        if opt in _OP_BITS:
            data.check_set |= _OP_BITS[opt]
            if call.invert:
                data.invert = True
        elif opt == "seconds":
            data.seconds = call.value
        elif opt == "reap":
            data.check_set |= REAP
        elif opt == "hitcount":
            data.hit_count = call.value
        elif opt == "rttl":
            data.check_set |= TTL
        elif opt == "name":
            raw = call.value.encode("utf-8", "surrogateescape")[:NAME_LEN - 1]
            data.name = raw.decode("utf-8", "surrogateescape")
        elif opt == "rsource":
            data.side = SOURCE
        elif opt == "rdest":
            data.side = DEST
        elif opt == "mask":
            data.mask = call.value

    def final_check(self, data: RecentData, xflags: set[str], udata: dict[str, Any]) -> None:
        if not xflags & set(_OPS):
            raise ParameterProblem(
                "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'")

    def check(self, data: RecentData, ctx: CheckContext) -> None:
        if (data.check_set & COMMANDS).bit_count() != 1:
            raise KernelError(EINVAL)
        if data.check_set & (SET | REMOVE) and (
                data.seconds or data.hit_count or data.check_set & MODIFIERS):
            raise KernelError(EINVAL)
        if data.check_set & REAP and not data.seconds:
            raise KernelError(EINVAL)
        if data.hit_count >= MAX_NSTAMPS:
            raise KernelError(EINVAL)
        if data.name in ("", ".", "..") or "/" in data.name:
            raise KernelError(EINVAL)

    def _words(self, data: RecentData, save: bool) -> list[str]:
        out = []
        if data.invert:
            out.append("!")
        if save:
            out += [f"--{op}" for op in _OPS if data.check_set & _OP_BITS[op]]
        else:
            out.append("recent:")
            out += [w for w, bit in (("SET", SET), ("CHECK", CHECK), ("UPDATE", UPDATE),
                                     ("REMOVE", REMOVE)) if data.check_set & bit]
        if data.seconds:
            out.append(f"--seconds {_signed32(data.seconds)}" if save
                       else f"seconds: {_signed32(data.seconds)}")
        if data.check_set & REAP:
            out.append("--reap" if save else "reap")
        if data.hit_count:
            out.append(f"--hitcount {_signed32(data.hit_count)}" if save
                       else f"hit_count: {_signed32(data.hit_count)}")
        if data.check_set & TTL:
            out.append("--rttl" if save else "TTL-Match")
        side = "--rsource" if data.side == SOURCE else "--rdest" if data.side == DEST else ""
        if save:
            out += [f"--name {data.name}", f"--mask {ip_to_str(data.mask)}"]
            if side:
                out.append(side)
        else:
            out.append(f"name: {data.name}")
            if side:
                out.append("side: source" if data.side == SOURCE else "side: dest")
            out.append(f"mask: {ip_to_str(data.mask)}")
        return out

    def save(self, data: RecentData, ip: RuleIp) -> str:
        return "".join(" " + w for w in self._words(data, True))

    def print(self, data: RecentData, ip: RuleIp, numeric: bool) -> str:
        return "".join(" " + w for w in self._words(data, False))

    def compile(self, data: RecentData, env: Env) -> MatchFn:
        """recent_mt: see compile_recent."""
        return compile_recent(data, env)


# xt_recent module parameters (the reference machine's defaults).
IP_LIST_TOT = 100      # addresses remembered per list
IP_PKT_LIST_TOT = 0    # (obsolete) time stamps per address; 0: from --hitcount


def nstamps_mask(hit_count: int) -> int:
    """recent_mt_check: time stamps kept per address, minus one (a power of
    two): enough for --hitcount, else 32."""
    if IP_PKT_LIST_TOT and hit_count < IP_PKT_LIST_TOT:
        n = IP_PKT_LIST_TOT
    elif hit_count:
        n = hit_count
    else:
        return 31
    return (1 << (n - 1).bit_length()) - 1


class RecentEntry:
    """struct recent_entry: the last time stamps of one address (a ring of
    nstamps_max_mask + 1 jiffy values), the TTL it was last seen with."""

    __slots__ = ("addr", "ttl", "stamps", "index", "nstamps")

    def __init__(self, addr: int, ttl: int, now: int, size: int) -> None:
        self.addr = addr
        self.ttl = ttl
        self.stamps = [0] * size
        self.stamps[0] = now
        self.index = 1
        self.nstamps = 1

    def last_seen(self, mask: int) -> int:
        return self.stamps[(self.index - 1) & mask]


class RecentTable:
    """One named list (struct recent_table), shared by every rule naming it
    and kept across ruleset swaps (env.shared("recent", name)).  The
    address mask is the creating rule's; a later rule that needs more time
    stamps per address (a larger --hitcount) flushes the list and grows it.
    At most IP_LIST_TOT addresses: a new one evicts the least recently
    updated.  `entries` is in that LRU order (oldest first)."""

    def __init__(self, name: str, mask: int, nstamps_max_mask: int) -> None:
        self.name = name
        self.mask = mask
        self.nstamps_max_mask = nstamps_max_mask
        self.entries: OrderedDict[int, RecentEntry] = OrderedDict()

    def flush(self) -> None:
        self.entries.clear()

    def lookup(self, addr: int, ttl: int) -> RecentEntry | None:
        e = self.entries.get(addr)
        if e is not None and (ttl == e.ttl or ttl == 0 or e.ttl == 0):
            return e
        return None

    def add(self, addr: int, ttl: int, now: int) -> RecentEntry:
        if len(self.entries) >= IP_LIST_TOT:
            self.entries.popitem(last=False)
        e = self.entries[addr] = RecentEntry(addr, ttl, now, self.nstamps_max_mask + 1)
        return e

    def update(self, e: RecentEntry, now: int) -> None:
        e.index &= self.nstamps_max_mask
        e.stamps[e.index] = now
        e.index += 1
        if e.index > e.nstamps:
            e.nstamps = e.index
        self.entries.move_to_end(e.addr)

    def remove(self, e: RecentEntry) -> None:
        self.entries.pop(e.addr, None)

    def reap(self, time: int, working: RecentEntry, update: bool) -> None:
        """recent_entry_reap: drop the least recently updated address if
        its newest stamp is older than `time` (unless it is the one this
        --update is about to refresh)."""
        if not self.entries:
            return
        oldest = next(iter(self.entries.values()))
        if oldest is working and update:
            return
        if time > oldest.stamps[oldest.index - 1]:
            self.remove(oldest)


def compile_recent(data: RecentData, env: Env) -> MatchFn:
    """recent_mt for one rule.  The address (source, or destination with
    --rdest) is masked with the list's mask.  --set adds or refreshes it and
    is true; --remove is true if it was there; --rcheck/--update are true if
    it is there with at least --hitcount stamps within --seconds (any stamp
    when not given) and, with --rttl, the same TTL; --update then records
    this packet too, --reap drops the oldest address when stale.  `!`
    inverts (and, as in the kernel, also decides whether --update records).
    In FORWARD / POSTROUTING (an out interface, no local socket) the TTL is
    taken as it was before the forwarding decrement."""
    want = nstamps_mask(data.hit_count)
    table: RecentTable = env.shared("recent", data.name,
                                    lambda: RecentTable(data.name, data.mask, want))
    if want > table.nstamps_max_mask:
        table.flush()
        table.nstamps_max_mask = want
    check_set = data.check_set
    do_set = bool(check_set & SET)
    do_remove = bool(check_set & REMOVE)
    do_check = bool(check_set & (CHECK | UPDATE))
    do_update = bool(check_set & UPDATE)
    do_reap = bool(check_set & REAP)
    use_ttl = bool(check_set & TTL)
    dest = data.side == DEST
    invert = data.invert
    seconds = data.seconds
    window = (seconds * HZ) & 0xFFFFFFFF
    hit_count = data.hit_count

    def match(pkt: Packet) -> bool:
        ret = invert
        now = jiffies(pkt.time)
        addr = (pkt.dst if dest else pkt.src) & table.mask
        ttl = pkt.ttl
        if pkt.outdev and not pkt.local:
            ttl = (ttl + 1) & 0xFF
        e = table.lookup(addr, ttl if use_ttl else 0)
        if e is None:
            if not do_set:
                return ret
            table.add(addr, ttl, now)
            return not ret
        if do_set:
            ret = not ret
        elif do_remove:
            table.remove(e)
            return not ret
        elif do_check:
            time = now - window
            hits = 0
            for stamp in e.stamps[:e.nstamps]:
                if seconds and time > stamp:
                    continue
                hits += 1
                if not hit_count or hits >= hit_count:
                    ret = not ret
                    break
            if do_reap:
                table.reap(time, e, do_update and ret)
        if do_set or (do_update and ret):
            table.update(e, now)
            e.ttl = ttl
        return ret

    return match


EXTENSIONS = [Recent()]
