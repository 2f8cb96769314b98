#!/usr/bin/env python3
"""Markdown tables of the scaling benchmark from its JSON (bench/scale/scale.py).

usage: report.py FILE.json

Every figure is the median over rounds; a ratio is the median of the
per-round ratios (both figures from the same round), so drift of a shared
machine hits both sides of it alike.
"""

import json
import statistics
import sys

med = statistics.median


def series(res, part, label, n, key):
    return [x[key] for x in res[part].get(f"{label}@{n}", []) if key in x]


def ratio(a, b):
    xs = [x / y for x, y in zip(a, b) if y]
    return med(xs) if xs else None


def fmt(v, unit, digits=1):
    if v is None:
        return "—"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:,.{digits}f} {unit}".rstrip()


def cell(res, part, label, n, key, unit, digits=1):
    fail = res["failed"].get(f"{part}:{label}@{n}")
    if fail:
        return "failed: " + fail
    xs = series(res, part, label, n, key)
    return fmt(med(xs), unit, digits) if xs else "—"


def ref_n(res, want):
    """The N that per-child costs are compared against: `want` if measured."""
    return want if want in res["ns"] else res["ns"][0]


def table(res, title, part, key, unit, floor, per="child", better="lower"):
    """One figure: per N the floor, each ipc-run binary, ratios, per-child cost."""
    if not res[part]:  # that part was not measured (PARTS)
        return
    runs = [l for l in res["labels"] if l != "c-floor"]
    base = ref_n(res, 10 if per == "N10" else 100)
    print(f"\n**{title}** ({better} is better; medians of {res['rounds']} rounds)\n")
    cols = ["N", floor]
    for l in runs:
        cols += [l, f"{l} / {floor}"]
        cols += [f"{l} vs N={base}"] if per == "N10" else [f"{l} per child", f"per child vs N={base}"]
    if len(runs) > 1:
        cols.append(f"{runs[0]} / {runs[1]}")
    print("| " + " | ".join(cols) + " |")
    print("|---:|" + "---:|" * (len(cols) - 1))
    for n in res["ns"]:
        row = [f"{n:,}", cell(res, part, "c-floor", n, key, unit)]
        fl = series(res, part, "c-floor", n, key)
        for l in runs:
            xs = series(res, part, l, n, key)
            row += [cell(res, part, l, n, key, unit), fmt(ratio(xs, fl), "x")]
            at_base = series(res, part, l, base, key)
            if per == "N10":
                row.append(fmt(ratio(xs, at_base), "x"))
            else:
                pc = [x / n * 1000 for x in xs]  # ms -> µs per child
                row += [fmt(med(pc), "µs") if pc else "—",
                        fmt(ratio(pc, [x / base * 1000 for x in at_base]), "x")]
        if len(runs) > 1:
            row.append(fmt(ratio(series(res, part, runs[0], n, key),
                                 series(res, part, runs[1], n, key)), "x"))
        print("| " + " | ".join(row) + " |")


def memory(res):
    if not res["life"]:
        return
    runs = [l for l in res["labels"] if l != "c-floor"]
    lo = res["ns"][0]
    print(f"\n**Resident memory of the manager's own process** (VmRSS of its pid, read from "
          f"/proc while its N children idle; per extra child: (RSS(N) - RSS({lo})) / (N - {lo}))\n")
    cols = ["N", "c-floor"] + [c for l in runs for c in (l, f"{l} VmHWM", f"{l} per extra child",
                                                          f"{l} open fds")]
    print("| " + " | ".join(cols) + " |")
    print("|---:|" + "---:|" * (len(cols) - 1))
    for n in res["ns"]:
        row = [f"{n:,}", cell(res, "life", "c-floor", n, "rss_mib", "MiB")]
        for l in runs:
            xs, base = series(res, "life", l, n, "rss_mib"), series(res, "life", l, lo, "rss_mib")
            extra = [(x - b) * 1024 / (n - lo) for x, b in zip(xs, base)] if n > lo else []
            row += [cell(res, "life", l, n, "rss_mib", "MiB"), cell(res, "life", l, n, "hwm_mib", "MiB"),
                    fmt(med(extra), "KiB") if extra else "—", cell(res, "life", l, n, "fds", "", 0)]
        print("| " + " | ".join(row) + " |")


def idle(res):
    rows = []
    for key, runs in res["life"].items():
        xs = [r["idle"] for r in runs if "idle" in r]
        if xs:
            rows.append((key, xs))
    if not rows:
        return
    print(f"\n**Idle CPU of the manager's own process** over {res['window']:g} s with its N children "
          "sleeping (medians; max in brackets)\n")
    print("| manager@N | /proc/PID/stat ticks | schedstat | voluntary switches |")
    print("|---|---:|---:|---:|")
    for key, xs in rows:
        t, s, w = ([x[f] for x in xs] for f in ("ticks", "sched_ms", "wakeups"))
        print(f"| {key} | {med(t):.0f} ({max(t)}) | {med(s):.3f} ms ({max(s):.3f}) | {med(w):.0f} ({max(w)}) |")


def checks(res):
    bad = [k for k, c in res["check"].items() if c["lost"] or c["broken"]]
    n = len(res["check"])
    print(f"\nRelay check before the rounds: {n - len(bad)} of {n} runs delivered every line whole "
          "(0 lost, 0 broken)" + (f"; FAILED: {', '.join(bad)}" if bad else "") + ".")
    left = {k: max(r["left"] for r in v) for k, v in res["life"].items() if any(r["left"] for r in v)}
    print("Children left running after their manager exited: "
          + (", ".join(f"{k} {v}" for k, v in left.items()) if left else "none") + ".")
    for key, why in res["failed"].items():
        print(f"{key.replace(':', ' ', 1)} failed: {why}")


def print_tables(res):
    print(f"ipc-run beside the C floor, N = {', '.join(f'{n:,}' for n in res['ns'])}; "
          f"{res['rounds']} rounds, managers in rotated order each round")
    table(res, "Launch: start -> all N children running", "life", "launch_ms", "ms", "c-floor")
    table(res, "Shutdown: SIGTERM -> manager exited, all N children stopped at once",
          "life", "shutdown_ms", "ms", "c-floor")
    table(res, f"Restart latency of one child beside N-1 idle siblings (exit -> replacement running, "
          f"backoff 0; median of {res['k']} restarts per round)", "life", "restart_ms", "ms", "c-floor",
          per="N10")
    table(res, f"Relay: N writers, {res['relay_lines']:,} 100-byte lines in all, prefixed, into a "
          "pipe (MB/s from the writers' go, once all run, to the last line out)", "relay", "relay_mbs", "MB/s",
          "c-relay", per="N10", better="higher")
    memory(res)
    idle(res)
    checks(res)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        print_tables(json.load(f))


if __name__ == "__main__":
    main()
