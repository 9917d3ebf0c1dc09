"""The fixtures are true: every pcapng under fixtures/ replayed through the
real kernel (namespaces built from the same HOST.toml, the same ruleset
loaded with iptables-legacy-restore, the frames injected on veths and
captured at the far ends; see ruleset_lab.py) gives what pyfw gives:

- the same frames out of every interface, in order, from the IP header on
  (the IP ID of packets the host makes itself aside: Linux picks those);
- the same counters for every rule and policy (`iptables-legacy-save -c`
  against pyfw's), so the same rules decided the same verdicts;
- the same connection table (`conntrack -L`, timeouts aside);
- the same LOG lines.

Root only (network namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ruleset_lab import RulesetLab, ip_part, lab_problem, norm_conntrack, norm_counters  # noqa: E402

from pyfw.io.pcap import read_frames  # noqa: E402
from pyfw.testing.firewall import describe_frame, load_firewall  # noqa: E402

ROOT = HERE.parents[1]
FIXTURES = sorted((HERE / "fixtures").glob("*.pcapng"))
RULESETS = sorted(p.stem for p in (ROOT / "rulesets").glob("*.rules"))

PROBLEM = lab_problem()
pytestmark = [pytest.mark.root, pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))]

SUMMARY: dict[str, dict[str, int]] = {}


def ruleset_of(fixture: Path) -> str:
    for name in RULESETS:
        if fixture.stem.startswith(name + "-"):
            return name
    raise AssertionError(f"{fixture.name}: no ruleset of that name")


def test_every_ruleset_has_fixtures() -> None:
    assert {ruleset_of(f) for f in FIXTURES} == set(RULESETS)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_kernel_agrees(fixture: Path) -> None:
    name = ruleset_of(fixture)
    rules_path, host_path = ROOT / "rulesets" / f"{name}.rules", HERE / f"{name}.toml"
    frames = [(ts, iface or "?", data) for ts, iface, data in read_frames(str(fixture))]

    fw = load_firewall(rules_path, host_path)
    outcomes = fw.replay(fixture)
    mine: dict[str, list[tuple[int, bytes, bool]]] = {}
    for k, o in enumerate(outcomes):
        for e in o.emitted:
            made = not (o.verdict == "ACCEPT" and o.path in ("forward", "output") and e.iface == o.out)
            mine.setdefault(e.iface, []).append((k, e.frame, made))

    rules = rules_path.read_text()
    with RulesetLab(host_path, rules) as lab:
        got = lab.replay(frames)
        k_counters, k_conntrack, k_logs = lab.counters(), lab.conntrack(), lab.log_lines()
        added_raw = "*raw" not in rules and "*raw" in k_counters

    theirs: dict[str, list[tuple[int, bytes]]] = {}
    for k, iface, data in got:
        if data[12:14] == b"\x08\x00":  # IPv4 only: ARP and the like are not the ruleset's
            theirs.setdefault(iface, []).append((k, data))

    problems: list[str] = []
    for iface, sent in mine.items():
        for k, f, _made in sent:
            if f[:6] == b"\x00" * 6:
                problems.append(f"{fixture.name}: frame {k + 1} makes the host send to {describe_frame(f)} on "
                                f"{iface} with no known neighbour: Linux would ARP for it (and drop it); "
                                f"add a [[neighbor]] to {host_path.name} or use an address behind a router")
    n_frames = 0
    for iface in sorted(set(mine) | set(theirs)):
        a, b = mine.get(iface, []), theirs.get(iface, [])
        n_frames += max(len(a), len(b))
        pa = [ip_part(f, made) for _k, f, made in a]
        pb = [ip_part(f, a[i][2] if i < len(a) else True) for i, (_k, f) in enumerate(b)]
        if pa != pb:
            lines = [f"frames out of {iface} differ (pyfw {len(a)}, kernel {len(b)}):"]
            for i in range(max(len(a), len(b))):
                x = f"after frame {a[i][0] + 1}: {describe_frame(a[i][1])}" if i < len(a) else "-"
                y = f"after frame {b[i][0] + 1}: {describe_frame(b[i][1])}" if i < len(b) else "-"
                mark = "=" if i < len(pa) and i < len(pb) and pa[i] == pb[i] else "!"
                lines.append(f"  [{i}] {mark} pyfw   {x}\n        kernel {y}")
                if mark == "!" and i < len(pa) and i < len(pb):
                    lines.append(f"        pyfw   {pa[i].hex()}\n        kernel {pb[i].hex()}")
            problems.append("\n".join(lines))
        else:
            for (_k, fa, _m), (_k2, fb) in zip(a, b):
                if fa[:12] != fb[:12]:
                    problems.append(f"on {iface} the MACs differ: pyfw {fa[:12].hex()} kernel {fb[:12].hex()}")

    kc = norm_counters(k_counters, frozenset({"raw"}) if added_raw else frozenset())
    pc = norm_counters(fw.counters())
    n_counters = sum(len(v) for v in kc.values())
    if kc != pc:
        diff = []
        for table in sorted(set(kc) | set(pc)):
            kl, pyl = kc.get(table, []), pc.get(table, [])
            for i in range(max(len(kl), len(pyl))):
                u = kl[i] if i < len(kl) else "-"
                v = pyl[i] if i < len(pyl) else "-"
                if u != v:
                    diff.append(f"  {table}: kernel {u}\n  {' ' * len(table)}  pyfw   {v}")
        problems.append("counters differ:\n" + "\n".join(diff))

    kt, pt = norm_conntrack(k_conntrack), norm_conntrack(fw.conntrack())
    if kt != pt:
        problems.append("conntrack differs:\n  kernel: " + "\n          ".join(kt or ["(empty)"])
                        + "\n  pyfw:   " + "\n          ".join(pt or ["(empty)"]))
    pl = [line.rstrip() for line in fw.logs]
    if k_logs != pl:
        problems.append("LOG lines differ:\n  kernel: " + "\n          ".join(k_logs or ["(none)"])
                        + "\n  pyfw:   " + "\n          ".join(pl or ["(none)"]))

    SUMMARY[fixture.stem] = {"frames in": len(frames), "frames out": n_frames, "counter lines": n_counters,
                             "conntrack entries": len(kt), "log lines": len(k_logs)}
    if problems:
        transcript = "\n".join(f"  frame {k + 1}: {o.explain()}".replace("\n", "\n    ")
                               for k, o in enumerate(outcomes))
        pytest.fail(f"{fixture.name}: pyfw and the kernel disagree\n" + "\n".join(problems)
                    + "\n\npyfw's view:\n" + transcript, pytrace=False)


def test_summary(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """Prints what was compared (with -v or -s)."""
    if request.config.getoption("verbose") <= 0 and request.config.getoption("capture") != "no":
        return
    with capsys.disabled():
        for stem, counts in sorted(SUMMARY.items()):
            print(f"\n  {stem}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), end="")
        if SUMMARY:
            print()
