#!/usr/bin/env python3
"""The scaling benchmark: ipc-run beside the C floor at N children, one run.

usage: scale.py [options] -- LABEL=IPC_RUN_BINARY...

For every N and every manager (the C floor `c-floor`, then each LABEL, their
order rotated each round), one *life*:
  launch    the manager is started (posix_spawn from here) with N children:
            N-1 `child idle` and one `child crash` (bench/scale/child.c);
            every child writes one byte to a FIFO when it runs, and the
            launch time ends when N bytes have arrived: all N running.
  restart   once all run (and SETTLE s), the harness opens the GO FIFO and
            the crasher exits 1 K times, LIVE_MS after each start; each
            time the manager starts it again (backoff 0). Latency: the
            crasher's CLOCK_MONOTONIC stamp at exit -> its replacement's at
            its first instruction, median over the K restarts.
  idle      0.5 s later, VmRSS and VmHWM of the manager's own pid (this
            harness started it directly, no shell between), its open fds,
            and where N is in --idle-at, its CPU over --window seconds
            (/proc/PID/stat ticks, schedstat ns, voluntary switches).
  shutdown  SIGTERM to the manager -> the manager has exited (pidfd), with
            every child stopping at once. Afterwards no child may be left:
            a leftover is reported, and killed by pid.
and, for every N, one *relay* run per manager (`c-relay`, the LABELs): N
writers (`child write`) of --relay-lines 100-byte lines in all, the manager
relaying them, prefixed, into a pipe read by `child sink`. The writers wait
for the GO FIFO once they run, so the relay is timed apart from the launch:
throughput is the writers' bytes over the time from opening GO to the
sink's CLOCK_MONOTONIC stamp at the last line. Before the rounds, each relay runs once and every line is
checked: N prefixes, each with its writer's count of intact lines, nothing
else (0 lost, 0 broken), or the benchmark stops.

Options: --dir DIR --child BIN --floor BIN --relay BIN (required);
--rounds 3 --ns "10 100 1000 3000 10000" --k 5 --live-ms 50 --settle 0.3
--window 5 --idle-at "1000" --relay-lines 2000000 --check-lines 200000
--parts "life relay" --json FILE. Prints the tables (bench/scale/report.py) and writes FILE.
"""

import json
import os
import select
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "run"))
from idle import cpu, status  # noqa: E402

import report  # noqa: E402

REPLICAS_MAX = 1000  # ipc-run's replicas cap is 1024: N is split into processes of 1000


class Failed(Exception):
    pass


def parse(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    opts = {"rounds": "3", "ns": "10 100 1000 3000 10000", "k": "5", "live-ms": "50",
            "settle": "0.3", "window": "5", "idle-at": "1000", "relay-lines": "2000000",
            "check-lines": "200000", "parts": "life relay", "json": None}
    head = argv[:split]
    for flag, value in zip(head[::2], head[1::2]):
        if not flag.startswith("--"):
            sys.exit(f"bad option {flag}\n{__doc__}")
        opts[flag[2:]] = value
    for need in ("dir", "child", "floor", "relay"):
        if need not in opts:
            sys.exit(f"--{need} is required\n{__doc__}")
    managers = [a.split("=", 1) for a in argv[split + 1:]]
    return opts, managers


def toml_str(s):
    return json.dumps(s)  # a TOML basic string is a JSON string for these paths


def groups(prefix, n):
    """(name, replicas) covering n instances in processes of at most REPLICAS_MAX."""
    out, i = [], 0
    while n > 0:
        take = min(n, REPLICAS_MAX)
        out.append((f"{prefix}{i}", take))
        n -= take
        i += 1
    return out


def life_topology(path, o, n, ready, log, go):
    lines = ['name = "scale"', ""]
    idle = f"[{toml_str(o['child'])}, \"idle\", {toml_str(ready)}]"
    for name, reps in groups("idle", n - 1):
        lines += [f"[process.{name}]", f"cmd = {idle}", f"replicas = {reps}", ""]
    crash = ", ".join(toml_str(a) for a in (o["child"], "crash", ready, log, go, o["k"], o["live-ms"]))
    lines += ["[process.crasher]", f"cmd = [{crash}]", 'restart = "on-failure"',
              "restart_backoff = 0", "restart_limit = 100000", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def relay_topology(path, o, n, writer):
    lines = ['name = "scale-relay"', ""]
    cmd = ", ".join(toml_str(a) for a in writer)
    for name, reps in groups("g", n):
        lines += [f"[process.{name}]", f"cmd = [{cmd}]", f"replicas = {reps}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def spawn(argv, stdout=None, stderr=None):
    """Starts argv, stdin and (by default) stdout on /dev/null, stderr to the file stderr."""
    devnull = os.open(os.devnull, os.O_RDWR)
    err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if stderr else devnull
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0),
                   (os.POSIX_SPAWN_DUP2, devnull if stdout is None else stdout, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)]
        return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    finally:
        os.close(devnull)
        if stderr:
            os.close(err)


def last_words(path):
    """The last line the manager wrote to stderr, to say why it failed."""
    try:
        with open(path, errors="replace") as f:
            lines = [x.strip() for x in f if x.strip()]
        return f" ({lines[-1][:200]})" if lines else ""
    except OSError:
        return ""


def wait_exit(pid, timeout):
    """Waits for pid with a pidfd, so the moment of exit is seen at once."""
    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise Failed(f"still running {timeout:g} s after SIGTERM")
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def leftovers(marker):
    """Pids of processes whose argv holds marker (this life's FIFO path)."""
    out, me = [], marker.encode()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if me in f.read():
                        out.append(int(p))
            except OSError:
                pass
    return out


def kill_all(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def await_ready(rfd, pid, n, t0, deadline):
    got = 0
    while got < n:
        if select.select([rfd], [], [], 0.2)[0]:
            got += len(os.read(rfd, 1 << 16))
            continue
        if os.waitpid(pid, os.WNOHANG)[0]:
            raise Failed(f"exited after {got} of {n} children started")
        if time.perf_counter() > deadline:
            raise Failed(f"{got} of {n} children started after {deadline - t0:.0f} s")
    return time.perf_counter() - t0


def restarts(log, k, deadline):
    """Crash -> replacement running, ms, once the log shows K+1 starts."""
    while True:
        start, crash = {}, {}
        with open(log) as f:
            for line in f:
                kind, i, t = line.split()
                (start if kind == "start" else crash)[int(i)] = int(t)
        if len(start) > k:
            return [(start[i + 1] - crash[i]) / 1e6 for i in range(k)]
        if time.perf_counter() > deadline:
            raise Failed(f"{len(start) - 1} of {k} restarts seen")
        time.sleep(0.01)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def life(o, label, binary, n, d):
    """One manager's life at n children; returns its figures."""
    ready, go, log = (os.path.join(d, x) for x in ("ready", "go", "crash.log"))
    for x in (ready, go, log, log + ".n"):
        if os.path.exists(x):
            os.unlink(x)
    os.mkfifo(ready)
    os.mkfifo(go)
    open(log, "w").close()
    k, window = int(o["k"]), float(o["window"])
    if binary is None:
        argv = [o["floor"], str(n), o["child"], ready, log, go, o["k"], o["live-ms"]]
    else:
        life_topology(os.path.join(d, "life.toml"), o, n, ready, log, go)
        argv = [binary, "-q", os.path.join(d, "life.toml")]
    rfd = os.open(ready, os.O_RDWR | os.O_NONBLOCK)
    gfd, pid = None, None
    try:
        t0 = time.perf_counter()
        pid = spawn(argv, stderr=os.path.join(d, "stderr"))
        try:
            launch = await_ready(rfd, pid, n, t0, t0 + 60 + n / 50)
        except Failed as e:
            raise Failed(str(e) + last_words(os.path.join(d, "stderr"))) from e
        time.sleep(float(o["settle"]))
        gfd = os.open(go, os.O_RDWR)  # a writer: the crasher's open of GO returns
        rs = restarts(log, k, time.perf_counter() + 30 + k * 5)
        time.sleep(0.5)
        out = {"launch_ms": launch * 1000, "restart_ms": statistics.median(rs), "restarts": rs}
        if n in o["idle_at"]:
            c0 = cpu(pid)
            time.sleep(window)
            c1 = cpu(pid)
            out["idle"] = {"ticks": c1[0] - c0[0], "sched_ms": (c1[1] - c0[1]) / 1e6,
                           "wakeups": c1[2] - c0[2], "window_s": window}
        st = status(pid)
        out.update(rss_mib=st["VmRSS"] / 1024, hwm_mib=st["VmHWM"] / 1024, fds=fds(pid))
        t1 = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        out["exit"] = wait_exit(pid, 60 + n / 50)
        out["shutdown_ms"] = (time.perf_counter() - t1) * 1000
        pid = None
    finally:
        if pid is not None:  # failed: the manager and what it started, by pid
            kill_all([pid] + leftovers(ready))
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # already reaped while it was awaited
                pass
        os.close(rfd)
        if gfd is not None:
            os.close(gfd)
    left = leftovers(ready)
    kill_all(left)
    out["left"] = len(left)
    if left:
        print(f"{label}@{n}: {len(left)} children left running after it exited", file=sys.stderr)
    return out


def life_of(o, label, binary, n, d):
    try:
        return life(o, label, binary, n, d)
    except OSError as e:  # e.g. the manager gone before its pid could be read
        raise Failed(str(e)) from e


def relay_argv(o, binary, n, each, d, ready, go):
    writer = [o["child"], "write", ready, go, str(each), "100"]
    if binary is None:
        return [o["relay"], str(n)] + writer
    path = os.path.join(d, "relay.toml")
    relay_topology(path, o, n, writer)
    return [binary, "-q", path]


def relay_run(o, binary, n, each, d, check):
    """One relay of n writers: started, all n running, then GO. Returns
    (seconds from GO to the last line out, per-writer line counts, broken
    lines, lines seen, exit code). With check, this harness reads and parses
    every line; without, `child sink` reads them and stamps the last one."""
    ready, go = os.path.join(d, "ready"), os.path.join(d, "go")
    for x in (ready, go):
        if os.path.exists(x):
            os.unlink(x)
        os.mkfifo(x)
    rfd = os.open(ready, os.O_RDWR | os.O_NONBLOCK)
    r, w = os.pipe()
    err, want = os.path.join(d, "stderr"), n * each
    pid = spawn(relay_argv(o, binary, n, each, d, ready, go), stdout=w, stderr=err)
    os.close(w)
    sink, out = None, r
    if not check:  # the manager's output goes to the sink, the sink's to us
        sr, sw = os.pipe()
        sink = os.posix_spawn(o["child"], [o["child"], "sink", str(want)], os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, sw, 1)])
        os.close(r)
        os.close(sw)
        out = sr
    gfd, counts, bad, seen = None, {}, 0, 0
    try:
        t0 = time.perf_counter()
        try:
            await_ready(rfd, pid, n, t0, t0 + 60 + n / 50)
        except Failed as e:
            raise Failed(str(e) + last_words(err)) from e
        t0 = time.monotonic_ns()  # the sink's clock
        gfd = os.open(go, os.O_RDWR)
        body, rest, data = b"x" * 99, b"", b""
        while check and seen < want:
            buf = os.read(out, 1 << 20)
            if not buf:
                break
            seen += buf.count(b"\n")
            *whole, rest = (rest + buf).split(b"\n")
            for line in whole:
                prefix, sep, text = line.rpartition(b" | ")
                if sep and text == body:
                    counts[prefix.strip()] = counts.get(prefix.strip(), 0) + 1
                else:
                    bad += 1
        took = (time.monotonic_ns() - t0) / 1e9
        while True:  # the sink's stamp; after a check, what came after the last line
            buf = os.read(out, 1 << 20)
            if not buf:
                break
            data += buf
        if not check:
            got, stamp = data.split()
            seen, took = int(got), (int(stamp) - t0) / 1e9
        elif data or rest:
            bad += 1
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        pid = None
        return took, counts, bad, seen, code
    finally:
        if pid is not None:
            kill_all([pid] + leftovers(ready))
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # already reaped while it was awaited
                pass
        if sink is not None:
            os.waitpid(sink, 0)
        for fd in (rfd, out, gfd):
            if fd is not None:
                os.close(fd)


def relay_check(o, label, binary, n, d):
    """Runs the relay once; every line must arrive whole, with its writer's prefix."""
    each = max(1, int(o["check-lines"]) // n)
    _, counts, bad, seen, code = relay_run(o, binary, n, each, d, check=True)
    wrong = [p for p, c in counts.items() if c != each]
    lost = n * each - sum(counts.values())
    if code:  # could not run at this N (a limit): reported, not measured
        raise Failed(f"exited with {code} ({seen} of {n * each} lines relayed)"
                     + last_words(os.path.join(d, "stderr")))
    if bad or wrong or len(counts) != n or lost:
        sys.exit(f"relay check {label}@{n}: {len(counts)} of {n} writers, {lost} lines lost, "
                 f"{bad} broken, {len(wrong)} writers with a wrong count")
    return {"writers": n, "lines": n * each, "lost": lost, "broken": bad}


def relay(o, label, binary, n, d):
    each = max(1, int(o["relay-lines"]) // n)
    took, _, _, seen, code = relay_run(o, binary, n, each, d, check=False)
    if code or seen != n * each or took <= 0:
        raise Failed(f"exited with {code}, {seen} of {n * each} lines relayed")
    return {"relay_mbs": n * each * 100 / took / 1e6, "relay_bytes": n * each * 100}


def progress(res, label, n):
    """The last round's figures of label at n, for the progress line."""
    key, out = f"{label}@{n}", [label]
    if key in res["life"] and f"life:{key}" not in res["failed"]:
        x = res["life"][key][-1]
        out.append(f"launch {x['launch_ms']:.1f} ms, stop {x['shutdown_ms']:.1f} ms")
    if key in res["relay"] and f"relay:{key}" not in res["failed"]:
        out.append(f"relay {res['relay'][key][-1]['relay_mbs']:.0f} MB/s")
    return out[0] + " " + ", ".join(out[1:])


def main():
    o, managers = parse(sys.argv[1:])
    o["idle_at"] = {int(x) for x in o["idle-at"].split()}
    ns = [int(x) for x in o["ns"].split()]
    rounds = int(o["rounds"])
    labels = ["c-floor"] + [label for label, _ in managers]
    binaries = {"c-floor": None, **{label: b for label, b in managers}}
    relay_label = {"c-floor": "c-relay"}
    res = {"ns": ns, "rounds": rounds, "labels": labels, "k": int(o["k"]),
           "live_ms": int(o["live-ms"]), "window": float(o["window"]),
           "relay_lines": int(o["relay-lines"]), "life": {}, "relay": {}, "check": {}, "failed": {}}
    d = o["dir"]
    os.makedirs(d, exist_ok=True)
    for n in ns if "relay" in o["parts"].split() else []:
        for label in labels:
            try:
                res["check"][f"{label}@{n}"] = relay_check(o, relay_label.get(label, label),
                                                           binaries[label], n, d)
            except Failed as e:
                res["failed"][f"relay:{label}@{n}"] = str(e)
                print(f"relay check {label}@{n}: {e}", file=sys.stderr)
    for r in range(rounds):
        for n in ns:
            order = labels[r % len(labels):] + labels[:r % len(labels)]
            for label in order:
                for part, measure in (("life", life_of), ("relay", relay)):
                    key = f"{label}@{n}"
                    if part not in o["parts"].split() or f"{part}:{key}" in res["failed"]:
                        continue
                    try:
                        res[part].setdefault(key, []).append(measure(o, label, binaries[label], n, d))
                    except Failed as e:
                        res["failed"][f"{part}:{key}"] = str(e)
                        print(f"{part} {key}: {e}", file=sys.stderr)
            print(f"round {r + 1}/{rounds} N={n}: " + ", ".join(progress(res, l, n) for l in labels),
                  file=sys.stderr)
    if o["json"]:
        with open(o["json"], "w") as f:
            json.dump(res, f, indent=1)
    report.print_tables(res)


if __name__ == "__main__":
    main()
