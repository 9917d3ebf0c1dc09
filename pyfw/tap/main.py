"""`pyfw daemon --tap --host HOST.toml [--ruleset FILE] [--socket PATH]
[--status ADDR:PORT]`: create the TAP devices of HOST.toml, attach them to
their bridges, and be the gateway between them until SIGTERM.

Start-up checks everything that can fail (the ruleset, the host file, the
bridges, the status address) before the first device is made; the devices
go with their file descriptors, at stop or if the process dies.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from typing import Any

from pyfw.daemon.main import _load_ruleset, _log, _reload


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--host", metavar="HOST.toml")
    ap.add_argument("--status", metavar="ADDR:PORT")
    ap.add_argument("--cc", choices=("cubic", "reno"), default="cubic",
                    help="congestion control of the gateway's own TCP (--tap)")
    ap.add_argument("--no-offload", action="store_true",
                    help="no virtio-net header: every frame whole, checksums done by the kernel")
    ap.add_argument("--fault-seed", type=int, default=0, metavar="S")
    ap.add_argument("--loss", type=float, default=0.0, metavar="P", help="drop this share of received frames")
    ap.add_argument("--dup", type=float, default=0.0, metavar="P", help="duplicate this share")
    ap.add_argument("--reorder", type=float, default=0.0, metavar="P", help="send this share after a later one")


def _status_address(text: str, host: Any) -> tuple[int, int] | str:
    from pyfw.engine.host import ip_int

    addr, sep, port = text.rpartition(":")
    try:
        a, p = ip_int(addr), int(port)
    except (ValueError, OSError):
        return f"--status {text}: expected ADDR:PORT"
    if not sep or not 0 < p < 65536:
        return f"--status {text}: expected ADDR:PORT"
    if a and not host.is_local(a):
        return f"--status {text}: {addr} is not an address of the host"
    return a, p


class _Discard:
    """The application of a [[service]] port: takes the bytes, answers nothing."""

    def on_data(self, conn: Any, data: bytes) -> None:
        return None

    def on_close(self, conn: Any) -> None:
        conn.close()


def _make_stack(host: Any, status: tuple[int, int] | None, get_status: Any, cc: str = "cubic") -> Any:
    """pyfw.stack's Stack with the status page and the host's [[service]]
    ports listening, or None when pyfw.stack is not there."""
    try:
        from pyfw.stack import Stack
        from pyfw.stack.http import status_app
    except ImportError:
        if status is not None:
            _log("--status: pyfw.stack is not available, no status page")
        return None

    def mtu_for(dst: int) -> int:
        rr = host.output_route(dst)
        return int(host.mtu(rr.dev)) if rr.ok and rr.dev != "lo" else 1500

    stack = Stack(cc=cc, mtu_for=mtu_for)
    for svc in host.services:
        addr = svc.address or 0
        if svc.proto == 6:
            stack.listen(addr, svc.port, lambda conn: _Discard())
        elif svc.proto == 17:
            stack.udp_bind(addr, svc.port, lambda src, sport, data: None)
    if status is not None:
        stack.listen(status[0], status[1], status_app(get_status))
    return stack


def run(args: argparse.Namespace) -> int:
    from pyfw.daemon.control import ControlServer, LiveStore
    from pyfw.daemon.ctops import CtSource
    from pyfw.daemon.logsink import LogSink
    from pyfw.engine.host import HostError, load_host
    from pyfw.tap.device import TapDevice, TapError, bridge_exists, configure
    from pyfw.tap.engine import TapEngine
    from pyfw.tap.faults import Faults
    from pyfw.tap.loop import Gateway

    if not args.host:
        _log("--tap needs --host HOST.toml")
        return 2
    ruleset, message, rc = _load_ruleset(args.ruleset)
    if ruleset is None:
        sys.stderr.write(message)
        return int(rc)
    try:
        host = load_host(args.host)
    except (HostError, OSError) as exc:
        _log(f"{args.host}: {exc}")
        return 2
    status = None
    if args.status:
        got = _status_address(args.status, host)
        if isinstance(got, str):
            _log(got)
            return 2
        status = got
    ifaces = [i for i in host.interfaces.values() if i.name != "lo"]
    for iface in ifaces:
        if iface.bridge is not None and not bridge_exists(iface.bridge):
            _log(f"interface {iface.name}: no bridge named {iface.bridge}")
            return 1
    for p in (args.loss, args.dup, args.reorder):
        if not 0.0 <= p <= 1.0:
            _log("--loss/--dup/--reorder take a probability between 0 and 1")
            return 2

    gw: Gateway | None = None
    stack = _make_stack(host, status, lambda: gw.status() if gw is not None else {}, args.cc)
    engine = TapEngine(ruleset, host, stack)
    live = LiveStore(engine.ruleset, engine.load)
    stopping = reload = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def hup(signum: int, frame: Any) -> None:
        nonlocal reload
        reload = True

    devices: dict[str, TapDevice] = {}
    server = None
    try:
        try:
            for iface in ifaces:
                dev = devices[iface.name] = TapDevice(iface.tap_name, offload=not args.no_offload)
                configure(dev.name, iface.mtu, iface.bridge)
        except (TapError, OSError) as exc:
            _log(str(exc))
            return 1
        try:
            server = ControlServer(args.socket, live, CtSource(lambda: [engine.ct], time.monotonic))
        except OSError as exc:
            _log(f"cannot listen on {args.socket}: {exc}")
            return 1
        faults = Faults(args.fault_seed, args.loss, args.dup, args.reorder)
        gw = Gateway(engine, devices, faults)
        gw.sink = LogSink(getattr(args, "syslog", None))
        gw.add_reader(server, server.handle_one)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

        def between() -> None:
            nonlocal reload
            if reload:
                reload = False
                _reload(args.ruleset, live)

        taps = ", ".join(f"{d.name}={n}" for n, d in devices.items())
        _log(f"started: tap {taps}, socket {args.socket}, ruleset {args.ruleset or '(empty)'}"
             + (f", status {args.status}" if status and stack is not None else ""))
        if not host.ip_forward:
            _log(f"{args.host}: net.ipv4.ip_forward is 0 (a new namespace's value): not forwarding, "
                 "as Linux would not")
        gw.run(lambda: stopping, between)
        if stack is not None and hasattr(stack, "abort_all"):
            # the gateway's own connections end with a reset, not silence
            stack.abort_all()
            gw.emit(engine.stack_output(time.monotonic()))
        st = gw.status()
        frames = {f"{i['name']}_{k}": i[k] for i in st["interfaces"] for k in ("rx_frames", "tx_frames")}
        counts = ", ".join(f"{k} {v}" for k, v in sorted({**st["counters"], **frames}.items()) if v)
        _log(f"stopped ({counts or 'no packets'})")
        return 0
    finally:
        if gw is not None:
            gw.close()
            if gw.sink is not None:
                gw.sink.close()
        if server is not None:
            server.close()
        for dev in devices.values():
            with contextlib.suppress(Exception):
                dev.close()


def main(argv: list[str]) -> int:
    from pyfw.cli.main import DEFAULT_SOCKET

    ap = argparse.ArgumentParser(prog="pyfw daemon --tap")
    ap.add_argument("--tap", action="store_true", required=True)
    ap.add_argument("--ruleset", metavar="FILE")
    ap.add_argument("--socket", default=os.environ.get("PYFW_SOCKET") or DEFAULT_SOCKET, metavar="PATH")
    add_arguments(ap)
    return run(ap.parse_args(argv))
