#!/usr/bin/env bash
# Launch until all run, end to end: the time from starting a launcher until
# N `sleep` children of it run (untilrun.c watches /proc), for ipc-run (one
# process with N replicas) and the C floors, at N = 100 and 3,000, rounds
# interleaved with the order rotated (one process of N replicas, or groups
# of 1,000 above that). BEFORE=/path/to/ipc-run adds a column
# for another ipc-run binary (e.g. the one before the change). Prints each
# launcher's per-child cost and, paired within each round, its ratio to
# C posix_spawn (bare: no pipes, a small table) of the same N, and the
# per-child cost at the largest N over the smallest.
#
# usage: bench/spawn/launch.sh [ROUNDS]     (default 5; COUNTS="100 3000")
#        IPC_RUN=path (else a release build), BEFORE=path
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-5}"
counts="${COUNTS:-100 3000}"
echo "== launch until N sleep children run; $rounds rounds"
machine
cc -O2 -Wall -o "$dir/untilrun" bench/spawn/untilrun.c
cc -O2 -Wall -o "$dir/tablebench" bench/spawn/tablebench.c
sleep_bin=$(command -v sleep)
launchers=(c-posix_spawn c-posix_spawn-pipes ipc-run)
[ -n "${BEFORE:-}" ] && launchers+=(ipc-run-before)
for n in $counts; do
    # replicas are capped at 1024 per process: groups of at most 1000
    {
        echo 'name = "launch"'
        left=$n; i=0
        while [ "$left" -gt 0 ]; do
            r=$(( left < 1000 ? left : 1000 ))
            printf '\n[process.p%d]\ncmd = ["%s", "1000"]\nreplicas = %d\n' "$i" "$sleep_bin" "$r"
            left=$(( left - r )); i=$(( i + 1 ))
        done
    } >"$dir/launch-$n.toml"
done
for r in $(seq "$rounds"); do
    k=$(( (r - 1) % ${#launchers[@]} ))
    order=("${launchers[@]:k}" "${launchers[@]:0:k}")
    for n in $counts; do
        for l in "${order[@]}"; do
            case $l in
                c-posix_spawn) cmd=(env HOLD=1 "$dir/tablebench" bare "$n") ;;
                c-posix_spawn-pipes) cmd=(env HOLD=1 "$dir/tablebench" posix_spawn "$n") ;;
                ipc-run) cmd=("$IPC_RUN" -q "$dir/launch-$n.toml") ;;
                ipc-run-before) cmd=("$BEFORE" -q "$dir/launch-$n.toml") ;;
            esac
            echo "$r $n $l $("$dir/untilrun" "$n" "${cmd[@]}" 2>/dev/null | head -1)"
        done
    done
done | tee "$dir/raw" >&2
python3 - "$dir/raw" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
bad = [r for r in rows if len(r) != 4]
if bad: sys.exit(f"runs that failed: {bad}")
t = {(int(r), int(n), m): float(us) for r, n, m, us in rows}
counts = sorted({k[1] for k in t}); names = list(dict.fromkeys(k[2] for k in t))
rounds = sorted({k[0] for k in t}); lo, hi = counts[0], counts[-1]
print("\n| launcher | " + " | ".join(f"ms at {n}" for n in counts) + " | " +
      " | ".join(f"vs C posix_spawn at {n}" for n in counts) + f" | per-child {hi} / {lo} |")
print("|---|" + "---:|" * (2 * len(counts) + 1))
for m in names:
    ms = [st.median(t[r, n, m] for r in rounds) / 1000 for n in counts]
    vs = [st.median(t[r, n, m] / t[r, n, "c-posix_spawn"] for r in rounds) for n in counts]
    g = st.median((t[r, hi, m] / hi) / (t[r, lo, m] / lo) for r in rounds)
    print(f"| {m} | " + " | ".join(f"{x:.0f}" for x in ms) + " | " +
          " | ".join(f"{v:.2f}x" for v in vs) + f" | {g:.2f}x |")
print(f"\nmedians of {len(rounds)} interleaved rounds (ratios paired within each round)")
PY
