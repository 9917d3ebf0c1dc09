"""The gateway's event loop: epoll over the TAP devices and the control
socket, many frames read per wakeup, each through the engine and what it
emits written to the TAP of its interface; the timers (neighbour cache, the
stack's retransmissions, held fault frames, conntrack's gc) run on the
monotonic clock that is also the engine's."""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Any

from pyfw.engine.engine import Emitted
from pyfw.tap import vnet
from pyfw.tap.device import TapDevice
from pyfw.tap.engine import TapEngine, for_host
from pyfw.tap.faults import Faults

BATCH = 64          # frames read from one device per wakeup before the others get a turn
IDLE_TICK = 1.0     # the loop wakes at least this often (signals, conntrack gc)


class IfStats:
    __slots__ = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "tx_errors", "otherhost")

    def __init__(self) -> None:
        self.rx_frames = self.rx_bytes = self.tx_frames = self.tx_bytes = self.tx_errors = self.otherhost = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class Gateway:
    """Moves frames between `devices` (interface name -> TapDevice) and
    `engine`."""

    def __init__(self, engine: TapEngine, devices: dict[str, TapDevice], faults: Faults | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.devices = devices
        self.faults = faults if faults is not None and faults.active else None
        self.clock = clock
        self.started = clock()
        self.ifstats = {name: IfStats() for name in devices}
        self.macs = {name: engine.host.mac(name) for name in devices}
        self.extra: list[tuple[Any, Callable[[], None]]] = []  # (fileobj, on_ready)
        self.stats: dict[str, int] = {}
        self.sink: Any = None  # pyfw.daemon.logsink.LogSink for LOG/NFLOG lines
        self.sel = selectors.DefaultSelector()
        for name, dev in devices.items():
            self.sel.register(dev.fileno(), selectors.EVENT_READ, name)

    def add_reader(self, fileobj: Any, on_ready: Callable[[], None]) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, on_ready)

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # ------------------------------------------------------------ output
    def emit(self, emitted: list[Emitted]) -> None:
        for em in emitted:
            dev = self.devices.get(em.iface)
            if dev is None:
                self._count("tx_no_device")
                continue
            st = self.ifstats[em.iface]
            if dev.write(getattr(em, "hdr", vnet.PLAIN), em.frame):
                st.tx_frames += 1
                st.tx_bytes += len(em.frame)
            else:
                st.tx_errors += 1

    # ------------------------------------------------------------ input
    def frame(self, iface: str, buf: bytes, now: float) -> None:
        """One read from the device of `iface` (virtio header first when offloading)."""
        dev = self.devices[iface]
        if dev.offload:
            if len(buf) < vnet.HDR_LEN + 14:
                self._count("rx_short")
                return
            hdr = vnet.parse(buf)
            frame = buf[vnet.HDR_LEN:]
        else:
            hdr, frame = None, buf
        st = self.ifstats[iface]
        st.rx_frames += 1
        st.rx_bytes += len(frame)
        if len(frame) < 14 or not for_host(frame, self.macs[iface]):
            st.otherhost += 1
            return
        eng = self.engine
        try:
            res = eng.receive_frame(frame, iface, now, hdr)
            if res.emitted:
                self.emit(res.emitted)
            if eng.stack_pending:
                eng.stack_pending = False
                self.emit(eng.stack_output(now))
        except Exception:  # a bad frame is counted, never the end of the loop
            self._count("adapter_error")

    def drain(self, iface: str) -> None:
        dev = self.devices[iface]
        faults = self.faults
        eng = self.engine
        for _ in range(BATCH):
            buf = dev.read()
            if buf is None:
                break
            now = self.clock()
            if faults is None:
                self.frame(iface, buf, now)
            else:
                for i, b in faults.ingress(iface, buf, now):
                    self.frame(i, b, now)
        if eng.logs or eng.log_pending:
            self.log_lines()

    def log_lines(self) -> None:
        """LOG and NFLOG lines to the sink (dropped without one: never kept)."""
        lines = self.engine.take_lines()
        if self.sink is not None:
            now = self.clock()
            for level, text in lines:
                self.sink.packet(text, level, now)

    # ------------------------------------------------------------ timers
    def timers(self, now: float) -> None:
        eng = self.engine
        deadline = eng.neigh.next_deadline()
        if deadline is not None and deadline <= now:
            try:
                self.emit(eng.neigh_timers(now))
            except Exception:
                self._count("timer_error")
        deadline = eng.stack.next_deadline()
        if eng.stack_pending or (deadline is not None and deadline <= now):
            eng.stack_pending = False
            self.emit(eng.stack_output(now))
        if self.faults is not None:
            for i, b in self.faults.due(now):
                self.frame(i, b, now)
        if eng.logs or eng.log_pending:
            self.log_lines()

    def _timeout(self, now: float) -> float:
        nxt = now + IDLE_TICK
        for d in (self.engine.neigh.next_deadline(), self.engine.stack.next_deadline(),
                  self.faults.next_deadline() if self.faults is not None else None):
            if d is not None and d < nxt:
                nxt = d
        return max(0.0, nxt - now)

    def start(self) -> None:
        """Gratuitous ARP on every interface."""
        self.emit(self.engine.announce())

    def run_once(self) -> None:
        now = self.clock()
        try:
            events = self.sel.select(self._timeout(now))
        except InterruptedError:
            events = []
        for key, _ in events:
            if isinstance(key.data, str):
                self.drain(key.data)
            else:
                key.data()
        self.timers(self.clock())

    def run(self, stopping: Callable[[], bool], between: Callable[[], None] | None = None) -> None:
        self.start()
        while not stopping():
            self.run_once()
            if between is not None:
                between()

    def close(self) -> None:
        self.sel.close()

    # ------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Counters, connection table and interfaces (the status page's data);
        the rules with their packet and byte counters as pyfw-save -c prints them."""
        eng = self.engine
        now = self.clock()
        host = eng.host
        ifaces = []
        for name, dev in self.devices.items():
            iface = host.interfaces[name]
            ifaces.append({"name": name, "tap": dev.name, "mac": iface.mac_text, "mtu": iface.mtu,
                           "bridge": iface.bridge, "addresses": [str(a) for a in iface.ifaddrs],
                           **self.ifstats[name].as_dict()})
        from pyfw.engine.host import ip_str

        neigh = [{"ip": ip_str(n.ip), "dev": n.dev, "state": n.state,
                  "mac": ":".join(f"{b:02x}" for b in n.mac)} for n in eng.neigh]
        counters = {**self.stats, **eng.stats, **{f"neigh_{k}": v for k, v in eng.neigh.stats.items()}}
        if self.faults is not None:
            counters.update(self.faults.stats)
        out = {"host": host.name, "uptime": round(now - self.started, 3), "interfaces": ifaces,
               "counters": counters, "conntrack": eng.ct.format(now).splitlines(),
               "conntrack_stats": eng.ct.stats(), "neighbours": neigh}
        from pyfw.ruleset.format import save_table

        out["rules"] = [line for t in eng.ruleset.tables.values()
                        for line in save_table(t, True).splitlines() if not line.startswith("#")]
        stack = eng.stack
        if hasattr(stack, "stats"):
            out["tcp"] = stack.stats()
        if hasattr(stack, "sockets"):
            out["sockets"] = stack.sockets()
        return out
