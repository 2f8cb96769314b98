#!/usr/bin/env python3
"""Idle cost of a supervisor: CPU over a window and memory, with N sleeping
children.

usage: idle.py ROUNDS WINDOW_S N -- LABEL=COMMAND...

COMMAND (run with `bash -c`, stdin/stdout/stderr on /dev/null) must start N
children that sleep, as its own children (use `exec` to make the supervisor
the process itself). Once all N have exec'd, and 0.5 s more, CPU time is read
from /proc/PID/stat (utime+stime, in clock ticks) and from
/proc/PID/task/*/schedstat (nanoseconds on the CPU), again after WINDOW_S
seconds, with voluntary context switches (wake-ups). VmRSS and VmHWM come
from /proc/PID/status at the end of the window. Then SIGTERM goes to PID; it
must exit within 15 s. A command labelled `ipc-run` must also leave none of
its children running; other commands' leftover children are killed by pid.
Commands alternate in each round; medians over rounds are printed.
"""

import os
import signal
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu(pid):
    """(utime+stime in ticks, sum of schedstat run time over threads in ns, voluntary switches)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ns += int(f.read().split()[0])
    switches = status(pid)["voluntary_ctxt_switches"]
    return ticks, ns, switches


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "voluntary_ctxt_switches", "Threads"):
                out[key] = int(value.split()[0])
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return comm(pid) is not None and not open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def measure(label, command, window, n):
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = proc.pid
    deadline = time.monotonic() + 30
    while True:
        kids = children(pid)
        if len(kids) >= n and all(comm(k) == "sleep" for k in kids):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"{label}: {len(kids)} of {n} children started")
        time.sleep(0.01)
    time.sleep(0.5)
    t0, ns0, sw0 = cpu(pid)
    time.sleep(window)
    t1, ns1, sw1 = cpu(pid)
    st = status(pid)
    kids = children(pid)
    os.kill(pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        sys.exit(f"{label}: still running 15 s after SIGTERM")
    left = [k for k in kids if alive(k)]
    if label == "ipc-run" and left:
        sys.exit(f"{label}: {len(left)} children still running after it exited")
    for k in left:
        os.kill(k, signal.SIGKILL)
    return {
        "stat_ms": (t1 - t0) * 1000 / TICK,
        "sched_ms": (ns1 - ns0) / 1e6,
        "wakeups": sw1 - sw0,
        "rss": st["VmRSS"] / 1024,
        "hwm": st["VmHWM"] / 1024,
        "threads": st["Threads"],
        "exit": code,
        "left": len(left),
    }


def main():
    args = sys.argv[1:]
    if "--" not in args:
        sys.exit(__doc__)
    split = args.index("--")
    rounds, window, n = int(args[0]), float(args[1]), int(args[2])
    commands = [a.split("=", 1) for a in args[split + 1:]]
    results = {label: [] for label, _ in commands}
    for r in range(rounds):
        k = r % len(commands)
        for label, command in commands[k:] + commands[:k]:
            results[label].append(measure(label, command, window, n))
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{l} {v[-1]['sched_ms']:.2f} ms CPU, {v[-1]['rss']:.1f} MiB"
            for l, v in results.items()), file=sys.stderr)
    med = lambda label, key: statistics.median(x[key] for x in results[label])
    print(f"{n} sleeping children, {window:g} s window, medians of {rounds} rounds\n")
    print("| command | CPU in window, /proc/PID/stat (10 ms ticks) | CPU in window, schedstat | "
          "wake-ups in window | VmRSS | VmHWM | threads | exit after SIGTERM | children left behind |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, _ in commands:
        exits = sorted({x["exit"] if x["exit"] >= 0 else f"killed by {signal.Signals(-x['exit']).name}"
                        for x in results[label]}, key=str)
        print(f"| {label} | {med(label, 'stat_ms'):.0f} ms | {med(label, 'sched_ms'):.3f} ms | "
              f"{med(label, 'wakeups'):.0f} | {med(label, 'rss'):.1f} MiB | {med(label, 'hwm'):.1f} MiB | "
              f"{med(label, 'threads'):.0f} | {', '.join(map(str, exits))} | "
              f"{max(x['left'] for x in results[label])} |")
    print()
    for label, _ in commands:
        print(f"{label}: CPU (schedstat) max {max(x['sched_ms'] for x in results[label]):.3f} ms, "
              f"VmHWM max {max(x['hwm'] for x in results[label]):.1f} MiB")


if __name__ == "__main__":
    main()
