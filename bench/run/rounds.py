#!/usr/bin/env python3
"""Times whole commands side by side, rounds interleaved; prints medians and
the median of the per-round ratios of a base command to each other one.

usage: rounds.py ROUNDS [--bytes N] [--size LABEL=N]... [--base LABEL]
                 [--also-base LABEL]... [--keep-going] [--marginal] [--json FILE] -- LABEL=COMMAND...

COMMAND is run with `bash -c` (so pipes work), stdin from /dev/null, stdout
and stderr to /dev/null. A round runs every command once, in an order that
rotates from round to round, so drift of the machine and the position in the
round hit all of them alike. A command that exits non-zero stops the
benchmark, or with --keep-going is reported as failed and run no more.
A COMMAND written `!REASON` is not run: its row shows REASON (a peer that is
not installed, a mechanism that does not exist).

--bytes N        throughput (N / wall time) is printed too; --size LABEL=N
                 gives one command another size (ratios are then per byte).
--base LABEL     the command the ratios are taken against (default: the first).
--also-base LABEL  with --marginal, one more ratio column against LABEL's NAME.
--marginal       labels are NAME@COUNT (e.g. honcho@1, honcho@500): prints, per
                 NAME, T(COUNT) for every count and, for every count N above the
                 smallest S, the marginal cost per process (T(N) - T(S)) / (N - S),
                 paired within a round, and its per-round ratio to the base NAME's.
--json FILE      also writes every round's figures to FILE.
"""

import json
import os
import statistics
import sys
import time

med = statistics.median


def run(command):
    """Runs command; returns (wall seconds, CPU seconds of it and its waited-for
    descendants, exit code)."""
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
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def parse(args):
    if "--" not in args or len(args) < 3:
        sys.exit(__doc__)
    split = args.index("--")
    head, tail = args[:split], args[split + 1 :]
    opts = {"rounds": int(head[0]), "bytes": 0, "size": {}, "base": None, "also_base": [],
            "keep_going": False, "marginal": False, "json": None}
    i = 1
    while i < len(head):
        flag = head[i]
        if flag in ("--keep-going", "--marginal"):
            opts[flag[2:].replace("-", "_")] = True
            i += 1
            continue
        value = head[i + 1]
        if flag == "--bytes":
            opts["bytes"] = int(value)
        elif flag == "--size":
            label, n = value.split("=", 1)
            opts["size"][label] = int(n)
        elif flag in ("--base", "--json"):
            opts[flag[2:]] = value
        elif flag == "--also-base":
            opts["also_base"].append(value)
        else:
            sys.exit(f"unknown option {flag}\n{__doc__}")
        i += 2
    return opts, [a.split("=", 1) for a in tail]


def measure(opts, commands):
    labels = [label for label, _ in commands]
    wall = {label: [] for label in labels}
    cpu = {label: [] for label in labels}
    failed = {label: command[1:] for label, command in commands if command.startswith("!")}
    for r in range(opts["rounds"]):
        k = r % len(commands)
        for label, command in commands[k:] + commands[:k]:
            if label in failed:
                continue
            w, c, code = run(command)
            if code != 0:
                if not opts["keep_going"]:
                    sys.exit(f"`{command[:200]}` exited with {code}")
                failed[label] = f"failed (exit {code})"
                continue
            wall[label].append(w)
            cpu[label].append(c)
        print(f"round {r + 1}/{opts['rounds']}: " + ", ".join(
            f"{l} {wall[l][-1] * 1000:.1f} ms" for l in labels if l not in failed),
            file=sys.stderr)
    return labels, wall, cpu, failed


def per_round(a, b):
    """Median of a[i] / b[i] over rounds both have, with min and max."""
    xs = [x / y for x, y in zip(a, b) if y > 0]
    return (med(xs), min(xs), max(xs)) if xs else None


def table(opts, labels, wall, cpu, failed, base):
    sizes = {l: opts["size"].get(l, opts["bytes"]) for l in labels}
    nbytes = any(sizes.values())
    print(f"medians of {opts['rounds']} interleaved rounds\n")
    cols = ["command", "wall (median)", "min .. max", "CPU user+sys (median)"]
    if nbytes:
        cols.append("MB/s (median)")
    cols.append(f"{base} / command, wall" + (" per byte" if opts["size"] else "")
                + " (median per-round ratio)")
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    lines = []
    for label in labels:
        if label in failed or not wall[label]:
            print(f"| {label} | {failed.get(label, 'no result')} |" + " |" * (len(cols) - 2))
            continue
        cells = [label, f"{med(wall[label]) * 1000:.1f} ms",
                 f"{min(wall[label]) * 1000:.1f} .. {max(wall[label]) * 1000:.1f} ms",
                 f"{med(cpu[label]) * 1000:.1f} ms"]
        if nbytes:
            cells.append(f"{med([sizes[label] / w / 1e6 for w in wall[label]]):.0f}")
        if label == base or base in failed:
            cells.append("—")
        else:
            scale = sizes[label] / sizes[base] if sizes[base] else 1
            r = per_round([w * scale for w in wall[base]], wall[label])
            cells.append(f"{r[0]:.2f}x" if r[0] >= 0.1 else f"{r[0]:.3f}x")
            lines.append(f"{base} / {label}: median per-round ratio {r[0]:.3f}x "
                         f"(min {r[1]:.3f}x, max {r[2]:.3f}x)")
        print("| " + " | ".join(cells) + " |")
    print()
    print("\n".join(lines))


def marginal(opts, labels, wall, failed, base):
    """Fixed and marginal launch cost per NAME, from labels NAME@COUNT."""
    names = {}
    for label in labels:
        name, count = label.rsplit("@", 1)
        names.setdefault(name, set()).add(int(count))
    counts = sorted({c for v in names.values() for c in v})
    lo, his = counts[0], counts[1:]
    base = base.rsplit("@", 1)[0]
    extra = [b.rsplit("@", 1)[0] for b in opts["also_base"]]

    def marg(name, hi):
        a, b = f"{name}@{lo}", f"{name}@{hi}"
        if a in failed or b in failed:
            return None
        return [(y - x) / (hi - lo) for x, y in zip(wall[a], wall[b])]

    print(f"medians of {opts['rounds']} interleaved rounds; marginal(N) = (T(N) - T({lo})) / (N - {lo}), "
          f"paired within a round; ratios: per-round marginal(N) / {base}'s\n")
    cols = ["manager"] + [f"T({c})" for c in counts]
    for hi in his:
        cols += [f"marginal({hi}) per process", f"x {base} at {hi}"]
        cols += [f"x {b} at {hi}" for b in extra]
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    out = {}
    for name in names:
        cells = [name] + [failed.get(f"{name}@{c}") or f"{med(wall[f'{name}@{c}']) * 1000:.1f} ms"
                          for c in counts]
        out[name] = {"fixed_ms": None if f"{name}@{lo}" in failed else med(wall[f"{name}@{lo}"]) * 1000}
        for hi in his:
            m, bm = marg(name, hi), marg(base, hi)
            if not m:
                cells += ["—", "—"] + ["—" for _ in extra]
                continue
            r = per_round(m, bm) if bm else None
            cells += [f"{med(m) * 1000:.3f} ms ({min(m) * 1000:.3f} .. {max(m) * 1000:.3f})",
                      f"{r[0]:.2f}x" if r else "—"]
            out[name][f"marginal_ms@{hi}"] = med(m) * 1000
            out[name][f"ratio@{hi}"] = r[0] if r else None
            for b in extra:
                bm2 = marg(b, hi)
                r2 = per_round(m, bm2) if bm2 else None
                cells.append(f"{r2[0]:.2f}x" if r2 else "—")
                out[name][f"ratio@{hi}/{b}"] = r2[0] if r2 else None
        print("| " + " | ".join(cells) + " |")
    return out


def main():
    opts, commands = parse(sys.argv[1:])
    labels, wall, cpu, failed = measure(opts, commands)
    base = opts["base"] or labels[0]
    summary = None
    if opts["marginal"]:
        summary = marginal(opts, labels, wall, failed, base)
    else:
        table(opts, labels, wall, cpu, failed, base)
    if opts["json"]:
        with open(opts["json"], "w") as f:
            json.dump({"rounds": opts["rounds"], "base": base, "bytes": opts["bytes"],
                       "size": opts["size"], "wall": wall, "cpu": cpu, "failed": failed,
                       "marginal": summary, "labels": labels}, f, indent=1)


if __name__ == "__main__":
    main()
