"""Seeded random iptables rule command lines for the differential test.

`generate(seed, count)` returns `Case`s: the argv after the program name
(`-t T -A CHAIN ...`), valid and invalid mixed.  The generator only aims;
the kernel oracle decides what is valid, so a "good" case the kernel refuses
is no error — pyfw just has to refuse it the same way.  Every supported match
and target gets its own share of cases ("subjects"), each drawn either from
values that should pass or from a catalogue of mistakes (wrong table or
chain, missing -p, out-of-range numbers, typos, unknown options, bad
addresses, conflicting or repeated options, missing arguments).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

TABLES: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}

#: User chains the generated rules jump to and append into (created by the
#: first cases of every run).
USER_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("web-in", "LOGDROP", "udc_3"),
    "nat": ("nat-pre", "nat-post"),
    "mangle": ("mark-it",),
    "raw": ("raw-chk",),
}

ALL_CHAINS = frozenset(c for cs in TABLES.values() for c in cs)
IN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD"})     # -i allowed, mac
OUT_CHAINS = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})  # -o allowed, owner

MATCHES = ("tcp", "udp", "icmp", "multiport", "conntrack", "state", "mark", "connmark",
           "comment", "iprange", "addrtype", "limit", "hashlimit", "recent", "length", "ttl",
           "mac", "pkttype", "tos", "dscp", "owner")
TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "NFLOG", "DNAT", "SNAT", "MASQUERADE",
           "REDIRECT", "MARK", "CONNMARK", "NOTRACK", "CT", "TRACE", "NFQUEUE", "TCPMSS", "DSCP",
           "TOS", "TTL")
FEATURES = ("base", "chain", "cmd", "quirk")
SUBJECTS = tuple(f"m:{m}" for m in MATCHES) + tuple(f"j:{t}" for t in TARGETS) + FEATURES


@dataclass
class Frag:
    """Words of one match or target, and what the rule around them needs."""

    words: list[str]
    proto: str | None = None               # "tcp", "udp", "icmp", "tcpudp" (either)
    chains: frozenset[str] | None = None   # built-in chains allowed (None: any)
    tables: frozenset[str] | None = None   # tables allowed (None: any)


@dataclass
class Case:
    argv: list[str]        # after the program name
    table: str
    chain: str
    tag: str               # subject: "m:tcp", "j:DNAT", "base", ...
    intent: str            # "good" or "bad": what the generator aimed at
    note: str = ""         # which mistake, for bad cases
    extra: dict[str, str] = field(default_factory=dict)


def _fs(*names: str) -> frozenset[str]:
    return frozenset(names)


class Gen:
    """Value and fragment generators on one seeded Random."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.hl_count = 0
        self.hl_used: list[str] = []

    # ---- values ---------------------------------------------------------
    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def pick(self, *items):  # type: ignore[no-untyped-def]
        return self.r.choice(items)

    def num(self, lo: int, hi: int, hexp: float = 0.2) -> str:
        v = self.r.randint(lo, hi)
        return hex(v) if self.p(hexp) else str(v)

    def ip(self) -> str:
        return ".".join(str(self.r.choice((0, 1, 10, 127, 172, 192, 168, 254, 255,
                                            self.r.randint(0, 255)))) for _ in range(4))

    def mask(self) -> str:
        k = self.r.randint(0, 32)
        v = (0xFFFFFFFF << (32 - k)) & 0xFFFFFFFF if k else 0
        return ".".join(str((v >> s) & 255) for s in (24, 16, 8, 0))

    def net(self) -> str:
        x = self.r.random()
        if x < 0.4:
            return self.ip()
        if x < 0.8:
            return f"{self.ip()}/{self.r.randint(0, 32)}"
        if x < 0.9:
            return f"{self.ip()}/{self.mask()}"
        return self.pick("10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0", "127.0.0.1", "10.1/16",
                         "localhost", "172.16/12", "1.2.3.4/32", "0/0")

    def nets(self) -> str:
        if self.p(0.15):
            return ",".join(self.net() for _ in range(self.r.randint(2, 3)))
        return self.net()

    def bad_net(self) -> str:
        return self.pick(f"1.2.3.{self.r.randint(256, 999)}", "1.2.3.4/33", "1.2.3.4/-1",
                         "1.2.3.4/x", "1.2.3.4/255.0.255.0", "1..2.3", "1.2.3.4.5", "a.b.c.d",
                         "1.2.3.4/", "/24", "1.2.3.4,", "1.2.3.4,,5.6.7.8", "300.1.1.1/8",
                         "1.2.3.4/255.255.255.256")

    def iface(self) -> str:
        return self.pick("eth0", "eth+", "veth12", "lo", "+", "br-lan", "wlan0", "ens3f1",
                         "eth0.100", "abcdefghijklmno", "ppp+", "tun0", "e")

    def port(self) -> str:
        x = self.r.random()
        if x < 0.15:
            return self.pick("ssh", "http", "https", "domain", "ntp", "smtp", "ftp", "telnet")
        if x < 0.5:
            return str(self.pick(22, 25, 53, 80, 123, 443, 8080, 0, 65535, 1024))
        return str(self.r.randint(0, 65535))

    def port_range(self, sep: str = ":") -> str:
        a, b = sorted((self.r.randint(0, 65535), self.r.randint(0, 65535)))
        x = self.r.random()
        if x < 0.6:
            return f"{a}{sep}{b}"
        if x < 0.8:
            return f"{sep}{b}"
        return f"{a}{sep}"

    def portspec(self) -> str:
        return self.port_range() if self.p(0.3) else self.port()

    def neg(self, prob: float = 0.2) -> list[str]:
        return ["!"] if self.p(prob) else []

    def markval(self) -> str:
        v = self.num(0, 0xFFFFFFFF, 0.6) if self.p(0.3) else self.num(0, 255, 0.4)
        if self.p(0.4):
            v += "/" + self.pick("0xff", "0xffffffff", "0xff00", "1", "0", "4294967295", "0xf0f0")
        return v

    def rate(self) -> str:
        n = self.r.choice((1, 2, 3, 5, 10, 25, 100, 1000, self.r.randint(1, 5000)))
        unit = self.pick("second", "sec", "s", "minute", "min", "m", "hour", "h", "day", "d")
        return f"{n}/{unit}"

    def text(self, maxlen: int) -> str:
        words: tuple[str, ...] = ("hello", "ssh in", "allow", "block-all", "x", "web_v2", "drop:me",
                                  "a.b.c", "LOG ", "UPPER", "9", "tab.", "[pfx]")
        if self.p(0.15):  # what save has to quote or escape
            words += ('say "hi"', "back\\slash", "it's", "$HOME", "tab\there", "naïve", "#hash", "a=b")
        s = ""
        while len(s) < self.r.randint(1, maxlen):
            s += self.r.choice(words)
        return s[:maxlen] or "x"

    # ---- matches (good) -------------------------------------------------
    def m_tcp(self) -> Frag:
        w: list[str] = ["-m", "tcp"] if self.p(0.3) else []
        opts: list[list[str]] = []
        if self.p(0.5):
            opts.append(self.neg() + [self.pick("--sport", "--source-port"), self.portspec()])
        if self.p(0.6):
            opts.append(self.neg() + [self.pick("--dport", "--destination-port"), self.portspec()])
        if self.p(0.3):
            opts.append(self.neg(0.1) + ["--syn"])
        elif self.p(0.3):
            flags = ["SYN", "ACK", "FIN", "RST", "URG", "PSH"]
            mask = ",".join(self.r.sample(flags, self.r.randint(1, 4))) if self.p(0.7) else "ALL"
            comp = ",".join(self.r.sample(flags, self.r.randint(1, 2))) if self.p(0.7) else "NONE"
            opts.append(self.neg(0.1) + ["--tcp-flags", mask, comp])
        if self.p(0.15):
            opts.append(self.neg() + ["--tcp-option", self.num(1, 255, 0)])
        if not opts and not w:
            opts.append(["--dport", self.port()])
        self.r.shuffle(opts)
        return Frag(w + [x for o in opts for x in o], proto="tcp")

    def m_udp(self) -> Frag:
        w: list[str] = ["-m", "udp"] if self.p(0.3) else []
        opts: list[list[str]] = []
        if self.p(0.5):
            opts.append(self.neg() + ["--sport", self.portspec()])
        if self.p(0.6) or not opts:
            opts.append(self.neg() + [self.pick("--dport", "--destination-port"), self.portspec()])
        self.r.shuffle(opts)
        return Frag(w + [x for o in opts for x in o], proto="udp")

    ICMP_TYPES = ("echo-request", "echo-reply", "destination-unreachable", "port-unreachable",
                  "any", "host-unreachable", "time-exceeded", "ttl-zero-during-transit",
                  "redirect", "network-redirect", "parameter-problem", "timestamp-request",
                  "source-quench", "fragmentation-needed", "ping", "pong",
                  "router-advertisement", "address-mask-reply", "communication-prohibited")

    def m_icmp(self) -> Frag:
        w: list[str] = ["-m", "icmp"] if self.p(0.3) else []
        if self.p(0.6):
            t = self.r.choice(self.ICMP_TYPES)
        elif self.p(0.5):
            t = self.num(0, 255, 0)
        else:
            t = f"{self.r.randint(0, 255)}/{self.r.randint(0, 255)}"
        return Frag(w + self.neg() + ["--icmp-type", t], proto="icmp")

    def m_multiport(self) -> Frag:
        items: list[str] = []
        budget = 15
        while budget > 0 and (not items or self.p(0.6)):
            if self.p(0.3) and budget >= 2:
                a, b = sorted((self.r.randint(0, 65535), self.r.randint(0, 65535)))
                items.append(f"{a}:{b}")
                budget -= 2
            else:
                items.append(self.port())
                budget -= 1
        opt = self.pick("--sports", "--dports", "--ports", "--source-ports", "--destination-ports")
        return Frag(["-m", "multiport"] + self.neg() + [opt, ",".join(items)], proto="tcpudp")

    CTSTATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT")
    CTSTATUS = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")

    def m_conntrack(self) -> Frag:
        opts: list[list[str]] = []
        cands: list[Callable[[], list[str]]] = [
            lambda: ["--ctstate", ",".join(self.r.sample(self.CTSTATES, self.r.randint(1, 3)))],
            lambda: ["--ctproto", self.pick("tcp", "udp", "icmp", "6", "17", "all")],
            lambda: [self.pick("--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst"),
                     self.net().replace("localhost", "127.0.0.1")],
            lambda: ["--ctstatus", ",".join(self.r.sample(self.CTSTATUS, self.r.randint(1, 2)))],
            lambda: ["--ctexpire", self.pick(str(self.r.randint(0, 1000)),
                                             f"{self.r.randint(0, 10)}:{self.r.randint(10, 99999)}")],
            lambda: [self.pick("--ctorigsrcport", "--ctorigdstport", "--ctreplsrcport",
                               "--ctrepldstport"), self.pick(self.port(), self.port_range())],
            lambda: ["--ctdir", self.pick("ORIGINAL", "REPLY")],
        ]
        for c in self.r.sample(cands, self.r.randint(1, 3)):
            o = c()
            opts.append((self.neg(0.15) if o[0] != "--ctdir" else []) + o)
        return Frag(["-m", "conntrack"] + [x for o in opts for x in o])

    def m_state(self) -> Frag:
        st = ",".join(self.r.sample(self.CTSTATES[:5], self.r.randint(1, 3)))
        return Frag(["-m", "state"] + self.neg(0.15) + ["--state", st])

    def m_mark(self) -> Frag:
        return Frag(["-m", "mark"] + self.neg() + ["--mark", self.markval()])

    def m_connmark(self) -> Frag:
        return Frag(["-m", "connmark"] + self.neg() + ["--mark", self.markval()])

    def m_comment(self) -> Frag:
        return Frag(["-m", "comment", "--comment", self.text(self.pick(10, 40, 255))])

    def m_iprange(self) -> Frag:
        def rng() -> str:
            a, b = sorted((self.ip(), self.ip()), key=lambda s: tuple(int(x) for x in s.split(".")))
            return f"{a}-{b}" if self.p(0.9) else a
        opts = []
        if self.p(0.6):
            opts += self.neg() + ["--src-range", rng()]
        if self.p(0.5) or not opts:
            opts += self.neg() + ["--dst-range", rng()]
        return Frag(["-m", "iprange"] + opts)

    ADDRTYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
                 "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")

    def m_addrtype(self) -> Frag:
        w = ["-m", "addrtype"]
        chains = None
        if self.p(0.6):
            w += self.neg() + ["--src-type", ",".join(self.r.sample(self.ADDRTYPES, self.r.randint(1, 2)))]
        if self.p(0.5) or len(w) == 2:
            w += self.neg() + ["--dst-type", ",".join(self.r.sample(self.ADDRTYPES, self.r.randint(1, 2)))]
        if self.p(0.25):
            if self.p(0.5):
                w.append("--limit-iface-in")
                chains = IN_CHAINS
            else:
                w.append("--limit-iface-out")
                chains = OUT_CHAINS
        return Frag(w, chains=chains)

    def m_limit(self) -> Frag:
        w = ["-m", "limit"]
        if self.p(0.8):
            w += ["--limit", self.rate()]
        if self.p(0.5):
            w += ["--limit-burst", str(self.r.randint(1, 10000))]
        return Frag(w)

    def hl_name(self) -> str:
        """Mostly a fresh name; sometimes one used before (the kernel shares a
        table by name, whatever the other rule's parameters)."""
        if self.hl_used and self.p(0.2):
            return self.r.choice(self.hl_used)
        self.hl_count += 1
        name = self.pick(f"hl{self.hl_count}", f"h-{self.hl_count}x", f"HL_{self.hl_count}")
        self.hl_used.append(name)
        return name

    def m_hashlimit(self) -> Frag:
        w = ["-m", "hashlimit"]
        opts: list[list[str]] = []
        rate = self.rate() if self.p(0.8) else self.pick("10kb/s", "1mb/s", "512b/s", "100kb/m", "3kb/h")
        opts.append([self.pick("--hashlimit-upto", "--hashlimit-above", "--hashlimit-upto"), rate])
        opts.append(["--hashlimit-name", self.hl_name()])
        if self.p(0.6):
            modes = self.r.sample(("srcip", "dstip", "srcport", "dstport"), self.r.randint(1, 3))
            opts.append(["--hashlimit-mode", ",".join(modes)])
        if self.p(0.4):
            opts.append(["--hashlimit-burst", str(self.r.randint(1, 100))])
        if self.p(0.25):
            opts.append(["--hashlimit-srcmask", str(self.r.randint(0, 32))])
        if self.p(0.2):
            opts.append(["--hashlimit-dstmask", str(self.r.randint(0, 32))])
        if self.p(0.25):
            opts.append(["--hashlimit-htable-size", str(self.r.randint(1, 65536))])
        if self.p(0.2):
            opts.append(["--hashlimit-htable-max", str(self.r.randint(1, 65536))])
        if self.p(0.2):
            opts.append(["--hashlimit-htable-expire", str(self.r.randint(1, 100000))])
        if self.p(0.2):
            opts.append(["--hashlimit-htable-gcinterval", str(self.r.randint(1, 100000))])
        self.r.shuffle(opts)
        return Frag(w + [x for o in opts for x in o])

    RECENT_NAMES = ("DEFAULT", "ssh", "badguys", "r1", "port-scan")

    def m_recent(self) -> Frag:
        cmd = self.pick("--set", "--rcheck", "--update", "--remove")
        w = ["-m", "recent"] + self.neg(0.1) + [cmd]
        if self.p(0.6):
            w += ["--name", self.r.choice(self.RECENT_NAMES)]
        if self.p(0.3):
            w.append(self.pick("--rsource", "--rdest"))
        if cmd in ("--rcheck", "--update"):
            if self.p(0.5):
                w += ["--seconds", str(self.r.randint(1, 3600))]
                if self.p(0.3):
                    w.append("--reap")
            if self.p(0.4):
                w += ["--hitcount", str(self.r.randint(1, 20))]
            if self.p(0.2):
                w.append("--rttl")
        if self.p(0.15):
            w += ["--mask", self.mask()]
        return Frag(w)

    def m_length(self) -> Frag:
        a, b = sorted((self.r.randint(0, 65535), self.r.randint(0, 65535)))
        v = self.pick(str(a), f"{a}:{b}", f":{b}", f"{a}:")
        return Frag(["-m", "length"] + self.neg() + ["--length", v])

    def m_ttl(self) -> Frag:
        opt = self.pick("--ttl-eq", "--ttl-lt", "--ttl-gt")
        return Frag(["-m", "ttl"] + (self.neg() if opt == "--ttl-eq" else []) + [opt, str(self.r.randint(0, 255))])

    def m_mac(self) -> Frag:
        mac = ":".join(f"{self.r.randint(0, 255):02{self.pick('x', 'X')}}" for _ in range(6))
        return Frag(["-m", "mac"] + self.neg() + ["--mac-source", mac], chains=IN_CHAINS)

    def m_pkttype(self) -> Frag:
        t = self.pick("unicast", "broadcast", "multicast", "host", "otherhost", "outgoing",
                      "bcast", "mcast", "BROADCAST", "Unicast")
        return Frag(["-m", "pkttype"] + self.neg() + ["--pkt-type", t])

    TOS_NAMES = ("Minimize-Delay", "Maximize-Throughput", "Maximize-Reliability", "Minimize-Cost",
                 "Normal-Service", "minimize-delay", "0x10", "0x08")

    def m_tos(self) -> Frag:
        if self.p(0.5):
            v = self.r.choice(self.TOS_NAMES)
        else:
            v = self.num(0, 255, 0.5) + ("/" + self.num(0, 255, 0.7) if self.p(0.4) else "")
        return Frag(["-m", "tos"] + self.neg() + ["--tos", v])

    DSCP_CLASSES = ("AF11", "AF12", "AF13", "AF21", "AF22", "AF23", "AF31", "AF32", "AF33",
                    "AF41", "AF42", "AF43", "CS0", "CS1", "CS2", "CS3", "CS4", "CS5", "CS6",
                    "CS7", "EF", "BE", "af41", "ef")

    def m_dscp(self) -> Frag:
        if self.p(0.6):
            o = ["--dscp", self.num(0, 63, 0.4)]
        else:
            o = ["--dscp-class", self.r.choice(self.DSCP_CLASSES)]
        return Frag(["-m", "dscp"] + self.neg() + o)

    def m_owner(self) -> Frag:
        w = ["-m", "owner"]
        if self.p(0.6):
            u = self.pick("0", "root", "nobody", "daemon", str(self.r.randint(0, 70000)),
                          f"{self.r.randint(0, 100)}-{self.r.randint(100, 5000)}")
            w += self.neg() + ["--uid-owner", u]
        if self.p(0.5):
            g = self.pick("0", "root", "nogroup", "daemon", str(self.r.randint(0, 70000)),
                          f"{self.r.randint(0, 10)}-{self.r.randint(10, 500)}")
            w += self.neg() + ["--gid-owner", g]
            if self.p(0.3):
                w += self.neg(0.1) + ["--suppl-groups"]
        if self.p(0.3) or len(w) == 2:
            w += self.neg() + ["--socket-exists"]
        return Frag(w, chains=_fs("OUTPUT", "POSTROUTING"))

    # ---- targets (good) -------------------------------------------------
    def t_ACCEPT(self) -> Frag:
        return Frag(["-j", "ACCEPT"])

    def t_DROP(self) -> Frag:
        return Frag(["-j", "DROP"])

    def t_RETURN(self) -> Frag:
        return Frag(["-j", "RETURN"])

    REJECT_WITH = ("icmp-net-unreachable", "icmp-host-unreachable", "icmp-port-unreachable",
                   "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited",
                   "icmp-admin-prohibited", "net-unreach", "host-unreach", "port-unreach",
                   "proto-unreach", "net-prohib", "host-prohib", "admin-prohib",
                   "net-unreachable", "host-unreachable", "port-unreachable", "prot-unreachable")

    def t_REJECT(self) -> Frag:
        w = ["-j", "REJECT"]
        proto = None
        if self.p(0.2):
            w += ["--reject-with", "tcp-reset"]
            proto = "tcp"
        elif self.p(0.7):
            w += ["--reject-with", self.r.choice(self.REJECT_WITH)]
        return Frag(w, proto=proto, tables=_fs("filter"), chains=_fs("INPUT", "FORWARD", "OUTPUT"))

    def t_LOG(self) -> Frag:
        w = ["-j", "LOG"]
        if self.p(0.5):
            w += ["--log-level", self.pick(str(self.r.randint(0, 7)), "emerg", "alert", "crit", "err",
                                           "warning", "notice", "info", "debug", "warn", "error",
                                           "panic")]
        if self.p(0.5):
            w += ["--log-prefix", self.text(29)]
        for o in ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid",
                  "--log-macdecode"):
            if self.p(0.15):
                w.append(o)
        return Frag(w)

    def t_NFLOG(self) -> Frag:
        w = ["-j", "NFLOG"]
        if self.p(0.6):
            w += ["--nflog-group", str(self.r.randint(0, 65535))]
        if self.p(0.4):
            w += ["--nflog-prefix", self.text(64)]
        if self.p(0.2):
            w += ["--nflog-size", str(self.r.randint(0, 0xFFFFFFFF))]
        elif self.p(0.1):
            w += ["--nflog-range", str(self.r.randint(0, 100000))]
        if self.p(0.2):
            w += ["--nflog-threshold", str(self.r.randint(1, 100))]
        return Frag(w)

    def _addr_range(self) -> str:
        a, b = sorted((self.ip(), self.ip()), key=lambda s: tuple(int(x) for x in s.split(".")))
        return f"{a}-{b}" if self.p(0.3) else a

    def _nat_to(self) -> tuple[str, str | None]:
        addr = self._addr_range()
        if self.p(0.35):
            a, b = sorted((self.r.randint(1, 65535), self.r.randint(1, 65535)))
            port = str(a) if self.p(0.5) else f"{a}-{b}"
            return f"{addr}:{port}", "tcpudp"
        return addr, None

    def t_DNAT(self) -> Frag:
        to, proto = self._nat_to()
        w = ["-j", "DNAT", self.pick("--to-destination", "--to-destination", "--to"), to]
        if self.p(0.2):
            w.append("--random")
        if self.p(0.15):
            w.append("--persistent")
        return Frag(w, proto=proto, tables=_fs("nat"), chains=_fs("PREROUTING", "OUTPUT"))

    def t_SNAT(self) -> Frag:
        to, proto = self._nat_to()
        w = ["-j", "SNAT", self.pick("--to-source", "--to-source", "--to"), to]
        for o in ("--random", "--random-fully", "--persistent"):
            if self.p(0.15):
                w.append(o)
        return Frag(w, proto=proto, tables=_fs("nat"), chains=_fs("POSTROUTING", "INPUT"))

    def _ports(self) -> str:
        a, b = sorted((self.r.randint(1, 65535), self.r.randint(1, 65535)))
        return str(a) if self.p(0.5) else f"{a}-{b}"

    def t_MASQUERADE(self) -> Frag:
        w = ["-j", "MASQUERADE"]
        proto = None
        if self.p(0.4):
            w += ["--to-ports", self._ports()]
            proto = "tcpudp"
        for o in ("--random", "--random-fully"):
            if self.p(0.15):
                w.append(o)
        return Frag(w, proto=proto, tables=_fs("nat"), chains=_fs("POSTROUTING"))

    def t_REDIRECT(self) -> Frag:
        w = ["-j", "REDIRECT"]
        proto = None
        if self.p(0.7):
            w += ["--to-ports", self._ports()]
            proto = "tcpudp"
        if self.p(0.15):
            w.append("--random")
        return Frag(w, proto=proto, tables=_fs("nat"), chains=_fs("PREROUTING", "OUTPUT"))

    def t_MARK(self) -> Frag:
        opt = self.pick("--set-mark", "--set-xmark", "--and-mark", "--or-mark", "--xor-mark")
        v = self.markval() if opt in ("--set-mark", "--set-xmark") else self.num(0, 0xFFFFFFFF, 0.7)
        return Frag(["-j", "MARK", opt, v])

    def t_CONNMARK(self) -> Frag:
        x = self.r.random()
        if x < 0.3:
            w = [self.pick("--set-mark", "--set-xmark"), self.markval()]
        elif x < 0.5:
            w = [self.pick("--and-mark", "--or-mark", "--xor-mark"), self.num(0, 0xFFFFFFFF, 0.7)]
        else:
            w = [self.pick("--save-mark", "--restore-mark")]
            if self.p(0.3):
                w += ["--mask", self.num(0, 0xFFFFFFFF, 0.8)]
            else:
                if self.p(0.3):
                    w += ["--nfmask", self.num(0, 0xFFFFFFFF, 0.8)]
                if self.p(0.3):
                    w += ["--ctmask", self.num(0, 0xFFFFFFFF, 0.8)]
        return Frag(["-j", "CONNMARK"] + w)

    def t_NOTRACK(self) -> Frag:
        return Frag(["-j", "NOTRACK"], tables=_fs("raw"))

    def t_CT(self) -> Frag:
        w = ["-j", "CT"]
        if self.p(0.3):
            w.append("--notrack")
        else:
            if self.p(0.4):
                w += [self.pick("--zone", "--zone-orig", "--zone-reply"), str(self.r.randint(0, 65535))]
            if self.p(0.4):
                ev = ("new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark",
                      "natseqinfo", "secmark")
                w += ["--ctevents", ",".join(self.r.sample(ev, self.r.randint(1, 3)))]
            if self.p(0.2):
                w += ["--expevents", "new"]
        return Frag(w, tables=_fs("raw"))

    def t_TRACE(self) -> Frag:
        return Frag(["-j", "TRACE"], tables=_fs("raw"))

    def t_NFQUEUE(self) -> Frag:
        w = ["-j", "NFQUEUE"]
        if self.p(0.4):
            w += ["--queue-num", str(self.r.randint(0, 65535))]
        elif self.p(0.4):
            a = self.r.randint(0, 60000)
            w += ["--queue-balance", f"{a}:{a + self.r.randint(1, 100)}"]
            if self.p(0.3):
                w.append("--queue-cpu-fanout")
        if self.p(0.3):
            w.append("--queue-bypass")
        return Frag(w)

    def t_TCPMSS(self) -> Frag:
        syn = self.pick(["--syn"], ["--tcp-flags", "SYN,RST", "SYN"], ["--tcp-flags", "SYN,ACK,RST", "SYN"])
        if self.p(0.5):
            return Frag(syn + ["-j", "TCPMSS", "--clamp-mss-to-pmtu"], proto="tcp",
                        chains=_fs("FORWARD", "OUTPUT", "POSTROUTING"))
        return Frag(syn + ["-j", "TCPMSS", "--set-mss", str(self.r.randint(0, 65535))], proto="tcp")

    def t_DSCP(self) -> Frag:
        if self.p(0.6):
            w = ["--set-dscp", self.num(0, 63, 0.4)]
        else:
            w = ["--set-dscp-class", self.r.choice(self.DSCP_CLASSES)]
        return Frag(["-j", "DSCP"] + w, tables=_fs("mangle"))

    def t_TOS(self) -> Frag:
        x = self.r.random()
        if x < 0.3:
            w = ["--set-tos", self.r.choice(self.TOS_NAMES)]
        elif x < 0.6:
            w = ["--set-tos", self.num(0, 255, 0.5) + ("/" + self.num(0, 255, 0.7) if self.p(0.5) else "")]
        else:
            w = [self.pick("--and-tos", "--or-tos", "--xor-tos"), self.num(0, 255, 0.5)]
        return Frag(["-j", "TOS"] + w, tables=_fs("mangle"))

    def t_TTL(self) -> Frag:
        opt = self.pick("--ttl-set", "--ttl-dec", "--ttl-inc")
        lo = 0 if opt == "--ttl-set" else 1
        return Frag(["-j", "TTL", opt, str(self.r.randint(lo, 255))], tables=_fs("mangle"))

    # ---- bad fragments: (words, note), some with a proto/chain context --
    def bad_match(self, name: str) -> tuple[Frag, str]:
        r = self.r
        big = str(r.choice((65536, 70000, 99999999, 4294967296)))
        cat: dict[str, list[tuple[list[str], str | None, str]]] = {
            "tcp": [
                (["--dport", big], "tcp", "range"), (["--sport", "10:5"], "tcp", "min>max"),
                (["--sport", "abc"], "tcp", "badport"), (["--tcp-flags", "SYN"], "tcp", "missing-arg"),
                (["--tcp-flags", "FOO", "SYN"], "tcp", "badflag"),
                (["--syn", "--tcp-flags", "ALL", "SYN"], "tcp", "conflict"),
                (["--tcp-option", "256"], "tcp", "range"), (["--tcp-option", "0"], "tcp", "range"),
                (["--dport", "1", "--destination-port", "2"], "tcp", "dup"),
                (["--dport", "22"], None, "noproto"), (["-m", "tcp", "--dport", "22"], "udp", "wrongproto"),
                (["-m", "tcp", "--sport", "1"], None, "noproto-m"), (["--dport", "1:2:3"], "tcp", "badport"),
                (["--dport", "!", "22"], "tcp", "intrapositioned"), (["--dport", "-1"], "tcp", "badport"),
                (["--dport", "ssh2"], "tcp", "badport"), (["--tcp-flags", "SYN,ACK", "FIN,BOGUS"], "tcp", "badflag"),
            ],
            "udp": [
                (["--dport", big], "udp", "range"), (["--sport", "1:2:3"], "udp", "badport"),
                (["--dport", "nosuchservice"], "udp", "badport"), (["--syn"], "udp", "unknown"),
                (["--sport", "9:3"], "udp", "min>max"), (["--dport", "53"], None, "noproto"),
                (["-m", "udp", "--dport", "53"], "tcp", "wrongproto"), (["--sport", ""], "udp", "empty"),
            ],
            "icmp": [
                (["--icmp-type", "foo"], "icmp", "badtype"), (["--icmp-type", "256"], "icmp", "range"),
                (["--icmp-type", "3/256"], "icmp", "range"), (["--icmp-type", "echo"], "icmp", "ambiguous"),
                (["--icmp-type", "8"], None, "noproto"), (["-m", "icmp", "--icmp-type", "8"], "tcp", "wrongproto"),
                (["--icmp-type", "8/"], "icmp", "badtype"), (["--icmp-type", "-1"], "icmp", "badtype"),
                (["--icmp-type", ""], "icmp", "empty"),
            ],
            "multiport": [
                (["-m", "multiport", "--ports", ",".join(str(i) for i in range(1, 17))], "tcp", "toomany"),
                (["-m", "multiport", "--dports", "1,,2"], "tcp", "badport"),
                (["-m", "multiport", "--dports", "22,80"], None, "noproto"),
                (["-m", "multiport", "--dports", "22,80"], "icmp", "wrongproto"),
                (["-m", "multiport", "--dports", "5:1"], "udp", "min>max"),
                (["-m", "multiport", "--sports", "1", "--dports", "2"], "tcp", "conflict"),
                (["-m", "multiport"], "tcp", "noopt"),
                (["-m", "multiport", "--ports", big], "tcp", "range"),
                (["-m", "multiport", "--dports", "1-5"], "tcp", "badport"),
                (["-m", "multiport", "--ports", ",".join(f"{i}:{i + 1}" for i in range(1, 20, 2))], "tcp", "toomany"),
                (["-m", "multiport", "--dports", "22,80"], "all", "proto-all"),
            ],
            "conntrack": [
                (["-m", "conntrack", "--ctstate", "NEWW"], None, "badvalue"),
                (["-m", "conntrack", "--ctstatus", "FOO"], None, "badvalue"),
                (["-m", "conntrack", "--ctexpire", "5:1"], None, "min>max"),
                (["-m", "conntrack", "--ctdir", "SIDEWAYS"], None, "badvalue"),
                (["-m", "conntrack", "--ctproto", "nosuchproto"], None, "badvalue"),
                (["-m", "conntrack", "--ctorigsrc", "1.2.3.4/40"], None, "badaddr"),
                (["-m", "conntrack", "--ctorigsrcport", big], None, "range"),
                (["-m", "conntrack"], None, "noopt"),
                (["-m", "conntrack", "--ctstate", "NEW", "--ctstate", "ESTABLISHED"], None, "dup"),
                (["-m", "conntrack", "!", "--ctdir", "REPLY"], None, "badneg"),
                (["-m", "conntrack", "--ctstate", ""], None, "empty"),
                (["-m", "conntrack", "--ctexpire", big], None, "range"),
                (["-m", "conntrack", "--ctproto", "0"], None, "zero-proto"),
            ],
            "state": [
                (["-m", "state", "--state", "FOO"], None, "badvalue"),
                (["-m", "state"], None, "noopt"),
                (["-m", "state", "--state", "NEW,,ESTABLISHED"], None, "badvalue"),
                (["-m", "state", "--state", "SNAT"], None, "badvalue"),
                (["-m", "state", "--state", "new"], None, "case"),
            ],
            "mark": [
                (["-m", "mark", "--mark", "0x1ffffffff"], None, "range"),
                (["-m", "mark", "--mark", "foo"], None, "badvalue"),
                (["-m", "mark", "--mark", "1/"], None, "badvalue"),
                (["-m", "mark"], None, "noopt"),
                (["-m", "mark", "--mark", "1", "--mark", "2"], None, "dup"),
                (["-m", "mark", "--mark", "-1"], None, "badvalue"),
                (["-m", "mark", "--mark", "1/0x1ffffffff"], None, "range"),
            ],
            "connmark": [
                (["-m", "connmark", "--mark", "4294967296"], None, "range"),
                (["-m", "connmark", "--mark", "0xg"], None, "badvalue"),
                (["-m", "connmark"], None, "noopt"),
                (["-m", "connmark", "--mark", "1/2/3"], None, "badvalue"),
            ],
            "comment": [
                (["-m", "comment", "--comment", "x" * 256], None, "toolong"),
                (["-m", "comment", "--comment", "é" * 130], None, "toolong-utf8"),
                (["-m", "comment", "--comment", "z" * 300], None, "toolong"),
                (["-m", "comment"], None, "noopt"),
                (["-m", "comment", "--comment"], None, "missing-arg"),
                (["-m", "comment", "--comment", "a", "--comment", "b"], None, "dup"),
                (["-m", "comment", "!", "--comment", "a"], None, "badneg"),
            ],
            "iprange": [
                (["-m", "iprange", "--src-range", "1.2.3.4-foo"], None, "badaddr"),
                (["-m", "iprange", "--dst-range", "1.2.3.300-1.2.3.4"], None, "badaddr"),
                (["-m", "iprange"], None, "noopt"),
                (["-m", "iprange", "--src-range", "1.2.3.4/24"], None, "badaddr"),
                (["-m", "iprange", "--src-range", "1.2.3.4-1.2.3.5-1.2.3.6"], None, "badaddr"),
                (["-m", "iprange", "--src-range", "10.0.0.9-10.0.0.1"], None, "min>max"),
            ],
            "addrtype": [
                (["-m", "addrtype", "--src-type", "FOO"], None, "badvalue"),
                (["-m", "addrtype", "--src-type", "LOCAL", "--limit-iface-in", "--limit-iface-out"], None, "conflict"),
                (["-m", "addrtype"], None, "noopt"),
                (["-m", "addrtype", "--dst-type", "local"], None, "case"),
                (["-m", "addrtype", "--src-type", "LOCAL,"], None, "badvalue"),
                (["-m", "addrtype", "--src-type", "LOCAL", "--src-type", "UNICAST"], None, "dup"),
            ],
            "limit": [
                (["-m", "limit", "--limit", "1/fortnight"], None, "badvalue"),
                (["-m", "limit", "--limit-burst", "0"], None, "range"),
                (["-m", "limit", "--limit-burst", "10001"], None, "range"),
                (["-m", "limit", "--limit", "abc"], None, "badvalue"),
                (["-m", "limit", "--limit", "100000/s"], None, "range"),
                (["-m", "limit", "--limit", "0/s"], None, "range"),
                (["-m", "limit", "!", "--limit", "1/s"], None, "badneg"),
                (["-m", "limit", "--limit", "1/s", "--limit", "2/s"], None, "dup"),
            ],
            "hashlimit": [
                (["-m", "hashlimit", "--hashlimit-upto", "1/s"], None, "noname"),
                (["-m", "hashlimit", "--hashlimit-name", "x1"], None, "norate"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-above", "2/s",
                  "--hashlimit-name", "x2"], None, "conflict"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x3",
                  "--hashlimit-mode", "foo"], None, "badvalue"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "n" * 16], None, "toolong"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "m" * 40], None, "toolong"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x4",
                  "--hashlimit-srcmask", "33"], None, "range"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x5",
                  "--hashlimit-burst", "0"], None, "range"),
                (["-m", "hashlimit", "--hashlimit-upto", "0/sec", "--hashlimit-name", "x6"], None, "range"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x7",
                  "--hashlimit-htable-expire", "0"], None, "range"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", ""], None, "empty"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x8",
                  "--hashlimit-mode", "srcip,"], None, "badvalue"),
                (["-m", "hashlimit", "--hashlimit-upto", "1/s", "--hashlimit-name", "x9",
                  "--hashlimit-mode", "srcport"], None, "port-mode-without-proto"),
            ],
            "recent": [
                (["-m", "recent", "--set", "--rcheck"], None, "conflict"),
                (["-m", "recent", "--set", "--seconds", "10"], None, "seconds-with-set"),
                (["-m", "recent", "--rcheck", "--hitcount", "300"], None, "range"),
                (["-m", "recent", "--set", "--name", "a/b"], None, "badname"),
                (["-m", "recent", "--rcheck", "--reap"], None, "reap-without-seconds"),
                (["-m", "recent", "--set", "--rsource", "--rdest"], None, "conflict"),
                (["-m", "recent", "--seconds", "5"], None, "nocmd"),
                (["-m", "recent", "--set", "--name", "x" * 201], None, "toolong"),
                (["-m", "recent", "--update", "--seconds", "abc"], None, "badvalue"),
                (["-m", "recent", "--set", "--name", ""], None, "empty"),
                (["-m", "recent", "--set", "--mask", "255.0.255.0x"], None, "badaddr"),
            ],
            "length": [
                (["-m", "length", "--length", big], None, "range"),
                (["-m", "length", "--length", "5:1"], None, "min>max"),
                (["-m", "length", "--length", "a"], None, "badvalue"),
                (["-m", "length"], None, "noopt"),
                (["-m", "length", "--length", "1-5"], None, "badvalue"),
            ],
            "ttl": [
                (["-m", "ttl", "--ttl-eq", "256"], None, "range"),
                (["-m", "ttl", "--ttl-eq", "1", "--ttl-lt", "2"], None, "conflict"),
                (["-m", "ttl", "!", "--ttl-lt", "3"], None, "badneg"),
                (["-m", "ttl"], None, "noopt"),
                (["-m", "ttl", "--ttl-gt", "x"], None, "badvalue"),
            ],
            "mac": [
                (["-m", "mac", "--mac-source", "00:11:22:33:44"], None, "badvalue"),
                (["-m", "mac", "--mac-source", "zz:11:22:33:44:55"], None, "badvalue"),
                (["-m", "mac", "--mac-source", "00:11:22:33:44:55"], "chain:OUTPUT", "wrongchain"),
                (["-m", "mac"], None, "noopt"),
                (["-m", "mac", "--mac-source", "00-11-22-33-44-55"], None, "badvalue"),
                (["-m", "mac", "--mac-source", "0:1:2:3:4:5"], None, "short"),
            ],
            "pkttype": [
                (["-m", "pkttype", "--pkt-type", "foo"], None, "badvalue"),
                (["-m", "pkttype"], None, "noopt"),
                (["-m", "pkttype", "--pkt-type", "host", "--pkt-type", "broadcast"], None, "dup"),
            ],
            "tos": [
                (["-m", "tos", "--tos", "256"], None, "range"),
                (["-m", "tos", "--tos", "Foo-Bar"], None, "badvalue"),
                (["-m", "tos", "--tos", "1/256"], None, "range"),
                (["-m", "tos"], None, "noopt"),
            ],
            "dscp": [
                (["-m", "dscp", "--dscp", "64"], None, "range"),
                (["-m", "dscp", "--dscp-class", "XX"], None, "badvalue"),
                (["-m", "dscp", "--dscp", "1", "--dscp-class", "EF"], None, "conflict"),
                (["-m", "dscp"], None, "noopt"),
                (["-m", "dscp", "--dscp", "0x40"], None, "range"),
            ],
            "owner": [
                (["-m", "owner", "--uid-owner", "0"], "chain:INPUT", "wrongchain"),
                (["-m", "owner", "--uid-owner", "nosuchuser"], "chain:OUTPUT", "badvalue"),
                (["-m", "owner", "--suppl-groups"], "chain:OUTPUT", "suppl-without-gid"),
                (["-m", "owner", "--uid-owner", "5-3"], "chain:OUTPUT", "min>max"),
                (["-m", "owner", "--pid-owner", "1"], "chain:OUTPUT", "removed"),
                (["-m", "owner"], "chain:OUTPUT", "noopt"),
                (["-m", "owner", "--gid-owner", "nosuchgroup"], "chain:OUTPUT", "badvalue"),
                (["-m", "owner", "--uid-owner", "4294967296"], "chain:OUTPUT", "range"),
                (["-m", "owner", "--cmd-owner", "sshd"], "chain:OUTPUT", "removed"),
            ],
        }
        words, ctx, note = r.choice(cat[name])
        frag = Frag(list(words))
        if ctx is not None and ctx.startswith("chain:"):
            frag.chains = _fs(ctx[6:])
        elif ctx is not None:
            frag.proto = ctx
        return frag, note

    def bad_target(self, name: str) -> tuple[Frag, str, str | None]:
        """A broken target fragment, the mistake, and a table to force (or None)."""
        r = self.r
        T = _fs
        cat: dict[str, list[tuple[list[str], str | None, frozenset[str] | None, str | None, str]]] = {
            # words, proto, chains, table, note
            "ACCEPT": [(["-j", "ACCEPT", "--foo"], None, None, None, "unknown"),
                       (["-j", "accept"], None, None, None, "case"),
                       (["-j", "ACCPET"], None, None, None, "typo"),
                       (["-j", "ACCEPT", "-j", "DROP"], None, None, None, "dup")],
            "DROP": [(["-j", "DROP", "x"], None, None, None, "extra"),
                     (["-j"], None, None, None, "missing-arg"),
                     (["-j", "DROPP"], None, None, None, "typo")],
            "RETURN": [(["-j", "RETURN", "--bogus"], None, None, None, "unknown"),
                       (["-j", "RETRUN"], None, None, None, "typo")],
            "REJECT": [(["-j", "REJECT", "--reject-with", "foo"], None, None, None, "badvalue"),
                       (["-j", "REJECT", "--reject-with", "tcp-reset"], None, None, "filter", "noproto"),
                       (["-j", "REJECT"], None, None, "mangle", "wrongtable"),
                       (["-j", "REJECT"], None, T("PREROUTING"), "mangle", "wrongchain"),
                       (["-j", "REJECT", "--reject-with", "echo-reply"], None, None, "filter", "deprecated"),
                       (["-j", "REJECT", "--reject-with", "tcp-reset"], "udp", None, "filter", "wrongproto"),
                       (["-j", "REJECT"], None, None, "nat", "wrongtable")],
            "LOG": [(["-j", "LOG", "--log-level", "8"], None, None, None, "range"),
                    (["-j", "LOG", "--log-level", "foo"], None, None, None, "badvalue"),
                    (["-j", "LOG", "--log-prefix", "p" * 30], None, None, None, "toolong"),
                    (["-j", "LOG", "--log-prefix", ""], None, None, None, "empty"),
                    (["-j", "LOG", "--log-prefix", "a", "--log-prefix", "b"], None, None, None, "dup"),
                    (["-j", "LOG", "--log-level"], None, None, None, "missing-arg"),
                    (["-j", "LOG", "--log-prefix", "new\nline"], None, None, None, "newline")],
            "NFLOG": [(["-j", "NFLOG", "--nflog-group", "70000"], None, None, None, "range"),
                      (["-j", "NFLOG", "--nflog-prefix", "q" * 65], None, None, None, "toolong"),
                      (["-j", "NFLOG", "--nflog-threshold", "0"], None, None, None, "range"),
                      (["-j", "NFLOG", "--nflog-group", "x"], None, None, None, "badvalue"),
                      (["-j", "NFLOG", "--nflog-size", "4294967296"], None, None, None, "range")],
            "DNAT": [(["-j", "DNAT"], None, T("PREROUTING"), "nat", "noopt"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4"], None, T("INPUT"), "filter", "wrongtable"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4"], None, T("POSTROUTING"), "nat", "wrongchain"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4:80"], None, T("PREROUTING"), "nat", "noproto"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4:90-80"], "tcp", T("PREROUTING"), "nat", "min>max"),
                     (["-j", "DNAT", "--to-destination", "foo"], None, T("PREROUTING"), "nat", "badaddr"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4", "--to-destination", "2.3.4.5"],
                      None, T("PREROUTING"), "nat", "dup"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.9-1.2.3.1"], None, T("OUTPUT"), "nat", "min>max"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4:0"], "tcp", T("OUTPUT"), "nat", "range"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4:70000"], "udp", T("OUTPUT"), "nat", "range"),
                     (["-j", "DNAT", "--to-destination", "1.2.3.4"], None, T("PREROUTING"), "mangle", "wrongtable"),
                     (["-j", "DNAT", "--random-fully", "--to-destination", "1.2.3.4"],
                      None, T("PREROUTING"), "nat", "unknown")],
            "SNAT": [(["-j", "SNAT"], None, T("POSTROUTING"), "nat", "noopt"),
                     (["-j", "SNAT", "--to-source", "1.2.3.4"], None, T("PREROUTING"), "nat", "wrongchain"),
                     (["-j", "SNAT", "--to-source", "1.2.3.4:1024"], None, T("POSTROUTING"), "nat", "noproto"),
                     (["-j", "SNAT", "--to-source", "1.2.3"], None, T("POSTROUTING"), "nat", "badaddr"),
                     (["-j", "SNAT", "--to-source", "1.2.3.4:a"], "tcp", T("POSTROUTING"), "nat", "badport"),
                     (["-j", "SNAT", "--to-source", "1.2.3.4"], None, T("OUTPUT"), "filter", "wrongtable"),
                     (["-j", "SNAT", "--to-source", "1.2.3.4/24"], None, T("POSTROUTING"), "nat", "badaddr")],
            "MASQUERADE": [(["-j", "MASQUERADE"], None, T("PREROUTING"), "nat", "wrongchain"),
                           (["-j", "MASQUERADE", "--to-ports", "1"], None, T("POSTROUTING"), "nat", "noproto"),
                           (["-j", "MASQUERADE", "--to-ports", "5-1"], "tcp", T("POSTROUTING"), "nat", "min>max"),
                           (["-j", "MASQUERADE", "--to-ports", "0"], "udp", T("POSTROUTING"), "nat", "range"),
                           (["-j", "MASQUERADE"], None, T("FORWARD"), "filter", "wrongtable"),
                           (["-j", "MASQUERADE", "--to-ports", "abc"], "tcp", T("POSTROUTING"), "nat", "badport")],
            "REDIRECT": [(["-j", "REDIRECT"], None, T("POSTROUTING"), "nat", "wrongchain"),
                         (["-j", "REDIRECT", "--to-ports", "8080"], None, T("PREROUTING"), "nat", "noproto"),
                         (["-j", "REDIRECT", "--to-ports", "99999"], "tcp", T("PREROUTING"), "nat", "range"),
                         (["-j", "REDIRECT", "--to-ports", "80-"], "tcp", T("OUTPUT"), "nat", "badport"),
                         (["-j", "REDIRECT"], None, T("INPUT"), "filter", "wrongtable")],
            "MARK": [(["-j", "MARK"], None, None, "mangle", "noopt"),
                     (["-j", "MARK", "--set-mark", "1", "--and-mark", "2"], None, None, "mangle", "conflict"),
                     (["-j", "MARK", "--set-mark", "foo"], None, None, "mangle", "badvalue"),
                     (["-j", "MARK", "--set-mark", "0x100000000"], None, None, "mangle", "range"),
                     (["-j", "MARK", "--or-mark", "1/2"], None, None, "mangle", "badvalue"),
                     (["-j", "MARK", "--set-mark", "1", "--set-mark", "2"], None, None, "mangle", "dup")],
            "CONNMARK": [(["-j", "CONNMARK"], None, None, "mangle", "noopt"),
                         (["-j", "CONNMARK", "--save-mark", "--restore-mark"], None, None, "mangle", "conflict"),
                         (["-j", "CONNMARK", "--mask", "1"], None, None, "mangle", "mask-alone"),
                         (["-j", "CONNMARK", "--set-mark", "x"], None, None, "mangle", "badvalue"),
                         (["-j", "CONNMARK", "--save-mark", "--mask", "1", "--nfmask", "2"], None, None,
                          "mangle", "conflict"),
                         (["-j", "CONNMARK", "--restore-mark", "--left-shift-mark", "3"], None, None,
                          "mangle", "shift"),
                         (["-j", "CONNMARK", "--set-mark", "1", "--set-xmark", "2"], None, None, "mangle", "conflict")],
            "NOTRACK": [(["-j", "NOTRACK"], None, None, "filter", "wrongtable"),
                        (["-j", "NOTRACK"], None, None, "mangle", "wrongtable"),
                        (["-j", "NOTRACK", "--notrack"], None, None, "raw", "unknown")],
            "CT": [(["-j", "CT", "--notrack"], None, None, "filter", "wrongtable"),
                   (["-j", "CT", "--zone", "70000"], None, None, "raw", "range"),
                   (["-j", "CT", "--ctevents", "foo"], None, None, "raw", "badvalue"),
                   (["-j", "CT", "--helper", "nosuchhelper"], None, None, "raw", "nohelper"),
                   (["-j", "CT", "--timeout", "x"], None, None, "raw", "notimeout"),
                   (["-j", "CT", "--notrack", "--zone", "1"], None, None, "raw", "conflict"),
                   (["-j", "CT", "--expevents", "destroy"], None, None, "raw", "badvalue"),
                   (["-j", "CT", "--zone", "1", "--zone-orig", "2"], None, None, "raw", "conflict")],
            "TRACE": [(["-j", "TRACE"], None, None, "filter", "wrongtable"),
                      (["-j", "TRACE"], None, None, "nat", "wrongtable"),
                      (["-j", "TRACE", "--x"], None, None, "raw", "unknown")],
            "NFQUEUE": [(["-j", "NFQUEUE", "--queue-num", "65536"], None, None, None, "range"),
                        (["-j", "NFQUEUE", "--queue-balance", "5:1"], None, None, None, "min>max"),
                        (["-j", "NFQUEUE", "--queue-num", "1", "--queue-balance", "1:2"], None, None, None, "conflict"),
                        (["-j", "NFQUEUE", "--queue-cpu-fanout"], None, None, None, "fanout-without-balance"),
                        (["-j", "NFQUEUE", "--queue-balance", "3"], None, None, None, "badvalue"),
                        (["-j", "NFQUEUE", "--queue-balance", "65535:65536"], None, None, None, "range")],
            "TCPMSS": [(["-j", "TCPMSS"], "tcp", T("FORWARD"), "mangle", "noopt"),
                       (["-j", "TCPMSS", "--set-mss", "1400"], None, T("FORWARD"), "mangle", "noproto"),
                       (["-j", "TCPMSS", "--set-mss", "1400"], "tcp", T("FORWARD"), "mangle", "nosyn"),
                       (["--syn", "-j", "TCPMSS", "--clamp-mss-to-pmtu"], "tcp", T("INPUT"), "mangle", "wrongchain"),
                       (["--syn", "-j", "TCPMSS", "--set-mss", "70000"], "tcp", T("FORWARD"), "mangle", "range"),
                       (["--syn", "-j", "TCPMSS", "--set-mss", "1", "--clamp-mss-to-pmtu"], "tcp", T("FORWARD"),
                        "mangle", "conflict"),
                       (["--syn", "-j", "TCPMSS", "--set-mss", "1400"], "tcp", T("FORWARD"), "filter", "filter-ok?")],
            "DSCP": [(["-j", "DSCP", "--set-dscp", "1"], None, None, "filter", "wrongtable"),
                     (["-j", "DSCP", "--set-dscp", "64"], None, None, "mangle", "range"),
                     (["-j", "DSCP", "--set-dscp-class", "foo"], None, None, "mangle", "badvalue"),
                     (["-j", "DSCP", "--set-dscp", "1", "--set-dscp-class", "EF"], None, None, "mangle", "conflict"),
                     (["-j", "DSCP"], None, None, "mangle", "noopt")],
            "TOS": [(["-j", "TOS", "--set-tos", "1"], None, None, "filter", "wrongtable"),
                    (["-j", "TOS", "--set-tos", "256"], None, None, "mangle", "range"),
                    (["-j", "TOS", "--set-tos", "foo"], None, None, "mangle", "badvalue"),
                    (["-j", "TOS"], None, None, "mangle", "noopt"),
                    (["-j", "TOS", "--and-tos", "1/2"], None, None, "mangle", "badvalue"),
                    (["-j", "TOS", "--set-tos", "1", "--or-tos", "2"], None, None, "mangle", "conflict")],
            "TTL": [(["-j", "TTL", "--ttl-set", "1"], None, None, "filter", "wrongtable"),
                    (["-j", "TTL", "--ttl-set", "256"], None, None, "mangle", "range"),
                    (["-j", "TTL", "--ttl-set", "1", "--ttl-dec", "1"], None, None, "mangle", "conflict"),
                    (["-j", "TTL", "--ttl-dec", "0"], None, None, "mangle", "range"),
                    (["-j", "TTL"], None, None, "mangle", "noopt"),
                    (["-j", "TTL", "--ttl-inc", "x"], None, None, "mangle", "badvalue")],
        }
        words, proto, chains, table, note = r.choice(cat[name])
        return Frag(list(words), proto=proto, chains=chains), note, table


class RuleGen:
    """Whole command lines: a subject's fragment plus a rule around it."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.g = Gen(self.r)

    # ---- helpers --------------------------------------------------------
    def _target_frag(self, name: str) -> Frag:
        frag: Frag = getattr(self.g, f"t_{name}")()
        return frag

    def _match_frag(self, name: str) -> Frag:
        frag: Frag = getattr(self.g, f"m_{name}")()
        return frag

    @staticmethod
    def _proto_join(a: str | None, b: str | None) -> str | None | bool:
        """The one protocol satisfying both needs, None (no need), or False (clash)."""
        if a is None:
            return b
        if b is None or a == b:
            return a
        if "tcpudp" in (a, b):
            other = b if a == "tcpudp" else a
            return other if other in ("tcp", "udp") else False
        return False

    def _place(self, frags: list[Frag], force_table: str | None = None) -> tuple[str, str, str | None] | None:
        """(table, chain, proto) satisfying every fragment, or None."""
        proto: str | None | bool = None
        tables = set(TABLES)
        chains = set(ALL_CHAINS)
        for f in frags:
            proto = self._proto_join(proto if isinstance(proto, str) else None, f.proto)
            if proto is False:
                return None
            if f.tables is not None:
                tables &= f.tables
            if f.chains is not None:
                chains &= f.chains
        if force_table is not None:
            tables = {force_table}
        options = [(t, c) for t in sorted(tables) for c in TABLES[t] if c in chains]
        if not options:
            return None
        table, chain = self.r.choice(options)
        if self.g.p(0.12) and all(f.chains is None for f in frags):
            chain = self.r.choice(USER_CHAINS[table])
        if proto == "tcpudp":
            proto = self.r.choice(("tcp", "udp"))
        return table, chain, proto if isinstance(proto, str) else None

    def _base(self, chain: str, proto: str | None, free_proto: bool) -> tuple[list[str], list[str]]:
        """(words before the matches, words that may go anywhere)."""
        g = self.g
        head: list[str] = []
        if proto is not None:
            head += [g.pick("-p", "-p", "--protocol", "--proto"),
                     proto if g.p(0.85) else {"tcp": "6", "udp": "17", "icmp": "1"}.get(proto, proto)]
        elif free_proto and g.p(0.3):
            head += g.neg(0.2) + ["-p", g.pick("tcp", "udp", "icmp", "all", "sctp", "47", "TCP", "0", "udplite")]
        loose: list[str] = []
        if g.p(0.3):
            loose += g.neg(0.15) + [g.pick("-s", "--source", "--src"), g.nets()]
        if g.p(0.25):
            loose += g.neg(0.15) + [g.pick("-d", "--destination", "--dst"), g.nets()]
        if chain not in ("OUTPUT", "POSTROUTING") and g.p(0.2):
            loose += g.neg(0.2) + [g.pick("-i", "--in-interface"), g.iface()]
        if chain not in ("PREROUTING", "INPUT") and g.p(0.2):
            loose += g.neg(0.2) + [g.pick("-o", "--out-interface"), g.iface()]
        if g.p(0.04):
            loose += g.neg(0.3) + [g.pick("-f", "--fragment")]
        if g.p(0.1):
            top = self.r.choice((10**5, 10**9, 10**12, 10**16))
            loose += [g.pick("-c", "--set-counters"), str(self.r.randint(0, top)), str(self.r.randint(0, top * 1000))]
        return head, loose

    def _assemble(self, table: str, chain: str, head: list[str], loose: list[str],
                  body: list[str], cmd: str = "-A") -> list[str]:
        g = self.g
        argv: list[str] = []
        if table != "filter" or g.p(0.6):
            argv += [g.pick("-t", "-t", "--table"), table]
        argv += [cmd, chain]
        if cmd == "-I" and g.p(0.3):
            argv.append("1")
        if loose and g.p(0.2):
            argv += head + body + loose if "-j" in body or "-g" in body else head + loose + body
        else:
            argv += head + loose + body
        if g.p(0.03):
            argv.append(g.pick("-v", "--verbose"))
        return argv

    def _good_rule(self, subject: str) -> Case | None:
        g = self.g
        if subject.startswith("j:"):
            tfrag = self._target_frag(subject[2:])
            mfrags = []
            if g.p(0.35):
                mfrags.append(self._match_frag(self.r.choice(("comment", "mark", "conntrack", "limit",
                                                               "iprange", "tcp", "udp", "length"))))
        else:
            mfrags = [self._match_frag(subject[2:])]
            if g.p(0.2):
                mfrags.append(self._match_frag(self.r.choice(MATCHES)))
            tfrag = self._target_frag(self.r.choice(("ACCEPT", "DROP", "RETURN", "LOG", "ACCEPT", "MARK",
                                                     "NFLOG", "CONNMARK", "NFQUEUE")))
        placed = self._place(mfrags + [tfrag])
        if placed is None:
            return None
        table, chain, proto = placed
        head, loose = self._base(chain, proto, proto is None and all(f.proto is None for f in mfrags))
        body = [w for f in mfrags for w in f.words] + tfrag.words
        cmd = "-I" if g.p(0.1) else "-A"
        return Case(self._assemble(table, chain, head, loose, body, cmd), table, chain, subject, "good")

    # ---- bad rules ----------------------------------------------------
    def _bad_specific(self, subject: str) -> Case | None:
        g = self.g
        force_table = None
        if subject.startswith("m:"):
            frag, note = g.bad_match(subject[2:])
            tfrag = self._target_frag(self.r.choice(("ACCEPT", "DROP", "LOG")))
            frags = [frag, tfrag]
            body = frag.words + tfrag.words
        else:
            frag, note, force_table = g.bad_target(subject[2:])
            frags = [frag]
            body = frag.words
        proto = frag.proto
        chains = frag.chains
        tables = [force_table] if force_table else sorted(TABLES)
        opts = [(t, c) for t in tables for c in TABLES[t] if chains is None or c in chains]
        if not opts:  # e.g. a chain that table lacks: use it anyway
            t = tables[0]
            opts = [(t, next(iter(chains)))] if chains else [(t, TABLES[t][0])]
        table, chain = self.r.choice(opts)
        del frags
        head = ["-p", proto] if proto else []
        _, loose = self._base(chain, None, False)
        if g.p(0.5):
            loose = []
        return Case(self._assemble(table, chain, head, loose, body), table, chain, subject, "bad", note)

    def _typo(self, word: str) -> str:
        s = list(word.lstrip("-"))
        pre = word[: len(word) - len(s)]
        k = self.r.randint(0, 3)
        if len(s) > 2 and k == 0:
            i = self.r.randrange(len(s) - 1)
            s[i], s[i + 1] = s[i + 1], s[i]
        elif len(s) > 3 and k == 1:
            del s[-1]  # may become a valid abbreviation: getopt accepts unique prefixes
        elif k == 2:
            s.insert(self.r.randrange(len(s) + 1), self.r.choice("xqz"))
        else:
            s = list(word.lstrip("-").upper() if word.lstrip("-").islower() else word.lstrip("-").lower())
        return pre + "".join(s)

    def _mutate(self, case: Case) -> Case:
        """A generic mistake applied to a good command line."""
        g = self.g
        argv = list(case.argv)
        kinds = ["typo", "unknown", "noproto", "table", "chain", "missing-arg", "dup", "badaddr",
                 "order", "badiface", "neg2", "valuetypo"]
        kind = self.r.choice(kinds)
        longs = [i for i, w in enumerate(argv) if w.startswith("--") and w not in ("--table",)]
        if kind == "typo" and longs:
            i = self.r.choice(longs)
            argv[i] = self._typo(argv[i])
        elif kind == "unknown":
            i = self.r.randint(2, len(argv))
            argv[i:i] = self.r.choice((["--bogus"], ["-Y"], ["--foo", "bar"], ["-z"], ["--"], ["-"]))
        elif kind == "noproto" and ("-p" in argv or "--protocol" in argv or "--proto" in argv):
            i = next(i for i, w in enumerate(argv) if w in ("-p", "--protocol", "--proto"))
            del argv[i:i + 2]
            if i > 0 and argv[i - 1] == "!":
                del argv[i - 1]
        elif kind == "table":
            others = [t for t in TABLES if t != case.table]
            t = self.r.choice(others)
            if "-t" in argv or "--table" in argv:
                i = next(i for i, w in enumerate(argv) if w in ("-t", "--table"))
                argv[i + 1] = t
            else:
                argv[0:0] = ["-t", t]
        elif kind == "chain":
            i = next(i for i, w in enumerate(argv) if w in ("-A", "-I"))
            argv[i + 1] = self.r.choice(TABLES[case.table] + ("NOSUCH", "input", "PREROUTING", "OUTPUT"))
        elif kind == "missing-arg":
            # cut right after an option that takes an argument
            cand = [i for i, w in enumerate(argv[:-1]) if w.startswith("-") and not argv[i + 1].startswith("-")
                    and argv[i + 1] != "!" and i > 2]
            if cand:
                argv = argv[: self.r.choice(cand) + 1]
            else:
                argv = argv[:-1]
        elif kind == "dup":
            cand = [i for i, w in enumerate(argv[:-1]) if w.startswith("-") and i > 1
                    and not argv[i + 1].startswith("-")]
            if cand:
                i = self.r.choice(cand)
                argv[i + 2:i + 2] = argv[i:i + 2]
        elif kind == "badaddr":
            i = self.r.randint(3, len(argv))
            argv[i:i] = [g.pick("-s", "-d"), g.bad_net()]
        elif kind == "order" and "-p" in argv:
            i = argv.index("-p")
            w = argv[i:i + 2]
            del argv[i:i + 2]
            argv += w
        elif kind == "badiface":
            i = self.r.randint(3, len(argv))
            argv[i:i] = [g.pick("-i", "-o"), g.pick("abcdefghijklmnop", "eth0+x", "a b", "eth 0", "",
                                                     "ethernet0123456", "eth:0", "eth/0", "lo", "+")]
        elif kind == "neg2":
            i = self.r.randint(3, len(argv))
            argv[i:i] = self.r.choice((["!", "!", "-s", "1.2.3.4"], ["!"], ["!", "-j", "ACCEPT"],
                                       ["!", "-s", "1.1.1.1,2.2.2.2"], ["!", "-c", "1", "2"]))
        else:  # valuetypo / fallbacks: garble an argument value
            vals = [i for i, w in enumerate(argv) if i > 2 and not w.startswith("-") and argv[i - 1].startswith("-")]
            if vals:
                i = self.r.choice(vals)
                argv[i] = self.r.choice((argv[i] + "x", argv[i] + ",", "-" + argv[i], argv[i].upper() + "9"))
            else:
                argv.append(self.r.choice(("extra", "--bogus")))
                kind = "extra"
        return Case(argv, case.table, case.chain, case.tag, "bad", kind)

    def _bad_base(self) -> Case:
        g = self.g
        table = self.r.choice(list(TABLES))
        chain = self.r.choice(TABLES[table])
        variants = [
            (["-s", g.bad_net()], "badaddr"), (["-d", g.bad_net()], "badaddr"),
            (["-d", "1.2.3.4", "-d", "2.3.4.5"], "dup"), (["-p", "foo"], "badproto"),
            (["-p", "256"], "badproto"), (["-p", "tcp", "-p", "udp"], "dup"),
            (["-i", "abcdefghijklmnop"], "iface-too-long"), (["-i", "eth0", "-i", "eth1"], "dup"),
            (["-o", "eth0"], "o-in-input" if chain in ("PREROUTING", "INPUT") else "ok?"),
            (["-i", "eth0"], "i-in-output" if chain in ("OUTPUT", "POSTROUTING") else "ok?"),
            (["!", "-s", "1.1.1.1,2.2.2.2"], "neg-list"), (["-c", "x", "y"], "badcounter"),
            (["-c", "1"], "missing-arg"), (["-c", "-1", "2"], "badcounter"),
            (["-c", "18446744073709551616", "1"], "range"), (["!", "!", "-s", "1.2.3.4"], "neg2"),
            (["-c", "18446744073709551615", "99999999999999999"], "max-counter"),
            (["-c", "0x10", "7"], "hex-counter"), (["-c", "5abc", "6"], "trailing-junk"),
            (["-c", "+3", "4"], "plus"), (["-c", " 9", "1"], "space"), (["-c", "", "1"], "empty"),
            (["-m", "nosuchmatch"], "nomatch"), (["-m", "tpc"], "typo"), (["--foo"], "unknown"),
            (["-Y"], "unknown-short"), (["-f", "-f"], "dup"), (["-s"], "missing-arg"),
            (["-i", "eth0+x"], "iface"), (["-i", ""], "empty-iface"), (["-p", ""], "empty-proto"),
            (["-p", "icmp", "--dport", "1"], "wrongproto"), (["!", "-p", "tcp", "--dport", "1"], "negproto"),
            (["-p", "all", "--sport", "1"], "proto-all"), (["-s", "1.2.3.4", "!"], "trailing-neg"),
            (["--src", "1.2.3.4", "--source", "5.6.7.8"], "dup"),
            (["-p", "tcp", "-m", "tcp", "-m", "tcp"], "dup-match"),
            (["-4"], "ipv4-flag"), (["-6"], "ipv6-flag"), (["-p", "-1"], "badproto"),
            (["-s", "1.2.3.4/24", "-s", "5.6.7.8"], "dup"), (["--protocol=tcp"], "equals"),
        ]
        words, note = self.r.choice(variants)
        t = self.r.choice(("ACCEPT", "DROP", "RETURN"))
        argv = self._assemble(table, chain, [], [], words + ["-j", t])
        return Case(argv, table, chain, "base", "bad", note)

    def _good_base(self) -> Case:
        table = self.r.choice(list(TABLES))
        chain = self.r.choice(TABLES[table] + USER_CHAINS[table])
        head, loose = self._base(chain, None, True)
        target = self.r.choice(("ACCEPT", "DROP", "RETURN"))
        body = ["-j", target] if self.g.p(0.9) else []
        if self.g.p(0.3):
            head = ["-p", self.r.choice(("tcp", "udp", "icmp", "all", "6", "17"))] + head
        return Case(self._assemble(table, chain, head, loose, body), table, chain, "base", "good")

    def _chain_case(self, bad: bool) -> Case:
        g = self.g
        table = self.r.choice(list(TABLES))
        chain = self.r.choice(TABLES[table])
        udc = self.r.choice(USER_CHAINS[table])
        if not bad:
            kind = self.r.choice(("-j", "-g", "--jump", "--goto"))
            head, loose = self._base(chain, None, True)
            src = chain if g.p(0.8) else self.r.choice(USER_CHAINS[table])
            return Case(self._assemble(table, src, head, loose, [kind, udc]), table, src, "chain", "good")
        variants = [
            (["-j", "nosuchchain"], chain, "nochain"), (["-g", "nosuchchain"], chain, "nochain"),
            (["-g", chain], chain, "goto-builtin"), (["-j", chain], chain, "jump-builtin"),
            (["-j", udc], udc, "loop"), (["-g", udc, "-j", "ACCEPT"], chain, "conflict"),
            (["-j", udc.upper() if udc != udc.upper() else udc.lower()], chain, "case"),
            (["-j", "ACCEPT"], "NOSUCHCHAIN", "nochain-A"), (["-j", "ACCEPT"], chain.lower(), "case-A"),
            (["-j", self.r.choice([c for t, cs in USER_CHAINS.items() if t != table for c in cs])], chain,
             "other-table-chain"),
            (["-j", "x" * 29], chain, "long-target"), (["-j", "x" * 30], chain, "too-long-target"),
            (["-j", ""], chain, "empty-target"), (["-g"], chain, "missing-arg"),
        ]
        words, on, note = self.r.choice(variants)
        return Case(self._assemble(table, on, [], [], words), table, on, "chain", "bad", note)

    def _cmd_case(self) -> Case:
        """Broken command shapes (no command, two commands, stray words, bad table)."""
        table = self.r.choice(list(TABLES))
        chain = self.r.choice(TABLES[table])
        variants = [
            (["-t", table, "-j", "ACCEPT"], "nocommand"),
            (["-t", table, "-A", chain, "-I", chain, "-j", "ACCEPT"], "twocommands"),
            (["-t", table, "-A", chain, "stray", "-j", "ACCEPT"], "stray"),
            (["-t", "nosuchtable", "-A", chain, "-j", "ACCEPT"], "badtable"),
            (["-t", table, "-t", table, "-A", chain], "duptable"),
            (["-t", table, "-A"], "missing-chain"),
            (["-t", table, "-I", chain, "0", "-j", "ACCEPT"], "index0"),
            (["-t", table, "-I", chain, "99", "-j", "ACCEPT"], "index-too-big"),
            (["-t", table, "-I", chain, "-5", "-j", "ACCEPT"], "negindex"),
            (["-t", table, "-A", chain, "1", "-j", "ACCEPT"], "A-with-index"),
            (["-t", table, "-A", "-j", "ACCEPT"], "chain-is-option"),
            (["-t", table, "-a", chain, "-j", "ACCEPT"], "lowercase-command"),
            (["-t", table, "--append", chain, "--jump", "ACCEPT"], "long-ok"),
            (["-t", table, "--app", chain, "-j", "ACCEPT"], "abbrev"),
            (["-t", table, "--ap", chain, "-j", "ACCEPT"], "abbrev"),
            (["-t", table, "--a", chain, "-j", "ACCEPT"], "ambiguous"),
            (["-t" + table, "-A" + chain, "-jACCEPT"], "glued"),
            (["-t", table, "-A", chain, "-j", "ACCEPT", "-v"], "verbose"),
            (["-t", table, "-A", chain, "-n", "-j", "ACCEPT"], "numeric-with-A"),
            (["-t", table, "-A", chain, "-x", "-j", "ACCEPT"], "x-with-A"),
            (["-t", table, "-A", chain, "--line-numbers", "-j", "ACCEPT"], "line-numbers-with-A"),
            (["-t", table, "-A", chain, "-j", "ACCEPT", "--"], "double-dash"),
            (["-t", table, "-A", chain, "-j", "ACCEPT", "-w"], "wait"),
            (["-t", table, "-A", chain, "-j", "ACCEPT", "--modprobe=/bin/false"], "modprobe"),
            (["-t", table, "-A", chain, "-pt", "tcp"], "glued-bad"),
            (["-t", table, "-A", chain, "-v", "-s", "1.2.3.4,5.6.7.8", "-j", "DNAT", "--to", "1.1.1.1"],
             "verbose-refused"),
        ]
        argv, note = self.r.choice(variants)
        return Case(argv, table, chain, "cmd", "bad" if note not in ("long-ok", "abbrev", "glued", "verbose",
                                                                    "wait") else "good", note)

    def _quirk_case(self) -> Case:
        """Odd but meaningful spellings: getopt's `--opt=value` and unique
        prefixes, intrapositioned `!`, repeated matches, odd protocol and
        interface names, options after the target."""
        g = self.g
        table = self.r.choice(list(TABLES))
        chain = self.r.choice(TABLES[table])
        words, note = self.r.choice([
            (["-p", "tcp", "--dport=22"], "equals"), (["-p", "tcp", "--dpor", "22"], "prefix"),
            (["-p", "tcp", "--d", "22"], "ambiguous-prefix"), (["-p", "tcp", "--sport", "!", "22"], "intra-neg"),
            (["-p", "tcp", "!", "--syn"], "neg-syn"), (["-p", "tcp", "--syn", "!"], "trailing-neg"),
            (["-p", "tcp", "-m", "tcp", "--dport", "1", "-m", "tcp", "--sport", "2"], "match-twice"),
            (["-p", "udp", "-m", "tcp", "--dport", "1"], "proto-mismatch"),
            (["-m", "state", "--state", "NEW", "-m", "conntrack", "--ctstate", "NEW"], "state+conntrack"),
            (["-p", g.pick("gre", "esp", "ah", "ipv6", "icmpv6", "255", "ALL", "Tcp", "ipip", "0x6")], "proto-name"),
            (["-i", g.pick("eth0:1", "a.b", "et+h", "eth0+", "x" * 15, "x" * 16, "-", "!", "eth\\0")], "iface-name"),
            (["-o", g.pick("wg0", "+", "lo+", "veth-" + "a" * 10)], "oface-name"),
            (["-s", g.pick("10.0.0.1/8", "10.0.0.0/255.255.255.0", "10.0.0.0/0.0.0.255", "0.0.0.0/32",
                           "255.255.255.255/1", "10.1.2.3/32,10.1.2.3", "1.2.3.4, 5.6.7.8", "10.1.2")],
             "address-forms"),
            (["-m", "mark", "--mark", "0xffffffff/0xffffffff", "-m", "connmark", "!", "--mark", "0/0"],
             "mark-edges"),
            (["-m", "multiport", "-p", "tcp", "--dports", "1"], "match-before-proto"),
            (["-m", "comment", "--comment", "a", "-m", "comment", "--comment", "b"], "comment-twice"),
            (["-p", "icmp", "--icmp-type", g.pick("any", "0", "255", "255/255", "echo-request", "8/0")],
             "icmp-edges"),
            (["--protocol", "tcp", "--source-port", "1:1", "--destination-port", "0:65535"], "port-edges"),
            (["-m", "limit", "--limit", g.pick("1/sec", "10000/sec", "1/day", "1/d", "86400/d", "3/h")],
             "limit-edges"),
        ])
        t = self.r.choice((["-j", "ACCEPT"], ["-j", "LOG", "--log-prefix", self.g.text(29)], ["-j", "RETURN"], []))
        if self.g.p(0.2) and t:
            body = t + words  # options after the target
        else:
            body = words + t
        return Case(self._assemble(table, chain, [], [], body), table, chain, "quirk", "good", note)

    # ---- the stream -----------------------------------------------------
    def setup_cases(self) -> list[Case]:
        """-N for every user chain (one of them twice: "Chain already exists")."""
        out = []
        for table, chains in USER_CHAINS.items():
            for c in chains:
                out.append(Case(["-t", table, "-N", c], table, c, "chain", "good", "new"))
        out.append(Case(["-t", "filter", "-N", "web-in"], "filter", "web-in", "chain", "bad", "exists"))
        out.append(Case(["-t", "nat", "-N", "INPUT"], "nat", "INPUT", "chain", "bad", "builtin-exists"))
        out.append(Case(["-N", "a" * 29], "filter", "a" * 29, "chain", "bad", "too-long"))
        out.append(Case(["-N", "-bad"], "filter", "-bad", "chain", "bad", "dash"))
        out.append(Case(["-N", "ACCEPT"], "filter", "ACCEPT", "chain", "bad", "target-name"))
        return out

    def one(self, subject: str) -> Case:
        g = self.g
        bad = g.p(0.42)
        if subject == "base":
            return self._bad_base() if bad else self._good_base()
        if subject == "chain":
            return self._chain_case(bad)
        if subject == "cmd":
            return self._cmd_case()
        if subject == "quirk":
            return self._quirk_case()
        for _ in range(20):
            good = self._good_rule(subject)
            if good is not None:
                break
        assert good is not None, subject
        if not bad:
            return good
        if g.p(0.6):
            case = self._bad_specific(subject)
            if case is not None:
                return case
        return self._mutate(good)

    def cases(self, count: int) -> list[Case]:
        out = self.setup_cases()
        subjects = list(SUBJECTS)
        while len(out) < count:
            self.r.shuffle(subjects)
            for s in subjects:
                out.append(self.one(s))
        return out


def generate(seed: int, count: int) -> list[Case]:
    return RuleGen(seed).cases(count)


if __name__ == "__main__":  # pragma: no cover - eyeballing aid
    import shlex
    import sys

    for c in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 1, int(sys.argv[2]) if len(sys.argv) > 2 else 60):
        print(f"{c.tag:12} {c.intent:4} {c.note:14} {shlex.join(c.argv)}")
