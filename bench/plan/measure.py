#!/usr/bin/env python3
"""Times whole processes side by side: interleaved rounds, medians.

usage: RUSAGE_EXEC=PATH measure.py ROUNDS SIZE=FILE... -- LABEL=COMMAND...
       (MEASURE_JSON=FILE also writes every round's figures to FILE)

Each COMMAND is a shell-free argv template in which `{file}` stands for the
topology file of a size. A round runs every command on every size once, in
order, so slow drift of the machine (heat, other load) hits all of them
alike. Prints a Markdown table of medians (wall time and peak RSS) and the
ratios the benchmark's goals are about.
"""

import json
import os
import shlex
import statistics
import subprocess
import sys


def run(argv):
    """Runs argv through the C launcher; returns (seconds, maxrss KiB).

    The launcher (rusage_exec.c, path in $RUSAGE_EXEC) forks from its own
    small address space, times the child and reads its wait4 rusage: a
    child spawned from Python directly would have the interpreter's RSS
    folded into its ru_maxrss by execve.
    """
    launcher = os.environ.get("RUSAGE_EXEC")
    if not launcher:
        sys.exit("measure.py: set RUSAGE_EXEC to the built rusage_exec (run.sh does)")
    out = subprocess.run([launcher, *argv], check=True, stdout=subprocess.PIPE, text=True).stdout
    seconds, kib, code = out.split()
    if int(code) != 0:
        sys.exit(f"{shlex.join(argv)} exited with {code}")
    return float(seconds), int(kib)


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 4:
        sys.exit(__doc__)
    split = args.index("--")
    rounds = int(args[0])
    sizes = [a.split("=", 1) for a in args[1:split]]
    commands = [a.split("=", 1) for a in args[split + 1 :]]
    times = {(s, c): [] for s, _ in sizes for c, _ in commands}
    rss = {(s, c): [] for s, _ in sizes for c, _ in commands}
    for round_ in range(rounds):
        for size, path in sizes:
            for label, template in commands:
                argv = [a.replace("{file}", path) for a in shlex.split(template)]
                seconds, kib = run(argv)
                times[(size, label)].append(seconds)
                rss[(size, label)].append(kib)
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)

    if os.environ.get("MEASURE_JSON"):
        with open(os.environ["MEASURE_JSON"], "w") as f:
            json.dump({"sizes": [s for s, _ in sizes], "labels": [c for c, _ in commands],
                       "times": {f"{s} {c}": v for (s, c), v in times.items()},
                       "rss_kib": {f"{s} {c}": v for (s, c), v in rss.items()}}, f, indent=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = [c for c, _ in commands]
    print(f"medians of {rounds} interleaved rounds (wall time; peak RSS)\n")
    print("| processes | " + " | ".join(labels) + " | " + " | ".join(
        f"{labels[0]} / {other}" for other in labels[1:]) + " |")
    print("|---:|" + "---:|" * (2 * len(labels) - 1))
    for size, _ in sizes:
        cells = [
            f"{med[(size, c)] * 1000:.1f} ms; {statistics.median(rss[(size, c)]) / 1024:.0f} MiB"
            for c in labels
        ]
        ratios = [f"{med[(size, labels[0])] / med[(size, o)]:.2f}x" for o in labels[1:]]
        print(f"| {size} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()
    print("growth between consecutive sizes (median time ratio):\n")
    print("| sizes | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for (small, _), (large, _) in zip(sizes, sizes[1:]):
        cells = [f"{med[(large, c)] / med[(small, c)]:.2f}x" for c in labels]
        print(f"| {small} -> {large} | " + " | ".join(cells) + " |")
    print()
    print("spread (min .. max, ms):\n")
    for size, _ in sizes:
        parts = [
            f"{c} {min(times[(size, c)]) * 1000:.1f}..{max(times[(size, c)]) * 1000:.1f}"
            for c in labels
        ]
        print(f"- {size}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
