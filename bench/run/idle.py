#!/usr/bin/env python3
"""Idle cost of a supervisor: CPU over a window and memory, with N sleeping
children.

usage: idle.py ROUNDS WINDOW_S N -- LABEL=COMMAND...

COMMAND (run with `bash -c`, stdin/stdout/stderr on /dev/null) must start N
processes running `sleep` below it (use `exec` to make the supervisor the
process itself). The supervisor is PID and every process below it that is not
a `sleep` (s6-supervise, a shell, a node worker): its "manager processes".
Once all N sleeps have exec'd, and 0.5 s more, the manager processes' CPU time
is read from /proc/P/stat (utime+stime, in clock ticks) and from
/proc/P/task/*/schedstat (nanoseconds on the CPU), again after WINDOW_S
seconds, with voluntary context switches (wake-ups). VmRSS and VmHWM of PID,
and the sum of Pss over all manager processes (shared pages counted once), come from /proc at the end of
the window: VmRSS is the supervisor's own process, never this harness or a
shell (a command labelled `ipc-run...` whose PID is still a shell or Python,
say one written without `exec`, is refused). Then SIGTERM goes to PID; it must exit within 15 s. A command
labelled `ipc-run` must also leave none of its children running; other
commands' leftover processes are killed by pid.
Commands alternate in each round; medians over rounds are printed.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def children(pid):
    """Every process below pid."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def managers(pid):
    return [pid] + [k for k in children(pid) if comm(k) != "sleep"]


def tree_cpu(pids):
    """cpu() summed over pids; a process gone meanwhile counts as 0."""
    total = [0, 0, 0]
    for p in pids:
        try:
            total = [a + b for a, b in zip(total, cpu(p))]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def tree_pss(pids):
    """Proportional set size summed over pids (shared pages counted once), KiB."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return total


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


class Failed(Exception):
    pass


def measure(label, command, window, n):
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = proc.pid
    deadline = time.monotonic() + 30
    while True:
        kids = [k for k in children(pid) if comm(k) == "sleep"]
        if len(kids) >= n:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise Failed(f"{len(kids)} of {n} children started")
        time.sleep(0.01)
    time.sleep(0.5)
    measured = comm(pid)
    if label.startswith("ipc-run") and (measured in ("bash", "sh", "dash") or measured.startswith("python")):
        proc.kill()
        raise Failed(f"pid {pid} is `{measured}`, not ipc-run: start it with `exec`")
    mgr = managers(pid)
    t0, ns0, sw0 = tree_cpu(mgr)
    time.sleep(window)
    t1, ns1, sw1 = tree_cpu(mgr)
    st = status(pid)
    tree = tree_pss(mgr)
    kids = children(pid)
    os.kill(pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if label == "ipc-run":
            proc.kill()
            sys.exit(f"{label}: still running 15 s after SIGTERM")
        for k in [pid] + children(pid):  # the peer, and what it left, by pid
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        code = "no exit 15 s after SIGTERM, killed"
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
        "procs": len(mgr),
        "tree": tree / 1024,
        "exit": code,
        "left": len(left),
        "comm": measured,
    }


def main():
    args = sys.argv[1:]
    if "--" not in args:
        sys.exit(__doc__)
    split = args.index("--")
    rounds, window, n = int(args[0]), float(args[1]), int(args[2])
    out = args[args.index("--json") + 1] if "--json" in args[:split] else None
    commands = [a.split("=", 1) for a in args[split + 1:]]
    results = {label: [] for label, _ in commands}
    # `!REASON` is not run (a peer not installed); a peer that fails is reported, not fatal
    failed = {label: c[1:] for label, c in commands if c.startswith("!")}
    for r in range(rounds):
        k = r % len(commands)
        for label, command in commands[k:] + commands[:k]:
            if label in failed:
                continue
            try:
                results[label].append(measure(label, command, window, n))
            except Failed as e:
                if label.startswith("ipc-run"):
                    sys.exit(f"{label}: {e}")
                failed[label] = f"failed: {e}"
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{l} {v[-1]['sched_ms']:.2f} ms CPU, {v[-1]['rss']:.1f} MiB"
            for l, v in results.items() if v), file=sys.stderr)
    if out:
        with open(out, "w") as f:
            json.dump({"n": n, "window": window, "results": results, "failed": failed}, f, indent=1)
    med = lambda label, key: statistics.median(x[key] for x in results[label])
    print(f"{n} sleeping children, {window:g} s window, medians of {rounds} rounds\n")
    print("VmRSS and VmHWM: the command's own pid (its process name in brackets)\n")
    print("| command | CPU in window, /proc/P/stat (10 ms ticks) | CPU in window, schedstat | "
          "wake-ups in window | VmRSS | VmHWM | threads | manager processes | their Pss summed | "
          "exit after SIGTERM | children left behind |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, _ in commands:
        if label in failed:
            print(f"| {label} | {failed[label]} |" + " |" * 9)
            continue
        exits = sorted({x["exit"] if isinstance(x["exit"], str) or x["exit"] >= 0 else f"killed by {signal.Signals(-x['exit']).name}"
                        for x in results[label]}, key=str)
        print(f"| {label} ({results[label][-1]['comm']}) | {med(label, 'stat_ms'):.0f} ms | {med(label, 'sched_ms'):.3f} ms | "
              f"{med(label, 'wakeups'):.0f} | {med(label, 'rss'):.1f} MiB | {med(label, 'hwm'):.1f} MiB | "
              f"{med(label, 'threads'):.0f} | {med(label, 'procs'):.0f} | {med(label, 'tree'):.1f} MiB | "
              f"{', '.join(map(str, exits))} | "
              f"{max(x['left'] for x in results[label])} |")
    print()
    for label, _ in commands:
        if label in failed:
            continue
        print(f"{label}: CPU (schedstat) max {max(x['sched_ms'] for x in results[label]):.3f} ms, "
              f"VmHWM max {max(x['hwm'] for x in results[label]):.1f} MiB")


if __name__ == "__main__":
    main()
