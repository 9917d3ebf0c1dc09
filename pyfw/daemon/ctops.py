"""The daemon's side of `pyfw conntrack`: list, delete, flush, count and
statistics on the live connection tables, and the event stream of -E.

A request is a pyfw.cli.conntrack.Query (as JSON); entries are chosen as
conntrack-tools chooses them (its nfct_filter: NAT, mark, networks, then
the template's fields) and come back as the text conntrack prints.  The
tables come from a `CtSource`, a list so that several workers' tables can
answer as one.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfw.cli.conntrack import EVENT_BITS, OUT_EXT, OUT_ID, OUT_XML, Query
from pyfw.engine.api import IPS_ASSURED, IPS_DST_NAT_DONE, IPS_SEEN_REPLY, IPS_SRC_NAT_DONE
from pyfw.engine.conntrack import Conn, Conntrack, Listener, Tuple, format_entry, format_event

MAX_BACKLOG = 1 << 20  # bytes of events a slow -E reader may fall behind before it is dropped


@dataclass
class CtSource:
    """Where the daemon's connection tables are and what time it is on
    their clock (the daemon's packet clock)."""

    tables: Callable[[], list[Conntrack]]
    clock: Callable[[], float]
    hub: EventHub | None = field(default=None, repr=False)


# ---------------------------------------------------------------- choosing entries
def _nat_ok(q: Query, c: Conn) -> bool:
    """filter_nat: --src-nat/--dst-nat/--any-nat, with libnetfilter_conntrack's
    IS_SNAT/IS_SPAT tests (a changed reply tuple on a NAT-done entry)."""
    if q.src_nat is None and q.dst_nat is None and q.any_nat is None:
        return True
    o, r = c.orig, c.reply
    snat_done = bool(c.status & IPS_SRC_NAT_DONE)
    dnat_done = bool(c.status & IPS_DST_NAT_DONE)
    is_snat = snat_done and r.dst != o.src
    is_spat = snat_done and r.dport != o.sport
    is_dnat = dnat_done and r.src != o.dst
    is_dpat = dnat_done and r.sport != o.dport

    def has(spec: list[int | None] | None, nat: bool, pat: bool, addr: int, port: int) -> bool:
        if spec is None:
            return False
        want_addr, want_port = spec
        hit = False
        if want_addr is not None:
            hit = nat and want_addr == addr
        if want_port is not None:
            port_hit = pat and want_port == port
            if want_addr is not None and hit and not port_hit:
                hit = False
            if want_addr is None and port_hit:
                hit = True
        if want_addr is None and want_port is None:
            hit = nat or pat
        return hit

    if q.any_nat is not None:
        return has(q.any_nat, is_snat, is_spat, r.dst, r.dport) or has(q.any_nat, is_dnat, is_dpat, r.src, r.sport)
    has_s = has(q.src_nat, is_snat, is_spat, r.dst, r.dport)
    has_d = has(q.dst_nat, is_dnat, is_dpat, r.src, r.sport)
    if q.src_nat is not None and q.dst_nat is not None:
        return has_s and has_d
    return has_s if q.src_nat is not None else has_d


def matches(q: Query, c: Conn) -> bool:
    """Would conntrack -L/-D/-E with this query show the entry?"""
    if q.family != 2 or q.table in ("dying", "unconfirmed"):
        return False
    if not _nat_ok(q, c):
        return False
    if q.mark is not None and c.mark & q.mark[1] != q.mark[0]:
        return False
    o, r = c.orig, c.reply
    if q.orig_src is not None and o.src & q.orig_src[1] != q.orig_src[0] & q.orig_src[1]:
        return False
    if q.orig_dst is not None and o.dst & q.orig_dst[1] != q.orig_dst[0] & q.orig_dst[1]:
        return False
    if q.reply_src is not None and r.src != q.reply_src:
        return False
    if q.reply_dst is not None and r.dst != q.reply_dst:
        return False
    if q.proto is not None and o.proto != q.proto:
        return False
    if q.sport is not None and o.sport != q.sport:
        return False
    if q.dport is not None and o.dport != q.dport:
        return False
    if q.reply_sport is not None and r.sport != q.reply_sport:
        return False
    if q.reply_dport is not None and r.dport != q.reply_dport:
        return False
    if q.tcp_state is not None and getattr(c.proto_state, "state", None) != q.tcp_state:
        return False
    if q.icmp_type is not None and o.dport >> 8 != q.icmp_type:
        return False
    if q.icmp_code is not None and o.dport & 0xFF != q.icmp_code:
        return False
    if q.icmp_id is not None and o.sport != q.icmp_id:
        return False
    if q.status is not None and c.status & q.status != q.status:
        return False
    if q.zone is not None and c.zone != q.zone:
        return False
    if q.secmark is not None and c.secmark != q.secmark:
        return False
    return True


def entry_line(q: Query, c: Conn, now: float) -> str:
    """The -L/-D line with -o extended/id (or -o xml's <flow>)."""
    if q.output & OUT_XML:
        return xml_flow(c, now, None)
    line = format_entry(c, now)
    if q.output & OUT_EXT:
        line = "ipv4     2 " + line
    if q.output & OUT_ID:
        line += f" id={c.id}"
    return line


def event_line(q: Query, kind: str, c: Conn, now: float, portid: int) -> str:
    if q.output & OUT_XML:
        return xml_flow(c, now, kind)
    line = format_event(kind, c, now, portid)
    if q.output & OUT_EXT:
        tag, rest = line[:10], line[10:]
        line = tag + "ipv4     2 " + rest
    if q.output & OUT_ID:
        line += f" id={c.id}"
    return line


def _xml_dir(name: str, t: Any, acct: list[int] | None, d: int) -> str:
    from pyfw.engine.conntrack.table import PROTO_NAMES

    p = t.proto
    l4 = f"<sport>{t.sport}</sport><dport>{t.dport}</dport>" if p in _PORT_PROTOS else ""
    s = (f'<meta direction="{name}"><layer3 protonum="2" protoname="ipv4"><src>{_dotted(t.src)}</src>'
         f'<dst>{_dotted(t.dst)}</dst></layer3><layer4 protonum="{p}" protoname="{PROTO_NAMES.get(p, "unknown")}">'
         f"{l4}</layer4>")
    if acct is not None:
        s += f"<counters><packets>{acct[2 * d]}</packets><bytes>{acct[2 * d + 1]}</bytes></counters>"
    return s + "</meta>"


def xml_flow(c: Conn, now: float, event: str | None) -> str:
    """One <flow> of `conntrack -o xml` (libnetfilter_conntrack's XML):
    a listing shows the use count, an event its type and no use count."""
    from pyfw.engine.conntrack.tcp import STATE_NAMES

    kind = f' type="{event.lower()}"' if event else ""
    s = f"<flow{kind}>" + _xml_dir("original", c.orig, c.acct, 0) + _xml_dir("reply", c.reply, c.acct, 1)
    s += '<meta direction="independent">'
    if c.orig.proto == 6 and c.proto_state is not None:
        s += f"<state>{STATE_NAMES[c.proto_state.state]}</state>"
    left = c.remaining(now)
    if left or event != "DESTROY":
        s += f"<timeout>{left}</timeout>"
    if event is None or c.mark:
        s += f"<mark>{c.mark}</mark>"
    if c.zone:
        s += f"<zone>{c.zone}</zone>"
    if event is None:
        s += "<use>1</use>"
    s += f"<id>{c.id}</id>"
    if c.status & IPS_ASSURED:
        s += "<assured/>"
    if not c.status & IPS_SEEN_REPLY:
        s += "<unreplied/>"
    return s + "</meta></flow>"


def _dotted(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


_PORT_PROTOS = frozenset({6, 17, 33, 132, 136})


def stats_line(cpu: int, ct: Conntrack) -> str:
    """One `conntrack -S` line (one per table: a worker is a CPU)."""
    d = ct.stat.as_dict()
    names = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error", "search_restart",
             "clash_resolve", "chaintoolong")
    return f"cpu={cpu:<4}\t" + "".join(f"{k}={d[k]} " for k in names)


# ---------------------------------------------------------------- the operations
def serve(conn: socket.socket, req: dict[str, Any], source: CtSource) -> dict[str, Any] | None:
    """Answer one conntrack request; None when `conn` was kept for -E."""
    try:
        q = Query(**req["conntrack"])
    except TypeError as exc:
        return {"error": f"pyfw daemon: bad conntrack request: {exc}\n", "rc": 2}
    portid = int(req.get("portid") or 0)
    now = source.clock()
    tables = source.tables()
    for ct in tables:
        ct.now = now
    cmd = q.command
    if cmd == "L":
        lines = []
        for ct in tables:
            for c in ct.entries(now):
                if matches(q, c):
                    lines.append(entry_line(q, c, now))
                    if q.zero and c.acct is not None:
                        c.acct[:] = [0, 0, 0, 0]
        return {"lines": lines}
    if cmd == "D":
        lines = []
        for ct in tables:
            for c in ct.entries(now):
                if matches(q, c):
                    lines.append(entry_line(q, c, now))
                    ct.delete(c, portid=portid)
        return {"lines": lines}
    if cmd == "F":
        for ct in tables:
            ct.flush(portid=portid)
        return {"lines": []}
    if cmd == "G":
        return _get(q, tables, now)
    if cmd == "C":
        return {"count": sum(ct.count() for ct in tables)}
    if cmd == "S":
        return {"lines": [stats_line(i, ct) for i, ct in enumerate(tables)]}
    if cmd == "E":
        if source.hub is None:
            source.hub = EventHub(source)
        source.hub.subscribe(conn, q)
        return None
    if cmd in ("EF", "ES"):
        return {"lines": []}
    return {"error": f"pyfw daemon: conntrack command {cmd} is not served\n", "rc": 2}


def _get(q: Query, tables: list[Conntrack], now: float) -> dict[str, Any]:
    """conntrack -G: the entry the original tuple given belongs to (found
    from either direction, then chosen as -L chooses); the lookup holds a
    reference, so it shows use=2."""
    from pyfw.cli.conntrack import HEAD

    if q.orig_src is None or q.orig_dst is None:
        return {"error": f"{HEAD}Operation failed: invalid parameters\n", "rc": 1}
    proto = q.proto or 0
    sport, dport = q.sport, q.dport
    if proto == 1:
        sport, dport = q.icmp_id, (q.icmp_type or 0) << 8 | (q.icmp_code or 0)
    t = Tuple(q.orig_src[0], q.orig_dst[0], proto, sport or 0, dport or 0)
    for ct in tables:
        hit = ct.lookup(t, q.zone or 0, now)
        if hit is not None and hit[0].timeout_at > now:
            if not matches(q, hit[0]):
                return {"lines": []}
            line = entry_line(q, hit[0], now)
            return {"lines": [line.replace("<use>1</use>", "<use>2</use>") if q.output & OUT_XML
                              else line.replace(" use=1", " use=2", 1)]}
    return {"error": f"{HEAD}Operation failed: such conntrack doesn't exist\n", "rc": 1}


@dataclass
class _Subscriber:
    sock: socket.socket
    query: Query
    backlog: bytearray = field(default_factory=bytearray)


class EventHub:
    """The -E readers: listens on every table while anyone reads, writes
    each event line to the readers whose filter takes it, never blocking
    the packet loop (a reader too far behind is dropped)."""

    def __init__(self, source: CtSource) -> None:
        self.source = source
        self.subs: list[_Subscriber] = []
        self._attached: dict[int, tuple[Conntrack, Listener]] = {}
        # readers that closed: POLLHUP (a reader only shut its writing side down)
        self._poll = select.poll()

    def subscribe(self, conn: socket.socket, q: Query) -> None:
        sock = conn.dup()
        sock.setblocking(False)
        sub = _Subscriber(sock, q)
        self.subs.append(sub)
        self._poll.register(sock, select.POLLHUP | select.POLLERR)
        self._attach()
        self._write(sub, b'{"ok": true}\n')

    def _attach(self) -> None:
        """Listen on the tables there are now (a worker's may be new)."""
        tables = self.source.tables()
        for key, (ct, listener) in list(self._attached.items()):
            if ct not in tables:
                with contextlib.suppress(ValueError):
                    ct.listeners.remove(listener)
                del self._attached[key]
        for ct in tables:
            if id(ct) not in self._attached:
                def listener(kind: str, c: Conn, portid: int, ct: Conntrack = ct) -> None:
                    self.on_event(ct.now, kind, c, portid)
                ct.listeners.append(listener)
                self._attached[id(ct)] = (ct, listener)

    def _detach(self) -> None:
        for ct, listener in self._attached.values():
            with contextlib.suppress(ValueError):
                ct.listeners.remove(listener)
        self._attached = {}

    def on_event(self, now: float, kind: str, c: Conn, portid: int) -> None:
        """An event of a table whose clock says `now`."""
        for fd, _ev in self._poll.poll(0):
            for sub in list(self.subs):
                if sub.sock.fileno() == fd:
                    self._drop(sub)
        if not self.subs:
            return
        bit = EVENT_BITS[kind]
        for sub in list(self.subs):
            q = sub.query
            if q.event_mask & bit and matches(q, c):
                self._write(sub, (event_line(q, kind, c, now, portid) + "\n").encode())

    def _write(self, sub: _Subscriber, data: bytes) -> None:
        sub.backlog += data
        try:
            n = sub.sock.send(sub.backlog)
            del sub.backlog[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._drop(sub)
            return
        if len(sub.backlog) > MAX_BACKLOG:
            self._drop(sub)

    def _drop(self, sub: _Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subs.remove(sub)
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(sub.sock)
        with contextlib.suppress(OSError):
            sub.sock.close()
        if not self.subs:
            self._detach()

    def close(self) -> None:
        for sub in list(self.subs):
            self._drop(sub)
