#!/usr/bin/env python3
"""Restart latency: from a child's crash to its replacement running, and to the
replacement's first line arriving over its channel.

usage: restart.py ROUNDS K DIR [--json FILE] -- LABEL=COMMAND...

COMMAND (bash -c, own session) runs a manager that supervises `restart crasher`
(bench/peers/restart.c) writing its log to DIR/LABEL.log ({log} in COMMAND):
it crashes K times, and its stdout, where a manager gives it a channel, goes to
`restart sink` logging to the same file. Once the log shows K+1 starts the
manager is stopped: SIGTERM to its pid (or the command in DIR/LABEL.stop if
that file exists), then any process it left is killed by pid. Gaps are taken
from the CLOCK_MONOTONIC stamps in the log: crash i -> start i+1 (running),
crash i -> receipt of hello i+1 (running with its channel). Commands alternate
in each round; medians over all crashes of all rounds are printed.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "run"))
from idle import children as descendants  # noqa: E402


def parse(path):
    start, crash, recv = {}, {}, {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return start, crash, recv
    for line in lines:
        f = line.split()
        if f[0] in ("start", "crash"):
            (start if f[0] == "start" else crash)[int(f[1])] = int(f[2])
        elif f[0] == "recv" and len(f) >= 4 and f[2] == "hello":
            recv.setdefault(int(f[3]), int(f[1]))
    return start, crash, recv


def one(label, command, k, d):
    log = os.path.join(d, f"{label}.log")
    for suffix in ("", ".crashes"):
        if os.path.exists(log + suffix):
            os.unlink(log + suffix)
    proc = subprocess.Popen(["bash", "-c", command.replace("{log}", log)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20 + 3 * k
    while len(parse(log)[0]) < k + 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # let the sink log the last hello
    kids = descendants(proc.pid)
    stop = os.path.join(d, f"{label}.stop")
    if os.path.exists(stop):
        subprocess.run(["bash", stop], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for p in kids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    start, crash, recv = parse(log)
    run = [(start[i + 1] - crash[i]) / 1e6 for i in crash if i + 1 in start]
    chan = [(recv[i + 1] - crash[i]) / 1e6 for i in crash if i + 1 in recv]
    if len(run) < k:
        print(f"{label}: only {len(run)} of {k} restarts seen", file=sys.stderr)
    return run, chan


def main():
    args = sys.argv[1:]
    if "--" not in args:
        sys.exit(__doc__)
    split = args.index("--")
    rounds, k, d = int(args[0]), int(args[1]), args[2]
    out = args[args.index("--json") + 1] if "--json" in args[:split] else None
    commands = [a.split("=", 1) for a in args[split + 1:]]
    res = {label: {"run": [], "chan": []} for label, _ in commands}
    for r in range(rounds):
        j = r % len(commands)
        for label, command in commands[j:] + commands[:j]:
            if command.startswith("!"):  # a peer that is not installed
                continue
            run, chan = one(label, command, k, d)
            res[label]["run"] += run
            res[label]["chan"] += chan
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{l} {statistics.median(v['run']):.2f} ms" if v["run"] else f"{l} -"
            for l, v in res.items()), file=sys.stderr)
    m = statistics.median
    def show(v):
        return f"{m(v):.2f} ms ({min(v):.2f} .. {max(v):.2f})"
    print(f"{k} crashes per run, {rounds} rounds; medians over all crashes (min .. max)\n")
    print("| manager | restarts seen | crash -> replacement running | crash -> its first line through its channel |")
    print("|---|---:|---:|---:|")
    for label, command in commands:
        if command.startswith("!"):
            print(f"| {label} | {command[1:]} | | |")
            continue
        v = res[label]
        run = show(v["run"]) if v["run"] else "none"
        chan = show(v["chan"]) if v["chan"] else "no channel to the child"
        print(f"| {label} | {len(v['run'])} of {k * rounds} | {run} | {chan} |")
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
