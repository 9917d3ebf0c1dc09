"""LOG: write a line about the packet to the kernel log.

struct xt_log_info: a syslog level (default warning), flag bits and a
prefix of at most 29 bytes (iptables cuts longer ones silently).  -S prints
the level as a number, -L as syslog's first name for it (or numbers with -n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfw.errors import ParameterProblem
from pyfw.ext.base import ArgType, Call, Opt, RuleIp, Target
from pyfw.ext.types import save_string

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet

TCPSEQ = 0x01
TCPOPT = 0x02
IPOPT = 0x04
UID = 0x08
MACDECODE = 0x20
LOG_MASK = 0x2F

DEFAULT_LEVEL = 4  # LOG_WARNING
PREFIX_SIZE = 30

# Option name -> flag bit, in the order -S and -L print them.
FLAG_OPTIONS = (
    ("log-tcp-sequence", TCPSEQ, "tcp-sequence"),
    ("log-tcp-options", TCPOPT, "tcp-options"),
    ("log-ip-options", IPOPT, "ip-options"),
    ("log-uid", UID, "uid"),
    ("log-macdecode", MACDECODE, "macdecode"),
)

# glibc's prioritynames: the first name for each level.
LEVEL_NAMES = {0: "emerg", 1: "alert", 2: "crit", 3: "err", 4: "warn", 5: "notice",
               6: "info", 7: "debug"}


def truncate_prefix(prefix: str, size: int) -> str:
    """strncpy into char[size]: at most size-1 bytes are kept."""
    raw = prefix.encode("utf-8", "surrogateescape")[:size - 1]
    return raw.decode("utf-8", "surrogateescape")


@dataclass
class LogData:
    level: int = DEFAULT_LEVEL
    logflags: int = 0
    prefix: str = ""


class Log(Target):
    name = "LOG"
    options = (
        Opt("log-level", ArgType.SYSLOGLEVEL),
        Opt("log-prefix", ArgType.STRING, min=1),
        *(Opt(name) for name, _, _ in FLAG_OPTIONS),
    )

    def new_data(self) -> LogData:
        return LogData()

    def parse(self, call: Call) -> None:
        data: LogData = call.data
        opt = call.opt.name
        if opt == "log-level":
            data.level = call.value
        elif opt == "log-prefix":
            if "\n" in call.value:
                raise ParameterProblem("Newlines not allowed in --log-prefix")
            data.prefix = truncate_prefix(call.value, PREFIX_SIZE)
        else:
            for name, bit, _ in FLAG_OPTIONS:
                if name == opt:
                    data.logflags |= bit

    def save(self, data: LogData, ip: RuleIp) -> str:
        text = ""
        if data.prefix:
            text += " --log-prefix" + save_string(data.prefix)
        if data.level != DEFAULT_LEVEL:
            text += f" --log-level {data.level}"
        for name, bit, _ in FLAG_OPTIONS:
            if data.logflags & bit:
                text += f" --{name}"
        return text

    def print(self, data: LogData, ip: RuleIp, numeric: bool) -> str:
        text = " LOG"
        if numeric:
            text += f" flags {data.logflags} level {data.level}"
        else:
            name = LEVEL_NAMES.get(data.level)
            text += f" level {name}" if name else f" UNKNOWN level {data.level}"
            for _, bit, word in FLAG_OPTIONS:
                if data.logflags & bit:
                    text += f" {word}"
            if data.logflags & ~LOG_MASK:
                text += " unknown-flags"
        if data.prefix:
            text += f' prefix "{data.prefix}"'
        return text

    def compile(self, data: LogData, env: Env) -> TargetFn:
        """log_tg: one kernel log line per packet, then the next rule."""
        from pyfw.engine.api import XT_CONTINUE
        from pyfw.engine.logtext import format_packet

        prefix, flags, level = data.prefix, data.logflags, data.level
        log_level: Any = getattr(env, "log_level", None)  # a live daemon's syslog wants the level
        if log_level is not None:
            def target(pkt: Packet) -> int:
                log_level(format_packet(pkt, prefix, flags), level)
                return XT_CONTINUE

            return target
        log: Any = env.log

        def target_text(pkt: Packet) -> int:
            log(format_packet(pkt, prefix, flags))
            return XT_CONTINUE

        return target_text


EXTENSIONS = [Log()]
