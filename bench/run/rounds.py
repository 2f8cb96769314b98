#!/usr/bin/env python3
"""Times whole commands side by side, rounds interleaved; prints medians and
the median of the per-round ratios of the first command to each other one.

usage: rounds.py ROUNDS [--bytes N] -- LABEL=COMMAND...

COMMAND is run with `bash -c` (so pipes work), stdin from /dev/null, stdout
and stderr to /dev/null. A round runs every command once, in an order that
rotates from round to round, so drift of the machine and the position in the
round hit all of them alike. A command that exits non-zero stops the
benchmark. With --bytes N, throughput (N / wall time) is printed too.
"""

import os
import statistics
import sys
import time


def run(command):
    """Runs command; returns (wall seconds, CPU seconds of it and its waited-for descendants)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(
            "/bin/bash",
            ["bash", "-c", command],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"`{command[:200]}` exited with {code}")
    return wall, usage.ru_utime + usage.ru_stime


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 3:
        sys.exit(__doc__)
    split = args.index("--")
    head, commands = args[:split], [a.split("=", 1) for a in args[split + 1 :]]
    rounds = int(head[0])
    nbytes = int(head[head.index("--bytes") + 1]) if "--bytes" in head else 0
    labels = [label for label, _ in commands]
    wall = {label: [] for label in labels}
    cpu = {label: [] for label in labels}
    for r in range(rounds):
        k = r % len(commands)
        for label, command in commands[k:] + commands[:k]:
            w, c = run(command)
            wall[label].append(w)
            cpu[label].append(c)
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{l} {wall[l][-1] * 1000:.1f} ms" for l in labels), file=sys.stderr)

    base = labels[0]
    med = lambda xs: statistics.median(xs)
    print(f"medians of {rounds} interleaved rounds\n")
    cols = ["command", "wall (median)", "min .. max", "CPU user+sys (median)"]
    if nbytes:
        cols.append("MB/s (median)")
    cols.append(f"{base} / command, wall (median per-round ratio)")
    if nbytes:
        cols.append(f"{base} / command, throughput")
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    for label in labels:
        cells = [
            label,
            f"{med(wall[label]) * 1000:.1f} ms",
            f"{min(wall[label]) * 1000:.1f} .. {max(wall[label]) * 1000:.1f} ms",
            f"{med(cpu[label]) * 1000:.1f} ms",
        ]
        if nbytes:
            cells.append(f"{med([nbytes / w / 1e6 for w in wall[label]]):.0f}")
        ratios = [a / b for a, b in zip(wall[base], wall[label])]
        cells.append("—" if label == base else f"{med(ratios):.2f}x")
        if nbytes:
            cells.append("—" if label == base else f"{med([1 / x for x in ratios]):.2f}x")
        print("| " + " | ".join(cells) + " |")
    print()
    for label in labels[1:]:
        ratios = [a / b for a, b in zip(wall[base], wall[label])]
        print(f"{base} / {label}: median per-round ratio {med(ratios):.3f}x "
              f"(min {min(ratios):.3f}x, max {max(ratios):.3f}x)")
        if nbytes:
            inv = [1 / x for x in ratios]
            print(f"throughput {base} / {label}: median per-round ratio {med(inv):.3f}x "
                  f"(min {min(inv):.3f}x, max {max(inv):.3f}x)")


if __name__ == "__main__":
    main()
