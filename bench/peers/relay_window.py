#!/usr/bin/env python3
"""The relay of N writers as bench/scale times it (the writers wait for GO
once all run; MB/s from GO to the sink's stamp at the last line), with the
CPU of the relaying process alone over that window: `perf stat -p PID`
attached once all writers run, until the relay exits (task-clock and
context switches; the exits of the writers and ipc-run's clean-up are in
it, its launch is not). Rounds interleave the relays, order rotated.

usage: bench/peers/relay_window.py ROUNDS N LINES LABEL=RELAY...
  RELAY: `c` for the C floor (bench/scale/relay.c), or an ipc-run binary.
  Needs perf, and child and relay compiled from bench/scale (BUILD=dir, as
  bench/scale/run.sh leaves them with BENCH_DIR=dir; default: compiled here
  into a scratch directory).
Prints one line per run and the medians; figures of one round are taken
within seconds of each other, so per-round ratios are the ones to trust on
a shared machine."""

import os
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "scale"))
import scale  # noqa: E402


def one(o, d, binary, n, total):
    each = max(1, total // n)
    ready, go = os.path.join(d, "ready"), os.path.join(d, "go")
    for x in (ready, go):
        if os.path.exists(x):
            os.unlink(x)
        os.mkfifo(x)
    rfd = os.open(ready, os.O_RDWR | os.O_NONBLOCK)
    r, w = os.pipe()
    pid = scale.spawn(scale.relay_argv(o, binary, n, each, d, ready, go), stdout=w,
                      stderr=os.path.join(d, "stderr"))
    os.close(w)
    sr, sw = os.pipe()
    sink = os.posix_spawn(o["child"], [o["child"], "sink", str(n * each)], os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, sw, 1)])
    os.close(r)
    os.close(sw)
    scale.await_ready(rfd, pid, n, time.perf_counter(), time.perf_counter() + 60 + n / 50)
    stat = os.path.join(d, "perf.stat")
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "task-clock,context-switches",
                             "-o", stat, "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf attached
    t0 = time.monotonic_ns()
    gfd = os.open(go, os.O_RDWR)
    data = b""
    while True:
        b = os.read(sr, 1 << 16)
        if not b:
            break
        data += b
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    os.waitpid(sink, 0)
    perf.wait()
    for fd in (rfd, gfd, sr):
        os.close(fd)
    seen, stamp = (int(x) for x in data.split())
    if code or seen != n * each:
        sys.exit(f"relay {binary or 'c'}: exit {code}, {seen} of {n * each} lines")
    fields = {}
    for line in open(stat):
        f = line.split(",")
        if len(f) > 2 and f[0] and f[0][0].isdigit():
            fields[f[2]] = float(f[0])
    return n * each * 100 / ((stamp - t0) / 1e9) / 1e6, fields["task-clock"], fields["context-switches"]


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    rounds, n, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    relays = [a.split("=", 1) for a in sys.argv[4:]]
    d = tempfile.mkdtemp(prefix="ipc-run-relay-window.")
    build = os.environ.get("BUILD")
    if not build:
        build = d
        for name in ("child", "relay"):
            subprocess.run(["cc", "-O2", "-o", os.path.join(d, name),
                            os.path.join(here, "..", "scale", name + ".c")], check=True)
    o = {"child": os.path.join(build, "child"), "relay": os.path.join(build, "relay")}
    with open("/proc/loadavg") as f:
        print(f"N={n}, {total} lines of 100 bytes, {rounds} rounds; load {' '.join(f.read().split()[:3])}")
    got = {label: [] for label, _ in relays}
    for k in range(rounds):
        order = relays[k % len(relays):] + relays[:k % len(relays)]
        for label, relay in order:
            mbs, cpu, cs = one(o, d, None if relay == "c" else relay, n, total)
            got[label].append((mbs, cpu, cs))
            print(f"round {k + 1} {label}: {mbs:.0f} MB/s, relay CPU {cpu:.1f} ms, {cs:.0f} context switches",
                  flush=True)
    base = relays[0][0]
    for label, _ in relays:
        runs = got[label]
        line = (f"{label}: {statistics.median(r[0] for r in runs):.0f} MB/s, "
                f"CPU {statistics.median(r[1] for r in runs):.1f} ms (medians)")
        if label != base:
            ratio = statistics.median(a[0] / b[0] for a, b in zip(runs, got[base]))
            cpu = statistics.median(a[1] / b[1] for a, b in zip(runs, got[base]))
            line += f"; per round against {base}: throughput {ratio:.2f}x, CPU {cpu:.2f}x"
        print(line)
    with open("/proc/loadavg") as f:
        print(f"load at the end {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
