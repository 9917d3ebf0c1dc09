"""Argument parsers shared by the extensions, with libxtables' semantics and
messages: numbers in C's strtoul base 0, ports and services, hosts and masks,
marks, TOS values, MAC addresses, syslog levels, protocols."""

from __future__ import annotations

import functools
import socket
from typing import Any

from pyfw.errors import ParameterProblem

UINT_MAX = {8: 0xFF, 16: 0xFFFF, 32: 0xFFFFFFFF, 64: 0xFFFFFFFFFFFFFFFF}

# xtables_chain_protos: names iptables knows without /etc/protocols.
CHAIN_PROTOS: tuple[tuple[str, int], ...] = (
    ("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1),
    ("ipv6-icmp", 58), ("icmpv6", 58), ("esp", 50), ("ah", 51),
    ("mobility-header", 135), ("ipv6-mh", 135), ("mh", 135), ("all", 0),
)


def strtoul_prefix(s: str) -> tuple[int | None, str]:
    """C strtoumax(s, &end, 0) after iptables' leading-minus refusal.

    Returns (value or None when nothing was parsed, rest of the string).
    Leading white space is skipped; "0x" is hex, a leading "0" octal.
    """
    i = 0
    n = len(s)
    while i < n and s[i] in " \t\n\r\f\v":
        i += 1
    if i < n and s[i] == "-":
        return None, s
    if i < n and s[i] == "+":
        i += 1
    if i + 1 < n and s[i] == "0" and s[i + 1] in "xX" and i + 2 < n and s[i + 2] in "0123456789abcdefABCDEF":
        j = i + 2
        while j < n and s[j] in "0123456789abcdefABCDEF":
            j += 1
        return int(s[i + 2:j], 16), s[j:]
    if i < n and s[i] == "0":
        j = i + 1
        while j < n and s[j] in "01234567":
            j += 1
        return (int(s[i:j], 8) if j > i + 1 else 0), s[j:]
    j = i
    while j < n and s[j].isdigit() and s[j].isascii():
        j += 1
    if j == i:
        return None, s
    return int(s[i:j]), s[j:]


def strtoul(s: str, lo: int = 0, hi: int = 0) -> int | None:
    """xtables_strtoul without end pointer: the whole string, in [lo, hi]
    (hi 0 means no upper bound besides 2**64-1)."""
    if s.isdigit() and s.isascii() and (s[0] != "0" or len(s) == 1):
        number = int(s)  # plain decimal, the common case
        if number > UINT_MAX[64] or number < lo or (hi != 0 and number > hi):
            return None
        return number
    value, rest = strtoul_prefix(s)
    if value is None or rest != "":
        return None
    if value > UINT_MAX[64]:
        return None
    if value < lo or (hi != 0 and value > hi):
        return None
    return value


def strtoul_end(s: str, lo: int = 0, hi: int = 0) -> tuple[int | None, str]:
    """xtables_strtoul with an end pointer: (value or None, rest)."""
    value, rest = strtoul_prefix(s)
    if value is None:
        return None, s
    if value > UINT_MAX[64] or value < lo or (hi != 0 and value > hi):
        return None, rest
    return value, rest


@functools.cache
def _services() -> dict[tuple[str, str | None], int]:
    table: dict[tuple[str, str | None], int] = {}
    try:
        with open("/etc/services", encoding="utf-8", errors="replace") as f:
            for text in f:
                line = text.split("#", 1)[0].split()
                if len(line) < 2 or "/" not in line[1]:
                    continue
                port_s, proto = line[1].split("/", 1)
                if not port_s.isdigit():
                    continue
                for name in [line[0], *line[2:]]:
                    table.setdefault((name, proto), int(port_s))
                    table.setdefault((name, None), int(port_s))
    except OSError:
        pass
    return table


def service_to_port(name: str, proto: str | None) -> int:
    """getservbyname(name, proto); -1 when unknown."""
    return _services().get((name, proto), -1)


def parse_port(port: str, proto: str | None) -> int:
    """xtables_parse_port: number 0-65535 or a service name."""
    value = strtoul(port, 0, 0xFFFF)
    if value is not None:
        return value
    value = service_to_port(port, proto)
    if value != -1:
        return value
    raise ParameterProblem(f"invalid port/service `{port}' specified")


def getportbyname(name: str) -> int:
    """xtables_getportbyname (getaddrinfo on a service): -1 if unknown."""
    value = strtoul(name, 0, 0xFFFF)
    if value is not None:
        return value
    if name.isdigit():
        return -1
    return service_to_port(name, None)


@functools.cache
def _protocols() -> dict[str, int]:
    table: dict[str, int] = {}
    try:
        with open("/etc/protocols", encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and words[1].isdigit():
                    for name in [words[0], *words[2:]]:
                        table.setdefault(name, int(words[1]))
    except OSError:
        pass
    return table


@functools.cache
def _protocol_names() -> dict[int, str]:
    names: dict[int, str] = {}
    try:
        with open("/etc/protocols", encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and words[1].isdigit():
                    names.setdefault(int(words[1]), words[0])
    except OSError:
        pass
    return names


def parse_protocol(s: str) -> int:
    """xtables_parse_protocol."""
    value = strtoul(s, 0, 0xFF)
    if value is not None:
        return value
    for name, number in CHAIN_PROTOS:
        if name == s:
            return number
    found = _protocols().get(s)
    if found is not None:
        return found
    raise ParameterProblem(f'unknown protocol "{s}" specified')


def proto_to_name(proto: int, nolookup: bool = False) -> str | None:
    """proto_to_name: the built-in names first, then /etc/protocols."""
    for name, num in CHAIN_PROTOS:
        if num == proto:
            return name
    if proto and not nolookup:
        return _protocol_names().get(proto)
    return None


# ---------------------------------------------------------------- addresses

def ip_to_str(addr: int) -> str:
    return f"{addr >> 24 & 255}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


def numeric_to_ipaddr(dotted: str, is_mask: bool = False) -> int | None:
    """__numeric_to_ipaddr: dotted quad, short forms "10" / "10.1" completed
    with zeros (not for masks)."""
    parts = dotted[:19].split(".", 3)
    octets: list[int] = []
    for i, part in enumerate(parts):
        if i == 3 or (i == len(parts) - 1 and i < 3):
            pass
        value = strtoul(part, 0, 0xFF)
        if value is None:
            return None
        octets.append(value)
    if len(octets) < 4:
        if is_mask:
            return None
        octets += [0] * (4 - len(octets))
    return octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]


def mask_from_prefix(bits: int) -> int:
    return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF if bits else 0


def mask_to_cidr(mask: int) -> int:
    """xtables_ipmask_to_cidr: -1 for a non-contiguous mask."""
    for i in range(32, -1, -1):
        if mask_from_prefix(i) == mask:
            return i
    return -1


def parse_ipmask(mask: str | None) -> int:
    if mask is None:
        return 0xFFFFFFFF
    value = numeric_to_ipaddr(mask, is_mask=True)
    if value is not None:
        return value
    bits = strtoul(mask, 0, 32)
    if bits is None:
        raise ParameterProblem(f"invalid mask `{mask}' specified")
    return mask_from_prefix(bits)


def _host_to_addrs(name: str) -> list[int]:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_RAW)
    except (OSError, UnicodeError):
        return []
    out: list[int] = []
    for info in infos:
        v = numeric_to_ipaddr(str(info[4][0]))
        if v is not None:
            out.append(v)
    return out


def parse_hostnetwork(name: str) -> list[int]:
    """ipparse_hostnetwork: numeric, else resolved; error when neither."""
    value = numeric_to_ipaddr(name)
    if value is not None:
        return [value]
    addrs = _host_to_addrs(name) if name else []
    if addrs:
        return addrs
    raise ParameterProblem(f"host/network `{name}' not found")


def ipparse_multiple(spec: str) -> list[tuple[int, int]]:
    """xtables_ipparse_multiple: comma list of host[/mask]; address & mask."""
    return list(_ipparse_multiple(spec))


@functools.lru_cache(maxsize=65536)
def _ipparse_multiple(spec: str) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for item in spec.split(","):
        item = item.lstrip()
        if len(item) > 255:
            raise ParameterProblem("Hostname too long")
        if "/" in item:
            host, m = item.rsplit("/", 1)
            mask = parse_ipmask(m)
        else:
            host, mask = item, 0xFFFFFFFF
        if mask == 0:
            host = "0.0.0.0"
        for addr in parse_hostnetwork(host):
            out.append((addr & mask, mask))
    return tuple(out)


def parse_host(arg: str) -> int:
    """XTTYPE_HOST: one address (getaddrinfo)."""
    value = numeric_to_ipaddr(arg)
    if value is not None and arg.count(".") == 3:
        return value
    try:
        infos = socket.getaddrinfo(arg, None, socket.AF_INET)
    except socket.gaierror as exc:  # gai_strerror's words ("Temporary failure ..." offline)
        raise ParameterProblem(f"getaddrinfo: {exc.strerror}\n") from None
    except UnicodeError:
        raise ParameterProblem("getaddrinfo: Name or service not known\n") from None
    addrs = [v for info in infos if (v := numeric_to_ipaddr(str(info[4][0]))) is not None]
    if not addrs:
        raise ParameterProblem("getaddrinfo: Name or service not known\n")
    if len(set(addrs)) > 1:
        raise ParameterProblem(f"{arg} resolves to more than one address\n")
    return addrs[0]


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_ethermac(arg: str) -> bytes:
    """XTTYPE_ETHERMAC: six hex bytes separated by colons."""
    parts = arg.split(":")
    if len(parts) != 6:
        raise ParameterProblem("Invalid MAC address specified.")
    out = bytearray()
    for p in parts:
        if not 1 <= len(p) <= 2 or any(c not in "0123456789abcdefABCDEF" for c in p):
            raise ParameterProblem("Invalid MAC address specified.")
        out.append(int(p, 16))
    return bytes(out)


SYSLOG_LEVELS = {
    "alert": 1, "crit": 2, "debug": 7, "emerg": 0, "error": 3, "info": 6,
    "notice": 5, "panic": 0, "warning": 4,
}

TOS_SYMBOLS = (
    (0x10, "Minimize-Delay"), (0x08, "Maximize-Throughput"),
    (0x04, "Maximize-Reliability"), (0x02, "Minimize-Cost"),
    (0x00, "Normal-Service"),
)


def parse_markmask(ext: str, opt: str, arg: str) -> tuple[int, int]:
    """xtables_parse_val_mask without a name map: VALUE[/MASK]."""
    value, rest = strtoul_end(arg, 0, 0xFFFFFFFF)
    if value is None:
        raise ParameterProblem(f'{ext}: bad integer value for option "--{opt}", or out of range.\n')
    if rest == "":
        return value, 0xFFFFFFFF
    if not rest.startswith("/"):
        raise ParameterProblem(f'{ext}: trailing garbage after value for option "--{opt}".\n')
    mask, rest2 = strtoul_end(rest[1:], 0, 0xFFFFFFFF)
    if mask is None:
        raise ParameterProblem(f'{ext}: bad integer value for option "--{opt}", or out of range.\n')
    if rest2 == "":
        return value, mask
    raise ParameterProblem(f'{ext}: trailing garbage after value for option "--{opt}".\n')


def parse_tosmask(arg: str, default_mask: int) -> tuple[int, int]:
    """XTTYPE_TOSMASK: number[/mask] or a symbolic TOS name."""
    value, rest = strtoul_end(arg, 0, 0xFF)
    if value is not None:
        mask = 0xFF
        if rest.startswith("/"):
            m, rest = strtoul_end(rest[1:], 0, 0xFF)
            if m is None:
                raise ParameterProblem(f'Illegal value: "{arg}"')
            mask = m
        if rest != "":
            raise ParameterProblem(f'Illegal value: "{arg}"')
        return value, mask
    for num, name in TOS_SYMBOLS:
        if name.lower() == arg.lower():
            return num, default_mask
    raise ParameterProblem(f'Symbolic name "{arg}" is unknown')


def parse_typed(ext: str, opt: Any, arg: str) -> Any:
    """Run the generic subparser of `opt.type` (xtopt_subparse)."""
    from pyfw.ext.base import ArgType as T

    t = opt.type
    if t in (T.UINT8, T.UINT16, T.UINT32, T.UINT64):
        bits = {T.UINT8: 8, T.UINT16: 16, T.UINT32: 32, T.UINT64: 64}[t]
        lo = opt.min
        hi = opt.max or UINT_MAX[bits]
        value = strtoul(arg, lo, hi)
        if value is None:
            raise ParameterProblem(
                f'{ext}: bad value for option "--{opt.name}", or out of range ({lo}-{hi}).\n')
        return value
    if t in (T.UINT8RC, T.UINT16RC, T.UINT32RC, T.UINT64RC):
        bits = {T.UINT8RC: 8, T.UINT16RC: 16, T.UINT32RC: 32, T.UINT64RC: 64}[t]
        lmax = UINT_MAX[bits]
        vals: list[int] = []
        rest = arg
        while True:
            if len(vals) == 2:
                raise ParameterProblem(
                    f'{ext}: Too many components for option "--{opt.name}" (max: 2)\n')
            if rest == "" or rest.startswith(":"):
                value = lmax if len(vals) == 1 else 0
                end = rest
            else:
                v, end = strtoul_end(rest, 0, lmax)
                if v is None:
                    raise ParameterProblem(
                        f'{ext}: bad value for option "--{opt.name}" near "{rest}", or out of range (0-{lmax}).\n')
                if end != "" and not end.startswith(":"):
                    raise ParameterProblem(
                        f'{ext}: Argument to "--{opt.name}" has unexpected characters near "{end}".\n')
                value = v
            vals.append(value)
            if end == "":
                break
            rest = end[1:]
        return tuple(vals)
    if t is T.DOUBLE:
        try:
            value_f = float(arg)
        except ValueError:
            value_f = None
        if value_f is None or (opt.min != opt.max and not opt.min <= value_f <= opt.max):
            raise ParameterProblem(
                f'{ext}: bad value for option "--{opt.name}", or out of range ({opt.min}-{opt.max}).\n')
        return value_f
    if t is T.STRING:
        if opt.min and len(arg.encode()) < opt.min:
            raise ParameterProblem(f"Argument must have a minimum length of {opt.min} characters\n")
        if opt.max and len(arg.encode()) > opt.max:
            raise ParameterProblem(f"Argument must have a maximum length of {opt.max} characters\n")
        return arg
    if t is T.TOSMASK:
        return parse_tosmask(arg, opt.max)
    if t is T.MARKMASK32:
        return parse_markmask(ext, opt.name, arg)
    if t is T.SYSLOGLEVEL:
        value = strtoul(arg, 0, 7)
        if value is None:
            if arg not in SYSLOG_LEVELS:
                raise ParameterProblem(f'log level "{arg}" unknown\n')
            value = SYSLOG_LEVELS[arg]
        return value
    if t is T.HOST:
        return parse_host(arg)
    if t is T.HOSTMASK:
        return parse_hostmask_xt(ext, opt.name, arg)
    if t is T.PROTOCOL:
        return parse_protocol(arg)
    if t is T.PORT:
        value = gai_port(arg)
        if value < 0:
            raise ParameterProblem(f'Port "{arg}" does not resolve to anything.\n')
        return value
    if t is T.PORTRC:
        return parse_portrc_gai(ext, opt.name, arg)
    if t in (T.PLEN, T.PLENMASK):
        return _parse_plen(ext, opt.name, arg)
    if t is T.ETHERMAC:
        return parse_ethermac_strtoul(arg)
    return arg


def _parse_plen(ext: str, name: str, arg: str) -> int:
    value = strtoul(arg, 0, 32)
    if value is not None:
        return value
    mask = numeric_to_ipaddr(arg, is_mask=True) if arg.count(".") == 3 else None
    if mask is not None:
        return mask_to_cidr(mask)
    raise ParameterProblem(
        f'{ext}: bad value for option "--{name}", neither a valid network mask nor valid CIDR (0-32).\n')


_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def save_string(value: str) -> str:
    """xtables_save_string: ' value' bare when safe, else double-quoted with
    `"`, `\\` and `'` escaped by a backslash.  Returns the leading space too."""
    if value and all(c in _NO_QUOTE for c in value):
        return " " + value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f' "{escaped}"'


# ------------------------------------------- C strtoul, getaddrinfo services

_C_SPACE = " \t\n\r\f\v"


def c_strtoul(s: str, base: int) -> tuple[int | None, str, bool]:
    """C strtoul(s, &end, base) for base 10 or 16, exactly: leading white
    space, an optional sign (a minus negates modulo 2**64), "0x" for base 16.
    Returns (value or None when nothing was converted, rest, overflowed);
    on overflow the value is ULONG_MAX as in C."""
    i, n = 0, len(s)
    while i < n and s[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    digits = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
    if base == 16 and i + 1 < n and s[i] == "0" and s[i + 1] in "xX":
        if i + 2 < n and s[i + 2] in digits:
            i += 2
        else:  # "0x" without digits: the "0" is the number
            return 0, s[i + 1:], False
    j = i
    while j < n and s[j] in digits:
        j += 1
    if j == i:
        return None, s, False
    value = int(s[i:j], base)
    if value > UINT_MAX[64]:
        return UINT_MAX[64], s[j:], True
    if neg:
        value = -value & UINT_MAX[64]
    return value, s[j:], False


_GAI_PROTOS = ("tcp", "udp", "dccp", "udplite", "sctp")


def gai_port(name: str) -> int:
    """xtables_getportbyname, i.e. glibc getaddrinfo(NULL, name, NULL):
    a string strtoul(…, 10) takes whole is a number, cut to int and then to
    16 bits (65536 is port 0, "010" is 10); a negative int means a service
    name, looked up for tcp, udp, dccp, udplite, sctp in that order.
    Returns -1 when nothing resolves."""
    value, rest, _ = c_strtoul(name, 10)
    if name == "":
        value, rest = 0, ""
    if value is not None and rest == "":
        num = value & 0xFFFFFFFF
        if num < 0x80000000:
            return num & 0xFFFF
    for proto in _GAI_PROTOS:
        port = service_to_port(name, proto)
        if port != -1:
            return port
    return -1


def parse_portrc_gai(ext: str, optname: str, arg: str) -> tuple[int, int]:
    """XTTYPE_PORTRC (xtopt_parse_mport) into a two-port range, with the
    messages naming `optname`: "a", "a:b", ":b", "a:", ":" (0:65535)."""
    rng = [0, 0xFFFF]
    nvals = 0
    for part in arg.split(":"):
        if nvals == 2:
            raise ParameterProblem(
                f'{ext}: Too many components for option "--{optname}" (max: 2)\n')
        if part != "":
            value = gai_port(part)
            if value < 0:
                raise ParameterProblem(f'Port "{part}" does not resolve to anything.\n')
            rng[nvals] = value
        nvals += 1
    if nvals == 1:
        rng[1] = rng[0]
    return rng[0], rng[1]


@functools.cache
def _services_by_port() -> dict[tuple[int, str | None], str]:
    table: dict[tuple[int, str | None], str] = {}
    try:
        with open("/etc/services", encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) < 2 or "/" not in words[1]:
                    continue
                port_s, proto = words[1].split("/", 1)
                if not port_s.isdigit():
                    continue
                table.setdefault((int(port_s), proto), words[0])
                table.setdefault((int(port_s), None), words[0])
    except OSError:
        pass
    return table


def port_to_service(port: int, proto: str | None) -> str | None:
    """getservbyport(htons(port), proto)->s_name: the first /etc/services
    entry for that port (and protocol, when given); None when there is none."""
    return _services_by_port().get((port, proto))


def parse_ethermac_strtoul(arg: str) -> bytes:
    """xtopt_parse_ethermac exactly: six strtoul(…, 16) numbers of at most two
    characters each (sign and white space count), separated by ':'; empty
    parts are 0, values are cut to 8 bits ("-1" is ff)."""
    out = bytearray()
    rest = arg
    for i in range(6):
        value, end, _ = c_strtoul(rest, 16)
        if value is None:
            value, end = 0, rest
        used = len(rest) - len(end)
        sep_ok = end.startswith(":") if i < 5 else end == ""
        if not sep_ok or used > 2:
            raise ParameterProblem("Invalid MAC address specified.")
        out.append(value & 0xFF)
        rest = end[1:]
    return bytes(out)


# ------------------------------- C-locale name compare, XTTYPE_HOSTMASK exactly

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def strncasecmp_eq(a: str, b: str, n: int) -> bool:
    """strncasecmp(a, b, n) == 0 in the C locale: the first n characters
    (fewer when a string ends first) agree ignoring ASCII case only.
    Extensions use it for abbreviations: strncasecmp(word, "NEW", len(word))."""
    return a[:n].translate(_ASCII_LOWER) == b[:n].translate(_ASCII_LOWER)


def numeric_host_aton(arg: str) -> int | None:
    """getaddrinfo(arg, AF_INET, AI_NUMERICHOST): inet_aton forms ("10" is
    0.0.0.10, "10.1" is 10.0.0.1, "0x0a000001"); None when not numeric."""
    try:
        infos = socket.getaddrinfo(arg, None, socket.AF_INET, 0, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    for info in infos:
        value = numeric_to_ipaddr(str(info[4][0]))
        if value is not None:
            return value
    return None


def parse_hostmask_xt(ext: str, optname: str, arg: str) -> tuple[int, int]:
    """XTTYPE_HOSTMASK as xtopt_parse_hostmask does it: (address, mask).

    The address is not masked.  The part after "/" is a prefix length 0-32,
    else any numeric address taken as a mask ("/255.255.0.0", and also
    "/33" = 0.0.0.33); a mask that is not contiguous leaves the mask at
    /32, as libxtables' unsigned -1 prefix length does."""
    if "/" not in arg:
        return parse_host(arg), 0xFFFFFFFF
    host, plen = arg.split("/", 1)
    addr = parse_host(host)
    bits = strtoul(plen, 0, 32)
    if bits is None:
        mask = numeric_host_aton(plen)
        if mask is None:
            raise ParameterProblem(
                f'{ext}: bad value for option "--{optname}", neither a valid network mask '
                "nor valid CIDR (0-32).\n")
        bits = mask_to_cidr(mask)
        if bits < 0:
            return addr, 0xFFFFFFFF
    return addr, mask_from_prefix(bits)


def ipmask_to_numeric(mask: int) -> str:
    """xtables_ipmask_to_numeric: "" for /32, "/N", or "/a.b.c.d" when the
    mask is not contiguous."""
    cidr = mask_to_cidr(mask)
    if cidr == -1:
        return "/" + ip_to_str(mask)
    if cidr == 32:
        return ""
    return f"/{cidr}"


@functools.lru_cache(maxsize=4096)
def ipaddr_to_anyname(addr: int) -> str:
    """xtables_ipaddr_to_anyname: getnameinfo's host name (the numeric form
    when the resolver says the address has none); when the resolver fails
    (no network, as in a fresh namespace), the /etc/networks name; else the
    numeric form."""
    try:
        host, _ = socket.getnameinfo((ip_to_str(addr), 0), 0)
        return str(host)
    except (OSError, UnicodeError):
        pass
    return _networks_by_addr().get(addr) or ip_to_str(addr)


@functools.lru_cache(maxsize=1)
def _networks_by_addr() -> dict[int, str]:
    """getnetbyaddr over /etc/networks (inet_network numbers)."""
    names: dict[int, str] = {}
    try:
        with open("/etc/networks", encoding="utf-8", errors="replace") as f:
            for text in f:
                words = text.split("#", 1)[0].split()
                if len(words) < 2:
                    continue
                value = 0
                try:
                    for part in words[1].split("."):
                        value = value << 8 | int(part, 0)
                except ValueError:
                    continue
                names.setdefault(value & 0xFFFFFFFF, words[0])
    except OSError:
        pass
    return names


def fcheck_excl_id_order(ext: str, options: Any, id_order: tuple[str, ...], xflags: set[str]) -> None:
    """xtables_options_fcheck's exclusion test for an extension whose option
    ids are not in table order (MARK, CONNMARK, TTL): each used option, in
    table order, against the others in id order; the first clash is the
    one iptables reports.  For an extension's final_check, until Opt has ids."""
    for opt in options:
        if opt.name not in xflags:
            continue
        for other in id_order:
            if other != opt.name and other in opt.excl and other in xflags:
                raise ParameterProblem(
                    f'{ext}: option "--{opt.name}" cannot be used together with "--{other}".\n')
