#!/usr/bin/env python3
"""Supervisor event-loop benchmarks at scale (bench/scale/shutdown.sh, restart.sh).

  loop.py shutdown ROUNDS SIZES -- LABEL=BINARY ...
      N idle `sleep` children; once all N run, SIGTERM -> ipc-run exited.
  loop.py restart ROUNDS SIZES CRASHER -- LABEL=BINARY ...
      one child (bench/peers/restart.c crasher) crashes K times beside N idle
      siblings, restart_backoff 0; latency = its next start - its crash.

Rounds interleave the binaries (order rotated each round); medians per size
and binary, and the per-round ratio of each binary to the first, are printed.
"""
import os, signal, statistics, subprocess, sys, tempfile, time

K = int(os.environ.get("K", "20"))
LIVE_MS = int(os.environ.get("LIVE_MS", "30"))


def topology(path, n, extra=""):
    with open(path, "w") as f:
        left, g = n, 0
        while left > 0:
            k = min(left, 1000)
            f.write(f'[process.idle{g}]\ncmd = ["sleep", "3600"]\nreplicas = {k}\n')
            left, g = left - k, g + 1
        f.write(extra)


def children(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            total += len(f.read().split())
    return total


def wait_children(proc, n, limit=600):
    deadline = time.monotonic() + limit
    while children(proc.pid) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ipc-run ended or never ran {n} children")
        time.sleep(0.05)
    time.sleep(0.2)  # the last spawned exec'd, the loop is idle


def start(binary, toml):
    return subprocess.Popen([binary, "-q", "run", toml], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def shutdown_once(binary, n, d):
    toml = os.path.join(d, f"shutdown-{n}.toml")
    topology(toml, n)
    proc = start(binary, toml)
    wait_children(proc, n)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    return (time.perf_counter() - t0) * 1e3


def restart_once(binary, n, d, crasher):
    log = os.path.join(d, f"restart-{n}.log")
    for p in (log, log + ".crashes"):
        if os.path.exists(p):
            os.remove(p)
    toml = os.path.join(d, f"restart-{n}.toml")
    topology(toml, n, f'[process.crasher]\ncmd = ["{crasher}", "crasher", "{log}", "{K}", "{LIVE_MS}"]\n'
             'restart = "on-failure"\nrestart_limit = 1000\nrestart_backoff = "0ms"\n')
    proc = start(binary, toml)
    wait_children(proc, n + 1)
    deadline = time.monotonic() + 600
    while True:
        lines = open(log).read().split("\n") if os.path.exists(log) else []
        starts = [int(l.split()[2]) for l in lines if l.startswith("start ")]
        crashes = [int(l.split()[2]) for l in lines if l.startswith("crash ")]
        if len(starts) >= K or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    lat = [(s - c) / 1e6 for c, s in zip(crashes, starts[1:])]
    return statistics.median(lat)


def main():
    what, rounds, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
    rest = sys.argv[4:]
    crasher = None
    if what == "restart":
        crasher, rest = rest[0], rest[1:]
    binaries = [a.split("=", 1) for a in rest[rest.index("--") + 1:]]
    results = {(n, label): [] for n in sizes for label, _ in binaries}
    ratios = {(n, label): [] for n in sizes for label, _ in binaries}
    with tempfile.TemporaryDirectory(prefix="ipc-run-scale.") as d:
        for r in range(rounds):
            for n in sizes:
                order = binaries[r % len(binaries):] + binaries[:r % len(binaries)]
                got = {}
                for label, binary in order:
                    if what == "shutdown":
                        got[label] = shutdown_once(binary, n, d)
                    else:
                        got[label] = restart_once(binary, n, d, crasher)
                    results[(n, label)].append(got[label])
                base = got[binaries[0][0]]
                for label, _ in binaries:
                    ratios[(n, label)].append(got[label] / base)
                print(f"round {r + 1} N={n}: " + ", ".join(f"{l} {got[l]:.2f} ms" for l, _ in binaries),
                      flush=True)
    unit = "SIGTERM -> exit" if what == "shutdown" else f"restart latency (median of {K - 1})"
    print(f"\n{what}: {unit}, medians of {rounds} interleaved rounds")
    for n in sizes:
        for label, _ in binaries:
            med = statistics.median(results[(n, label)])
            ratio = statistics.median(ratios[(n, label)])
            per = f", {med / n * 1e3:.1f} us/child" if what == "shutdown" else ""
            print(f"  N={n:>5} {label:<12} {med:9.2f} ms{per}  (x{ratio:.2f} of {binaries[0][0]})")


if __name__ == "__main__":
    main()
