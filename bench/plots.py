#!/usr/bin/env python3
"""Draws the plots of docs/performance.md from the rounds bench/compare.sh kept.

usage: plots.py RESULTS_DIR IMG_DIR      (needs matplotlib: bench/peers/setup.sh puts it
                                          in the peers' venv; without it only scaling.svg,
                                          which is written by hand, is drawn)
"""

import json
import math
import os
import statistics
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the scaling plot needs no library; the others are skipped
    plt = None

med = statistics.median


def load(results, name):
    path = os.path.join(results, name)
    return json.load(open(path)) if os.path.exists(path) else None


def bars(ax, names, values, highlight="ipc-run", unit=""):
    colors = ["tab:red" if n.startswith(highlight) else "tab:gray" for n in names]
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}{unit}" if v >= 100 else f" {v:.3g}{unit}", va="center", fontsize=8)


def finish(fig, ax, xlabel, title, path):
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def launch(results, out):
    d = load(results, "launch.json")
    if not d or not d.get("marginal"):
        return
    items = [(n, v["marginal_ms@500"]) for n, v in d["marginal"].items() if v.get("marginal_ms@500")]
    items.sort(key=lambda x: x[1])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars(ax, [n for n, _ in items], [v for _, v in items], unit=" ms")
    ax.set_xscale("log")
    finish(fig, ax, "marginal launch cost per process, ms (log scale; (T(500) - T(1)) / 499, median)",
           "Workload A: cost of each further process", os.path.join(out, "launch-marginal.png"))


def relay(results, out):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    drawn = False
    for ax, k in zip(axes, (1, 8)):
        d = load(results, f"relay-{k}.json")
        if not d:
            continue
        drawn = True
        items = []
        for label in d["labels"]:
            if label in d["failed"] or not d["wall"][label]:
                continue
            n = d["size"].get(label, d["bytes"])
            items.append((label, med([n / w / 1e6 for w in d["wall"][label]])))
        items.sort(key=lambda x: -x[1])
        bars(ax, [n for n, _ in items], [v for _, v in items])
        ax.set_xscale("log")
        ax.set_xlabel("MB/s of 100-byte lines relayed (log scale, median)")
        ax.set_title(f"Workload B: {k} child{'ren' if k > 1 else ''}")
    if drawn:
        fig.tight_layout()
        fig.savefig(os.path.join(out, "relay-throughput.png"), dpi=110)


def plan(results, out):
    d = load(results, "plan.json")
    if not d:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [int(s) for s in d["sizes"]]
    for label in d["labels"]:
        ys = [med(d["times"][f"{s} {label}"]) * 1000 for s in d["sizes"]]
        ax.plot(sizes, ys, marker="o", label=label,
                color="tab:red" if label == "check" else None, linewidth=2.5 if label == "check" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("processes in the topology (2 edges each)")
    ax.set_ylabel("wall time, ms (median)")
    ax.set_title("Workload D: load + plan (check) vs parsing alone")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plan-scaling.png"), dpi=110)


def restart(results, out):
    d = load(results, "restart.json")
    if not d:
        return
    items = sorted(((k, med(v["run"])) for k, v in d.items() if v["run"]), key=lambda x: x[1])
    fig, ax = plt.subplots(figsize=(7, 2.6))
    bars(ax, [n for n, _ in items], [v for _, v in items], unit=" ms")
    ax.set_xscale("log")
    finish(fig, ax, "crash -> replacement running, ms (log scale, median)", "Workload F: restart",
           os.path.join(out, "restart.png"))


# The scaling plot (bench/scale/run.sh -> scale.json): one panel per figure,
# the figure against N on log-log axes, ipc-run binaries beside the C floor.
# Drawn as SVG by hand so that it needs nothing beyond Python.
SCALING = [("launch_ms", "life", "launch until all run, ms"),
           ("shutdown_ms", "life", "SIGTERM -> exited, ms"),
           ("restart_ms", "life", "restart latency of one child, ms"),
           ("relay_mbs", "relay", "relay of N writers, MB/s"),
           ("rss_mib", "life", "manager's own RSS, MiB")]
COLORS = {"c-floor": "#777777", "ipc-run": "#d62728", "ipc-run-before": "#1f77b4"}


def short(n):
    """3000 -> 3k: neighbouring sizes on a log axis must not overlap."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def svg_panel(x0, y0, w, h, title, ns, lines):
    """One log-log panel at (x0, y0); lines: [(label, [(n, value)])]."""
    vals = [v for _, pts in lines for _, v in pts if v > 0]
    if not vals:
        return []
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    hi = max(hi, lo + 1)
    nlo, nhi = math.log10(min(ns)), math.log10(max(ns))
    nhi = max(nhi, nlo + 1)

    def xy(n, v):
        return (x0 + (math.log10(n) - nlo) / (nhi - nlo) * w,
                y0 + h - (math.log10(v) - lo) / (hi - lo) * h)

    out = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
           f'<text x="{x0 + w / 2}" y="{y0 - 8}" text-anchor="middle" font-size="12">{title}</text>']
    for e in range(lo, hi + 1):
        _, y = xy(min(ns), 10.0 ** e)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{10.0 ** e:g}</text>')
    for n in ns:
        x, _ = xy(n, 10.0 ** lo)
        out.append(f'<text x="{x:.1f}" y="{y0 + h + 14}" text-anchor="middle" font-size="10">{short(n)}</text>')
    for label, pts in lines:
        pts = [(n, v) for n, v in pts if v > 0]
        if not pts:
            continue
        color = COLORS.get(label, "#2ca02c")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(n, v) for n, v in pts))
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>'
                for x, y in (xy(n, v) for n, v in pts)]
    return out


def scaling(results, out):
    d = load(results, "scale.json")
    if not d:
        return
    ns = d["ns"]
    w, h, pad = 250, 180, 70
    body = []
    for i, (key, part, title) in enumerate(SCALING):
        lines = []
        for label in d["labels"]:
            pts = [(n, med([x[key] for x in d[part].get(f"{label}@{n}", [])]))
                   for n in ns if d[part].get(f"{label}@{n}")]
            lines.append((label, pts))  # the floor keeps its colour: c-relay in the relay panel
        col, row = i % 3, i // 3
        body += svg_panel(pad + col * (w + pad), 40 + row * (h + 70), w, h, title, ns, lines)
    legend = list(d["labels"])
    for j, label in enumerate(legend):
        x, y = pad + 2 * (w + pad), 40 + (h + 70) + 20 + j * 20
        body.append(f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{COLORS.get(label, "#2ca02c")}" '
                    'stroke-width="2"/>')
        body.append(f'<text x="{x + 30}" y="{y + 4}" font-size="11">{label}'
                    f'{" (c-relay for the relay)" if label == "c-floor" else ""}</text>')
    body.append(f'<text x="{pad + 2 * (w + pad)}" y="{40 + (h + 70) + 20 + len(legend) * 20 + 10}" '
                f'font-size="10">N children, log-log; medians of {d["rounds"]} rounds</text>')
    width, height = 3 * (w + pad) + 20, 2 * (h + 70) + 30
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>"]
    with open(os.path.join(out, "scaling.svg"), "w") as f:
        f.write("\n".join(svg) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    scaling(results, out)
    if plt is None:
        print("matplotlib is not installed: only scaling.svg drawn", file=sys.stderr)
    else:
        for draw in (launch, relay, plan, restart):
            draw(results, out)
    print(f"plots written to {out}: " + ", ".join(sorted(os.listdir(out))))


if __name__ == "__main__":
    main()
