#!/usr/bin/env bash
# One run of the planner past the default caps: a generated topology of
# N processes (default 1 000 000, about 160 MiB) checked and planned with
# --max-file-size and --max-processes, next to the TOML parse of the same
# file. Wall time and peak RSS of each command alone (bench/plan/rusage_exec.c).
#
# usage: bench/plan/million.sh [N]
#   BENCH_DIR=/some/dir   keep the generated file there
#   CARGO_TARGET_DIR is honoured for the build and the binaries run
#   MODES="check plan-json"   what of ipc-run to run (default: check plan-text plan-json);
#                             check-hosts and plan-json-hosts plan with --hosts $HOSTS (default 16),
#                             partitioning the topology into host groups (docs/distributed.md)
#   BEFORE=/path/to/ipc-run   also runs each mode with another binary (rows "MODE-before"),
#                             alternating with this tree's, ROUNDS times (default 1)
#   bench/plan/million.sh 100000   the figure of the 2 KiB-per-process goal
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
n="${1:-1000000}"
bench_scratch
bench_build --example gen_topology --example parse_only
bench_rusage_exec

file="$dir/bench-$n.toml"
"$bin/examples/gen_topology" "$n" >"$file"
caps=(--max-file-size "$(stat -c %s "$file")" --max-processes "$n")

echo "nproc: $(nproc); kernel: $(uname -sr); file: $(stat -c %s "$file") bytes, $n processes"
echo "| command | wall time | peak RSS | RSS per process |"
echo "|---|---:|---:|---:|"
row() {
    local label="$1"
    shift
    read -r seconds kib code < <("$rusage_exec" "$@")
    [ "$code" = 0 ] || { echo "$label exited with $code" >&2; exit 1; }
    printf '| %s | %.2f s | %d MiB | %d B |\n' "$label" "$seconds" $((kib / 1024)) $((kib * 1024 / n))
}
# One mode of one binary: `run LABEL BINARY MODE`.
run() {
    local label="$1" binary="$2"
    case "$3" in
        check) row "$label" "$binary" check --limits default "${caps[@]}" "$file" ;;
        plan-text) row "$label" "$binary" plan --limits default "${caps[@]}" "$file" ;;
        plan-json) row "$label" "$binary" plan --format json --limits default "${caps[@]}" "$file" ;;
        check-hosts) row "$label --hosts ${HOSTS:-16}" "$binary" check --limits default --hosts "${HOSTS:-16}" "${caps[@]}" "$file" ;;
        plan-json-hosts) row "$label --hosts ${HOSTS:-16}" "$binary" plan --format json --limits default --hosts "${HOSTS:-16}" "${caps[@]}" "$file" ;;
        *) echo "unknown mode $3" >&2; exit 2 ;;
    esac
}
for _ in $(seq "${ROUNDS:-1}"); do
    for mode in ${MODES:-check plan-text plan-json}; do
        run "$mode" "$bin/ipc-run" "$mode"
        [ -n "${BEFORE:-}" ] && run "$mode-before" "$BEFORE" "$mode"
    done
done
row parse-table "$bin/examples/parse_only" table "$file"

if [ -z "${BENCH_DIR:-}" ]; then
    rm -rf "$dir"
fi
