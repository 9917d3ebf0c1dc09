"""owner: match the socket owner of locally generated packets (revision 1,
struct xt_owner_match_info).  The kernel allows it in OUTPUT and
POSTROUTING only, and refuses reversed uid/gid ranges."""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.engine.api import Env, MatchFn
from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Match, Opt, RuleIp
from pyfw.ext.types import strtoul_end

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# match / invert bits (XT_OWNER_*)
OWNER_UID = 1 << 0
OWNER_GID = 1 << 1
OWNER_SOCKET = 1 << 2
OWNER_SUPPL_GROUPS = 1 << 3

_ID_MAX = 0xFFFFFFFE  # (uid_t)-1 is reserved


@dataclass
class OwnerInfo:
    uid_min: int = 0
    uid_max: int = 0
    gid_min: int = 0
    gid_max: int = 0
    match: int = 0
    invert: int = 0


def _bad(opt: str, arg: str) -> ParameterProblem:
    return ParameterProblem(f'owner: Bad value for "{opt}" option: "{arg}"')


def parse_id_range(arg: str, opt: str) -> tuple[int, int]:
    """owner_parse_range: "N", "N-M" or "N:M", each 0..2**32-2."""
    low, rest = strtoul_end(arg, 0, _ID_MAX)
    if low is None:
        raise _bad(opt, arg)
    high = low
    if rest[:1] in ("-", ":"):
        high_v, rest = strtoul_end(rest[1:], 0, _ID_MAX)
        if high_v is None:
            raise _bad(opt, arg)
        high = high_v
    if rest != "":
        raise _bad(opt, arg)
    return low, high


def _user_id(arg: str) -> int | None:
    try:
        return pwd.getpwnam(arg).pw_uid
    except (KeyError, ValueError, UnicodeError):
        return None


def _group_id(arg: str) -> int | None:
    try:
        return grp.getgrnam(arg).gr_gid
    except (KeyError, ValueError, UnicodeError):
        return None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError, ValueError):
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError, ValueError):
        return None


class Owner(Match):
    name = "owner"
    revision = 1
    hooks = frozenset({"OUTPUT", "POSTROUTING"})
    options = (
        Opt("uid-owner", ArgType.STRING, invert=True),
        Opt("gid-owner", ArgType.STRING, invert=True),
        Opt("socket-exists", ArgType.NONE, invert=True),
        Opt("suppl-groups", ArgType.NONE),
    )

    def new_data(self) -> OwnerInfo:
        return OwnerInfo()

    def parse(self, call: Call) -> None:
        d: OwnerInfo = call.data
        name = call.opt.name
        arg = call.arg if call.arg is not None else ""
        if name == "uid-owner":
            uid = _user_id(arg)
            low, high = (uid, uid) if uid is not None else parse_id_range(arg, "--uid-owner")
            d.uid_min, d.uid_max = low, high
            flag = OWNER_UID
        elif name == "gid-owner":
            gid = _group_id(arg)
            low, high = (gid, gid) if gid is not None else parse_id_range(arg, "--gid-owner")
            d.gid_min, d.gid_max = low, high
            flag = OWNER_GID
        elif name == "socket-exists":
            flag = OWNER_SOCKET
        else:
            if not d.match & OWNER_GID:
                raise _bad("--suppl-groups", "you need to use --gid-owner first")
            d.match |= OWNER_SUPPL_GROUPS
            return
        if call.invert:
            d.invert |= flag
        d.match |= flag

    def final_check(self, data: OwnerInfo, xflags: set[str], udata: dict[str, object]) -> None:
        if not xflags:
            raise ParameterProblem(
                "owner: At least one of --uid-owner, --gid-owner or --socket-exists is required")

    def check(self, data: OwnerInfo, ctx: CheckContext) -> None:
        """owner_check: valid, ordered uid and gid ranges."""
        if data.match & OWNER_UID and data.uid_max < data.uid_min:
            raise KernelError(EINVAL)
        if data.match & OWNER_GID and data.gid_max < data.gid_min:
            raise KernelError(EINVAL)

    def _items(self, d: OwnerInfo, labels: tuple[str, str, str, str], numeric: bool) -> str:
        out = ""
        for flag, label in zip((OWNER_SOCKET, OWNER_UID, OWNER_GID, OWNER_SUPPL_GROUPS), labels):
            if not d.match & flag:
                continue
            if d.invert & flag:
                out += " !"
            out += " " + label
            if flag in (OWNER_UID, OWNER_GID):
                low, high = (d.uid_min, d.uid_max) if flag == OWNER_UID else (d.gid_min, d.gid_max)
                if low != high:
                    out += f" {low}-{high}"
                    continue
                if not numeric:
                    name = _user_name(low) if flag == OWNER_UID else _group_name(low)
                    if name is not None:
                        out += " " + name
                        continue
                out += f" {low}"
        return out

    def save(self, data: OwnerInfo, ip: RuleIp) -> str:
        return self._items(data, ("--socket-exists", "--uid-owner", "--gid-owner", "--suppl-groups"), True)

    def print(self, data: OwnerInfo, ip: RuleIp, numeric: bool) -> str:
        labels = ("owner socket exists", "owner UID match", "owner GID match", "incl. suppl. groups")
        return self._items(data, labels, numeric)

    def compile(self, data: OwnerInfo, env: Env) -> MatchFn:
        """owner_mt: see compile_owner."""
        return compile_owner(data)


def compile_owner(d: OwnerInfo) -> MatchFn:
    """owner_mt.  Three kinds of packet:

    - a user socket (pkt.uid / pkt.gid set): the fsuid/fsgid ranges, and
      with --suppl-groups the supplementary groups in
      pkt.extra["groups"] (an iterable of gids, absent means none);
    - a socket of the kernel's own, without a file (pkt.uid None,
      pkt.extra["kernel_sk"] true: the stack's ICMP replies and errors and
      TCP resets): --socket-exists holds, every uid/gid test fails unless
      inverted;
    - no socket (forwarded, or pkt.uid None otherwise): only a rule whose
      every test is inverted matches (the kernel's `(match ^ invert) == 0`,
      where --suppl-groups counts as a test that cannot be inverted).
    """
    match_bits, invert_bits = d.match, d.invert
    uid_min, uid_max, gid_min, gid_max = d.uid_min, d.uid_max, d.gid_min, d.gid_max
    no_socket = (match_bits ^ invert_bits) == 0
    no_file = ((match_bits ^ invert_bits) & (OWNER_UID | OWNER_GID)) == 0
    want_socket_absent = bool(match_bits & invert_bits & OWNER_SOCKET)
    test_uid = bool(match_bits & OWNER_UID)
    uid_inv = bool(invert_bits & OWNER_UID)
    test_gid = bool(match_bits & OWNER_GID)
    gid_inv = bool(invert_bits & OWNER_GID)
    suppl = bool(match_bits & OWNER_SUPPL_GROUPS)

    def match(pkt: Packet) -> bool:
        uid = pkt.uid
        extra = pkt.extra
        if uid is None:
            if extra is None or not extra.get("kernel_sk"):
                return no_socket
            if want_socket_absent:
                return False
            return no_file
        if want_socket_absent:
            return False
        if test_uid and (uid_min <= uid <= uid_max) == uid_inv:
            return False
        if test_gid:
            gid = pkt.gid
            found = gid is not None and gid_min <= gid <= gid_max
            if not found and suppl and extra is not None:
                found = any(gid_min <= g <= gid_max for g in extra.get("groups", ()))
            if found == gid_inv:
                return False
        return True

    return match


EXTENSIONS = [Owner()]
