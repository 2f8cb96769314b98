#!/usr/bin/env bash
# The bench's rpc row: unary echo calls over an rpc edge's Unix listener
# (length-prefixed frames, the listener handed to the peer as a topology
# hands it) against round trips on the raw Unix stream socket beneath it.
# `ipc-run bench --mechanism rpc` measures both in the same run, rounds
# interleaved, and prints the p50 of each and their ratio. This script runs
# it REPEATS times (each a separate bench run of ROUNDS rounds) and prints
# every run's ratio lines, then the median ratio per size over the runs.
#
# usage: bench/rpc/run.sh [REPEATS]      (default 3)
#   ROUNDS=5        rounds per bench run
#   SECS=0.5        cap of each round (round trips)
#   SIZES=64,4K     message sizes
#   PIN=0,1         pass --pin A,B (unset: unpinned)
#   IPC_RUN=path    ipc-run to measure (default: build target/release/ipc-run)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-3}"
if [ -z "${IPC_RUN:-}" ]; then
    cargo build --release --locked --quiet --bin ipc-run
    IPC_RUN="${CARGO_TARGET_DIR:-target}/release/ipc-run"
fi
pin=()
[ -n "${PIN:-}" ] && pin=(--pin "$PIN")
echo "== rpc vs unix-stream round trips: $repeats run(s) of ${ROUNDS:-5} rounds, ${SECS:-0.5}s caps, sizes ${SIZES:-64,4K}${PIN:+, pinned $PIN}"
echo "machine: nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
out="$(mktemp -t rpc-bench.XXXXXX)"
trap 'rm -f "$out"' EXIT
for i in $(seq 1 "$repeats"); do
    "$IPC_RUN" bench --mechanism rpc --sizes "${SIZES:-64,4K}" --rounds "${ROUNDS:-5}" \
        --duration "${SECS:-0.5}" "${pin[@]}" --format json >> "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
text = open(sys.argv[1]).read()
decoder, at, runs = json.JSONDecoder(), 0, []
while at < len(text.rstrip()):
    while text[at].isspace():
        at += 1
    doc, at = decoder.raw_decode(text, at)
    runs.append(doc["records"])
ratios = {}
for n, records in enumerate(runs, 1):
    p50 = {(r["mechanism"], r["size"]): r["value"] for r in records if r["metric"] == "round_trip_p50"}
    for r in records:
        if r["metric"] == "round_trip_p50_ratio" and r["value"] is not None:
            size = r["size"]
            ratios.setdefault(size, []).append(r["value"])
            print(f"run {n}: {size:>5} B  rpc p50 {p50[('rpc', size)]:.2f} us, "
                  f"unix-stream p50 {p50[('unix-stream', size)]:.2f} us: {r['value']:.2f}x")
for size, values in sorted(ratios.items()):
    print(f"median over {len(values)} run(s): {size:>5} B  rpc / unix-stream p50 = {statistics.median(values):.2f}x")
PY
