#!/usr/bin/env python3
"""Draws the plots of docs/performance.md from the rounds bench/compare.sh kept.

usage: plots.py RESULTS_DIR IMG_DIR      (needs matplotlib: bench/peers/setup.sh puts it
                                          in the peers' venv)
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    results, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for draw in (launch, relay, plan, restart):
        draw(results, out)
    print(f"plots written to {out}: " + ", ".join(sorted(os.listdir(out))))


if __name__ == "__main__":
    main()
