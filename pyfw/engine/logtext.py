"""The text of a kernel packet log line (nf_log_syslog's IPv4 logger).

LOG, TRACE and the daemon all print packets the way the kernel's
nf_log_ip_packet does: "<prefix>IN=.. OUT=.. MAC=.. SRC=.. DST=.. LEN=.."
and so on, each field followed by one space, so the line ends with a space.
Where the kernel stops early (a truncated header) the line stops there too,
and it then leaves out the UID and MARK fields as the kernel does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyfw.engine.packet import Packet

# NF_LOG_* flag bits (xt_LOG's --log-* options).
TCPSEQ = 0x01
TCPOPT = 0x02
IPOPT = 0x04
UID = 0x08
MACDECODE = 0x20
DEFAULT_MASK = 0x0F  # NF_LOG_DEFAULT_MASK: what TRACE lines use

# What printk keeps of one line (the log buffer's record limit).
LINE_MAX = 1024 - 32

_ICMP_REQUIRED = {0: 4, 3: 28, 4: 28, 5: 28, 8: 4, 11: 28, 12: 28, 13: 20, 14: 20, 17: 12, 18: 12}
_TCP_FLAG_NAMES = ((0x100, "AE "), (0x80, "CWR "), (0x40, "ECE "), (0x20, "URG "), (0x10, "ACK "),
                   (0x08, "PSH "), (0x04, "RST "), (0x02, "SYN "), (0x01, "FIN "))
_LOOPBACK_MAC = bytes(12) + b"\x08\x00"


def ip4(addr: bytes | bytearray | memoryview) -> str:
    """%pI4 of four address bytes."""
    return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _dump_tcp(out: list[str], d: bytearray, end: int, fragment: bool, off: int, logflags: int) -> bool:
    """nf_log_dump_tcp_header; True when the line ends here."""
    out.append("PROTO=TCP ")
    if fragment:
        return False
    if off + 20 > end:
        out.append(f"INCOMPLETE [{_u32(end - off)} bytes] ")
        return True
    out.append(f"SPT={d[off] << 8 | d[off + 1]} DPT={d[off + 2] << 8 | d[off + 3]} ")
    if logflags & TCPSEQ:
        seq = int.from_bytes(d[off + 4:off + 8], "big")
        ack = int.from_bytes(d[off + 8:off + 12], "big")
        out.append(f"SEQ={seq} ACK={ack} ")
    out.append(f"WINDOW={d[off + 14] << 8 | d[off + 15]} ")
    out.append(f"RES=0x{(d[off + 12] & 0x0E) << 2:02x} ")
    flags = (d[off + 12] & 1) << 8 | d[off + 13]
    for bit, name in _TCP_FLAG_NAMES:
        if flags & bit:
            out.append(name)
    out.append(f"URGP={d[off + 18] << 8 | d[off + 19]} ")
    doff = (d[off + 12] >> 4) * 4
    if logflags & TCPOPT and doff > 20:
        if off + doff > end:
            out.append("OPT (TRUNCATED)")
            return True
        out.append("OPT (" + bytes(d[off + 20:off + doff]).hex().upper() + ") ")
    return False


def _dump_udp(out: list[str], d: bytearray, end: int, proto: int, fragment: bool, off: int) -> bool:
    out.append("PROTO=UDP " if proto == 17 else "PROTO=UDPLITE ")
    if fragment:
        return False
    if off + 8 > end:
        out.append(f"INCOMPLETE [{_u32(end - off)} bytes] ")
        return True
    out.append(f"SPT={d[off] << 8 | d[off + 1]} DPT={d[off + 2] << 8 | d[off + 3]} "
               f"LEN={d[off + 4] << 8 | d[off + 5]} ")
    return False


def dump_ipv4(out: list[str], d: bytearray, end: int, iphoff: int, logflags: int,
              pkt: Packet | None = None) -> None:
    """dump_ipv4_packet: the IP part of the line for the header at `iphoff`
    (0 for the packet, else the one an ICMP error quotes); `end` is the
    packet's length (skb->len).  UID and MARK come from `pkt` at level 0."""
    if iphoff + 20 > end:
        out.append("TRUNCATED")
        return
    out.append(f"SRC={ip4(d[iphoff + 12:iphoff + 16])} DST={ip4(d[iphoff + 16:iphoff + 20])} ")
    tos = d[iphoff + 1]
    frag = d[iphoff + 6] << 8 | d[iphoff + 7]
    out.append(f"LEN={d[iphoff + 2] << 8 | d[iphoff + 3]} TOS=0x{tos & 0x1E:02X} "
               f"PREC=0x{tos & 0xE0:02X} TTL={d[iphoff + 8]} ID={d[iphoff + 4] << 8 | d[iphoff + 5]} ")
    if frag & 0x8000:
        out.append("CE ")
    if frag & 0x4000:
        out.append("DF ")
    if frag & 0x2000:
        out.append("MF ")
    fragoff = frag & 0x1FFF
    if fragoff:
        out.append(f"FRAG:{fragoff} ")
    ihl = (d[iphoff] & 0x0F) * 4
    if logflags & IPOPT and ihl > 20:
        if iphoff + ihl > end:
            out.append("TRUNCATED")
            return
        out.append("OPT (" + bytes(d[iphoff + 20:iphoff + ihl]).hex().upper() + ") ")
    proto = d[iphoff + 9]
    l4 = iphoff + ihl
    if proto == 6:
        if _dump_tcp(out, d, end, bool(fragoff), l4, logflags):
            return
    elif proto in (17, 136):
        if _dump_udp(out, d, end, proto, bool(fragoff), l4):
            return
    elif proto == 1:
        out.append("PROTO=ICMP ")
        if not fragoff:
            _dump_icmp(out, d, end, iphoff, l4, logflags)
    elif proto == 51:  # AH: nothing at all for a later fragment
        if not fragoff:
            out.append("PROTO=AH ")
            if l4 + 12 > end:
                out.append(f"INCOMPLETE [{_u32(end - l4)} bytes] ")
            else:
                out.append(f"SPI=0x{int.from_bytes(d[l4 + 4:l4 + 8], 'big'):x} ")
    elif proto == 50:
        out.append("PROTO=ESP ")
        if not fragoff:
            if l4 + 8 > end:
                out.append(f"INCOMPLETE [{_u32(end - l4)} bytes] ")
            else:
                out.append(f"SPI=0x{int.from_bytes(d[l4:l4 + 4], 'big'):x} ")
    else:
        out.append(f"PROTO={proto} ")
    if iphoff == 0 and pkt is not None:
        if logflags & UID and pkt.uid is not None:
            gid = pkt.gid if pkt.gid is not None else 0
            out.append(f"UID={pkt.uid} GID={gid} ")
        if pkt.mark:
            out.append(f"MARK=0x{pkt.mark:x} ")


def _dump_icmp(out: list[str], d: bytearray, end: int, iphoff: int, l4: int, logflags: int) -> None:
    if l4 + 8 > end:
        out.append(f"INCOMPLETE [{_u32(end - l4)} bytes] ")
        return
    itype, code = d[l4], d[l4 + 1]
    out.append(f"TYPE={itype} CODE={code} ")
    need = _ICMP_REQUIRED.get(itype, 0)
    if need and end - l4 < need:
        out.append(f"INCOMPLETE [{_u32(end - l4)} bytes] ")
        return
    if itype in (0, 8):
        out.append(f"ID={d[l4 + 4] << 8 | d[l4 + 5]} SEQ={d[l4 + 6] << 8 | d[l4 + 7]} ")
    elif itype == 12:
        out.append(f"PARAMETER={d[l4 + 4]} ")
    elif itype in (3, 4, 5, 11):
        if itype == 5:
            out.append(f"GATEWAY={ip4(d[l4 + 4:l4 + 8])} ")
        if iphoff == 0:  # the kernel recurses once
            out.append("[")
            dump_ipv4(out, d, end, l4 + 8, logflags)
            out.append("] ")
        if itype == 3 and code == 4:
            out.append(f"MTU={d[l4 + 6] << 8 | d[l4 + 7]} ")


def mac_header(pkt: Packet, logflags: int) -> str:
    """dump_mac_header: MAC= (or the decoded MACSRC/MACDST/MACPROTO) for a
    packet that has an input device."""
    dev = pkt.outdev if pkt.hook == "POSTROUTING" and pkt.outdev else pkt.indev
    loopback = dev == "lo"
    eth = pkt.eth
    if loopback and eth is None:
        eth = _LOOPBACK_MAC
    if logflags & MACDECODE and not loopback:
        if eth is None or len(eth) < 14:
            return ""
        return f"MACSRC={_mac(eth[6:12])} MACDST={_mac(eth[0:6])} MACPROTO={eth[12]:02x}{eth[13]:02x} "
    if eth is None or not eth:
        return "MAC= "
    return "MAC=" + _mac(eth[:14]) + " "


def format_packet(pkt: Packet, prefix: str, logflags: int) -> str:
    """The whole line nf_log_ip_packet prints for `pkt` (no level, no
    timestamp; it ends with a space as the kernel's does)."""
    out = [prefix, f"IN={pkt.indev} OUT={pkt.outdev} "]
    if pkt.indev:
        out.append(mac_header(pkt, logflags))
    d = pkt.data
    dump_ipv4(out, d, len(d), 0, logflags, pkt)
    return "".join(out)[:LINE_MAX]


def trace_prefix(table: str, chain: str, comment: str, rulenum: int) -> str:
    """The prefix of a TRACE line: comment is "rule", "return" or "policy".
    As ip_tables' get_chainname_rulenum, the kernel calls any rule that is
    unconditional (no matches, no -s/-d/-i/-o/-p/-f) with a standard
    verdict target (ACCEPT, DROP, RETURN...) "policy" in a built-in chain and
    "return" in a user chain, numbered as a rule: `-A INPUT -j DROP` as the
    second rule traces as "filter:INPUT:policy:2"."""
    return f"TRACE: {table}:{chain}:{comment}:{rulenum} "


def format_trace(pkt: Packet, table: str, chain: str, comment: str, rulenum: int) -> str:
    """A TRACE line (nf_log_trace with the default LOG flags)."""
    return format_packet(pkt, trace_prefix(table, chain, comment, rulenum), DEFAULT_MASK)
