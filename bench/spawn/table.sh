#!/usr/bin/env bash
# The spawn options of docs/performance.md ("Spawning from a small file
# table"), side by side: tablebench.c in every mode at N = 100 and 3,000,
# with and without a cgroup v2 migration per child, rounds interleaved with
# the order rotated. Prints per-child cost (median over rounds) and, per
# round, each mode's ratio to the bare posix_spawn floor of the same N.
#
# usage: bench/spawn/table.sh [ROUNDS]   (default 5; COUNTS="100 3000")
# The cgroup rows need a writable cgroup v2 directory (root, or delegated):
# a scratch cgroup is made under CGROUP_PARENT (default: ours) and removed.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"
counts="${COUNTS:-100 3000}"
dir=$(mktemp -d /tmp/tablebench.XXXXXX)
trap 'rmdir "$cg" 2>/dev/null || true; rm -rf "$dir"' EXIT
cc -O2 -Wall -o "$dir/tablebench" bench/spawn/tablebench.c
echo "machine: nproc $(nproc); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
mount2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
cg="${CGROUP_PARENT:-$mount2$own}/tablebench-$$"
modes="bare posix_spawn vfork files helper"
if [ -n "$mount2" ] && mkdir "$cg" 2>/dev/null; then
    modes="$modes vfork+cg files+cg helper+cg"
else
    echo "no writable cgroup v2 here: the +cg rows are left out"
fi
for r in $(seq "$rounds"); do
    read -ra all <<<"$modes"
    k=$(( (r - 1) % ${#all[@]} ))
    order=("${all[@]:k}" "${all[@]:0:k}")   # rotated by the round number
    for n in $counts; do
        for m in "${order[@]}"; do
            case $m in
                *+cg) us=$(CGROUP="$cg" "$dir/tablebench" "${m%+cg}" "$n") ;;
                *) us=$("$dir/tablebench" "$m" "$n") ;;
            esac
            echo "$r $n $m $us"
        done
    done
done | tee "$dir/raw" >&2
python3 - "$dir/raw" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
t = {(int(r), int(n), m): float(us) for r, n, m, us in rows}
counts = sorted({k[1] for k in t}); modes = list(dict.fromkeys(k[2] for k in t))
rounds = sorted({k[0] for k in t})
print("\n| mode | " + " | ".join(f"µs/child at {n}" for n in counts) +
      " | " + " | ".join(f"vs bare at {n}" for n in counts) + f" | per-child {counts[-1]} / {counts[0]} |")
print("|---|" + "---:|" * (2 * len(counts) + 1))
for m in modes:
    per = [st.median(t[r, n, m] / n for r in rounds) for n in counts]
    vs = [st.median(t[r, n, m] / t[r, n, "bare"] for r in rounds) for n in counts]
    growth = st.median((t[r, counts[-1], m] / counts[-1]) / (t[r, counts[0], m] / counts[0]) for r in rounds)
    print(f"| {m} | " + " | ".join(f"{p:.0f}" for p in per) + " | " +
          " | ".join(f"{v:.2f}x" for v in vs) + f" | {growth:.2f}x |")
print(f"\nmedians of {len(rounds)} interleaved rounds (ratios paired within each round)")
PY
