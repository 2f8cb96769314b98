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
set -euo pipefail

cd "$(dirname "$0")/../.."
n="${1:-1000000}"
dir="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"

echo "== build" >&2
cargo build --release --locked --quiet --bin ipc-run --example gen_topology --example parse_only
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release"
rusage_exec="$target/rusage_exec"
cc -O2 -o "$rusage_exec" bench/plan/rusage_exec.c

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
for mode in ${MODES:-check plan-text plan-json}; do
    case "$mode" in
        check) row check "$bin/ipc-run" check --limits default "${caps[@]}" "$file" ;;
        plan-text) row plan-text "$bin/ipc-run" plan --limits default "${caps[@]}" "$file" ;;
        plan-json) row plan-json "$bin/ipc-run" plan --format json --limits default "${caps[@]}" "$file" ;;
        check-hosts) row "check --hosts ${HOSTS:-16}" "$bin/ipc-run" check --limits default --hosts "${HOSTS:-16}" "${caps[@]}" "$file" ;;
        plan-json-hosts) row "plan-json --hosts ${HOSTS:-16}" "$bin/ipc-run" plan --format json --limits default --hosts "${HOSTS:-16}" "${caps[@]}" "$file" ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
done
row parse-table "$bin/examples/parse_only" table "$file"

if [ -z "${BENCH_DIR:-}" ]; then
    rm -rf "$dir"
fi
