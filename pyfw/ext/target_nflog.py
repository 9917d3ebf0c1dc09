"""NFLOG: hand the packet to a netlink logging group (ulogd and friends).

struct xt_nflog_info: group, copy length (--nflog-size; --nflog-range is
the old spelling that sets the length without the "use it" flag and makes
iptables warn), queue threshold and a prefix of at most 63 bytes (longer
ones are cut silently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgType, Call, Opt, RuleIp, Target, warn
from pyfw.ext.target_log import truncate_prefix
from pyfw.ext.types import save_string

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


F_COPY_LEN = 0x1
DEFAULT_THRESHOLD = 0
PREFIX_SIZE = 64

RANGE_WARNING = ("warn: --nflog-range has never worked and is no longer supported, "
                 "please use --nflog-size instead\n")


@dataclass
class NflogData:
    len: int = 0
    group: int = 0
    threshold: int = DEFAULT_THRESHOLD
    flags: int = 0
    prefix: str = ""


class Nflog(Target):
    name = "NFLOG"
    options = (
        Opt("nflog-group", ArgType.UINT16),
        Opt("nflog-prefix", ArgType.STRING, min=1),
        Opt("nflog-range", ArgType.UINT32, excl=("nflog-size",)),
        Opt("nflog-size", ArgType.UINT32, excl=("nflog-range",)),
        Opt("nflog-threshold", ArgType.UINT16),
    )

    def new_data(self) -> NflogData:
        return NflogData()

    def parse(self, call: Call) -> None:
        data: NflogData = call.data
        opt = call.opt.name
        if opt == "nflog-group":
            data.group = call.value
        elif opt == "nflog-prefix":
            if "\n" in call.value:
                raise ParameterProblem("Newlines not allowed in --log-prefix")
            data.prefix = truncate_prefix(call.value, PREFIX_SIZE)
        elif opt in ("nflog-range", "nflog-size"):
            data.len = call.value
        elif opt == "nflog-threshold":
            data.threshold = call.value

    def final_check(self, data: NflogData, xflags: set[str], udata: dict[str, Any]) -> None:
        if "nflog-range" in xflags:
            # iptables warns on stderr and goes on (before any excl error).
            warn(RANGE_WARNING)
        if "nflog-size" in xflags:
            data.flags |= F_COPY_LEN

    def _text(self, data: NflogData, p: str) -> str:
        text = ""
        if data.prefix:
            text += f" {p}nflog-prefix" + save_string(data.prefix)
        if data.group:
            text += f" {p}nflog-group {data.group}"
        if data.flags & F_COPY_LEN:
            text += f" {p}nflog-size {data.len}"
        elif data.len:
            text += f" {p}nflog-range {data.len}"
        if data.threshold != DEFAULT_THRESHOLD:
            text += f" {p}nflog-threshold {data.threshold}"
        return text

    def save(self, data: NflogData, ip: RuleIp) -> str:
        return self._text(data, "--")

    def print(self, data: NflogData, ip: RuleIp, numeric: bool) -> str:
        return self._text(data, "")

    def compile(self, data: NflogData, env: Env) -> TargetFn:
        """nflog_tg: hand the packet to the netlink log group (Env.nflog
        where the engine offers it), then the next rule."""
        from pyfw.engine.api import XT_CONTINUE

        group, prefix = data.group, data.prefix
        nflog = getattr(env, "nflog", None)

        def target(pkt: Packet) -> int:
            if nflog is not None:
                nflog(group, prefix, pkt)
            return XT_CONTINUE

        return target


EXTENSIONS = [Nflog()]
