"""NFQUEUE: pass the packet to a userspace queue (or spread flows over a
range of queues).

Revision 3 (struct xt_NFQ_info_v3), the one iptables 1.8.9 uses here.
1.8.9 does not apply the 65534 limit to --queue-balance, so "0:65535" and
":" parse and the kernel refuses them (the queue count wraps to 0); "4:"
becomes 4:65535.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfw.errors import EINVAL, KernelError, ParameterProblem
from pyfw.ext.base import ArgType, Call, CheckContext, Opt, RuleIp, Target
from pyfw.ext.match_limit import ERANGE

if TYPE_CHECKING:
    from pyfw.engine.api import Env, TargetFn
    from pyfw.engine.packet import Packet


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

    def compile(self, data: NfqueueData, env: Env) -> TargetFn:
        """nfqueue_tg_v3: NF_QUEUE with the queue number in the high bits;
        a balanced range picks the queue by nfqueue_hash (both directions of
        a flow land on the same queue), cpu-fanout by the CPU (pyfw runs on
        one: CPU 0); --queue-bypass adds the bypass flag."""
        from pyfw.engine.api import NF_QUEUE, NF_QUEUE_SHIFT, NF_VERDICT_FLAG_QUEUE_BYPASS

        first, total = data.queuenum, data.queues_total
        extra = NF_VERDICT_FLAG_QUEUE_BYPASS if data.flags & FLAG_BYPASS else 0
        fixed = NF_QUEUE | (first << NF_QUEUE_SHIFT) | extra
        if total <= 1 or data.flags & FLAG_CPU_FANOUT:
            return lambda pkt: fixed
        seed = env.shared("NFQUEUE", "jhash_initval", lambda: [0])

        def target(pkt: Packet) -> int:
            queue = first + nfqueue_hash(pkt.data, total, seed[0])
            return NF_QUEUE | (queue << NF_QUEUE_SHIFT) | extra

        return target


def nfqueue_hash(ip: bytes | bytearray, total: int, initval: int) -> int:
    """hash_v4 + reciprocal_scale: the offset into the queue range.  The
    addresses are the raw header words as a little-endian CPU loads them
    (the kernel's __force u32), the smaller first so that both directions
    hash alike.  The kernel seeds the hash at random once per boot; pyfw
    uses the seed kept in Env.shared("NFQUEUE", "jhash_initval") (0)."""
    from pyfw.engine.jhash import jhash_3words

    s = int.from_bytes(ip[12:16], "little")
    d = int.from_bytes(ip[16:20], "little")
    if s < d:
        h = jhash_3words(s, d, ip[9], initval)
    else:
        h = jhash_3words(d, s, ip[9], initval)
    return (h * total) >> 32


EXTENSIONS = [Nfqueue()]
