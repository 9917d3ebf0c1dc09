"""NFQUEUE: pass the packet to a userspace queue (or spread flows over a
range of queues).

Revision 3 (struct xt_NFQ_info_v3), the one iptables 1.8.9 uses here.
1.8.9 does not apply the 65534 limit to --queue-balance, so "0:65535" and
":" parse and the kernel refuses them (the queue count wraps to 0); "4:"
becomes 4:65535.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target
from pyfw.ext.match_limit import ERANGE

FLAG_BYPASS = 0x01
FLAG_CPU_FANOUT = 0x02
FLAG_MASK = 0x03


@dataclass
class NfqueueData:
    queuenum: int = 0
    queues_total: int = 1
    flags: int = 0


class Nfqueue(Target):
    name = "NFQUEUE"
    revision = 3
    options = (
        Opt("queue-num", ArgType.UINT16, excl=("queue-balance",)),
        Opt("queue-balance", ArgType.UINT16RC, max=0xFFFF - 1, excl=("queue-num",)),
        Opt("queue-bypass"),
        Opt("queue-cpu-fanout", also=("queue-balance",)),
    )

    def new_data(self) -> NfqueueData:
        return NfqueueData()

    def parse(self, call: Call) -> None:
        data: NfqueueData = call.data
        opt = call.opt.name
        if opt == "queue-num":
            data.queuenum = call.value
        elif opt == "queue-balance":
            r = call.value
            if len(r) != 2:
                raise ParameterProblem(f'Bad range "{call.arg}"')
            if r[0] >= r[1]:
                raise ParameterProblem(f"{r[0]} should be less than {r[1]}")
            data.queuenum = r[0]
            data.queues_total = (r[1] - r[0] + 1) & 0xFFFF
        elif opt == "queue-bypass":
            data.flags |= FLAG_BYPASS
        elif opt == "queue-cpu-fanout":
            data.flags |= FLAG_CPU_FANOUT

    def check(self, data: NfqueueData, ctx: CheckContext) -> None:
        if data.queues_total == 0:
            raise KernelError(EINVAL)
        if data.queues_total - 1 + data.queuenum > 0xFFFF:
            raise KernelError(ERANGE)
        if data.flags & ~FLAG_MASK:
            raise KernelError(EINVAL)

    def _text(self, data: NfqueueData, save: bool) -> str:
        if data.queues_total > 1:
            last = data.queues_total + data.queuenum - 1
            text = (f" --queue-balance {data.queuenum}:{last}" if save
                    else f" NFQUEUE balance {data.queuenum}:{last}")
        else:
            text = f" --queue-num {data.queuenum}" if save else f" NFQUEUE num {data.queuenum}"
        if data.flags & FLAG_BYPASS:
            text += " --queue-bypass" if save else " bypass"
        if data.flags & FLAG_CPU_FANOUT:
            text += " --queue-cpu-fanout" if save else " cpu-fanout"
        return text

    def save(self, data: NfqueueData, ip: RuleIp) -> str:
        return self._text(data, True)

    def print(self, data: NfqueueData, ip: RuleIp, numeric: bool) -> str:
        return self._text(data, False)


EXTENSIONS = [Nfqueue()]
