#!/usr/bin/env bash
# The ring beside a pipe of the default size, a pipe grown to the ring's
# capacity (pipe-sized) and iceoryx2 (bench/iceoryx2), in one run: 64 B
# round trips and 64 KiB one-way throughput, with both processes on one CPU
# (--pin 0,0) and on two (--pin 0,1). Each round runs every tool once per
# placement, the order rotated from round to round; the summary gives the
# median of the rounds and the median of the per-round ratios.
#
# usage: bench/ring/compare.sh [ROUNDS]      (default 5)
#   SECS=0.5         window of each measurement (throughput; cap of round trips)
#   CPUS="0,0 0,1"   placements: measuring side, peer
#   IPC_RUN=path     ipc-run to measure (default: build target/release/ipc-run)
#   IOX=path         the iceoryx2 bench (default: build it in bench/iceoryx2)
#   BEFORE=path      also an older ipc-run (e.g. main's), without --pin: run
#                    under `taskset -c A` for one CPU, unpinned for two
#   OUT=file         keep every record (JSON lines); default a temp file
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"
secs="${SECS:-0.5}"
read -r -a placements <<< "${CPUS:-0,0 0,1}"
if [ -z "${IPC_RUN:-}" ]; then
    cargo build --release --locked --quiet --bin ipc-run
    IPC_RUN="${CARGO_TARGET_DIR:-target}/release/ipc-run"
fi
if [ -z "${IOX:-}" ]; then
    (cd bench/iceoryx2 && cargo build --release --locked --quiet)
    IOX=bench/iceoryx2/target/release/ipc-run-bench-iceoryx2
fi
out="${OUT:-$(mktemp -t ring-compare.XXXXXX)}"
: > "$out"
echo "== ring vs pipes vs iceoryx2: $rounds rounds, ${secs}s windows, placements ${placements[*]}"
echo "machine: nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg); fs.pipe-max-size $(cat /proc/sys/fs/pipe-max-size)"

# One tool's records, tagged with the round and the placement.
tag() { python3 -c '
import json, sys
doc = json.load(sys.stdin)
for r in doc["records"]:
    r["round"], r["cpus"] = int(sys.argv[1]), sys.argv[2]
    if len(sys.argv) > 3: r["mechanism"] += sys.argv[3]
    print(json.dumps(r))' "$@"; }

run_tool() { # TOOL ROUND PLACEMENT
    local tool=$1 round=$2 cpus=$3 one=${3%%,*}
    case $tool in
    ipc-run)
        "$IPC_RUN" bench --format json --mechanism shm-ring,pipe,pipe-sized --sizes 64,64K \
            --rounds 1 --duration "$secs" --pin "$cpus" | tag "$round" "$cpus" ;;
    before)
        local wrap=(); [ "${cpus%%,*}" = "${cpus##*,}" ] && wrap=(taskset -c "$one")
        "${wrap[@]}" "$BEFORE" bench --format json --mechanism shm-ring,pipe --sizes 64,64K \
            --rounds 1 --duration "$secs" | tag "$round" "$cpus" " (before)" ;;
    iox-rtt) "$IOX" rtt 64 "$secs" "$cpus" | tag "$round" "$cpus" ;;
    iox-thr) "$IOX" throughput 65536 "$secs" "$cpus" | tag "$round" "$cpus" ;;
    iox-copy) "$IOX" throughput 65536 "$secs" "$cpus" copy-out | tag "$round" "$cpus" ;;
    esac
}

tools=(ipc-run iox-rtt iox-thr iox-copy)
[ -n "${BEFORE:-}" ] && tools+=(before)
for ((round = 0; round < rounds; round++)); do
    for cpus in "${placements[@]}"; do
        n=${#tools[@]}
        for ((k = 0; k < n; k++)); do
            run_tool "${tools[$(((round + k) % n))]}" "$round" "$cpus" >> "$out"
        done
    done
    echo "round $((round + 1))/$rounds done" >&2
done

python3 - "$out" <<'EOF'
import json, statistics, sys
from collections import defaultdict

values = defaultdict(dict)   # (cpus, mechanism, metric, size) -> {round: value}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["value"] is not None:
        values[(r["cpus"], r["mechanism"], r["metric"], r["size"])][r["round"]] = r["value"]

def med(key):
    v = list(values.get(key, {}).values())
    return statistics.median(v) if v else None

def ratio(a, b):
    """Median of the per-round ratios a/b, over the rounds that have both."""
    va, vb = values.get(a, {}), values.get(b, {})
    r = [va[k] / vb[k] for k in va if k in vb and vb[k]]
    return (statistics.median(r), min(r), max(r)) if r else None

for cpus in sorted({k[0] for k in values}):
    where = "one CPU" if cpus.split(",")[0] == cpus.split(",")[1] else "two CPUs"
    print(f"\n--- {where} (--pin {cpus}) ---")
    mechs = sorted({k[1] for k in values if k[0] == cpus})
    print(f"{'mechanism':<22} {'64 B rtt p50 us':>16} {'64 B rtt p99 us':>16} {'64 KiB GB/s':>12}")
    for m in mechs:
        cells = [med((cpus, m, "round_trip_p50", 64)), med((cpus, m, "round_trip_p99", 64)),
                 med((cpus, m, "throughput", 65536))]
        print(f"{m:<22}" + "".join(f" {('-' if c is None else f'{c:.3g}'):>{w}}"
                                    for c, w in zip(cells, (16, 16, 12))))
    print("ratios (median of rounds [min-max]):")
    for label, a, b in [
        ("ring / pipe, 64 B rtt p50", "shm-ring", "pipe"),
        ("ring / pipe-sized, 64 B rtt p50", "shm-ring", "pipe-sized"),
        ("ring / iceoryx2, 64 B rtt p50", "shm-ring", "iceoryx2"),
        ("ring (before) / pipe (before), 64 B rtt p50", "shm-ring (before)", "pipe (before)"),
    ]:
        r = ratio((cpus, a, "round_trip_p50", 64), (cpus, b, "round_trip_p50", 64))
        if r: print(f"  {label:<46} {r[0]:.2f}x  [{r[1]:.2f}-{r[2]:.2f}]")
    for label, a, b in [
        ("ring / pipe-sized, 64 KiB throughput", "shm-ring", "pipe-sized"),
        ("ring / pipe, 64 KiB throughput", "shm-ring", "pipe"),
        ("ring / iceoryx2 (zero-copy), 64 KiB", "shm-ring", "iceoryx2"),
        ("ring / iceoryx2 (copy-out), 64 KiB", "shm-ring", "iceoryx2-copy"),
    ]:
        r = ratio((cpus, a, "throughput", 65536), (cpus, b, "throughput", 65536))
        if r: print(f"  {label:<46} {r[0]:.2f}x  [{r[1]:.2f}-{r[2]:.2f}]")
print(f"\nrecords: {sys.argv[1]}")
EOF
