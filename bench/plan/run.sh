#!/usr/bin/env bash
# Planning benchmark: how long `ipc-run check` (load + plan) takes on
# generated topologies of 1k, 10k and 100k processes, next to the TOML parse
# of the same files. Results and their reading are in docs/performance.md.
#
# usage: bench/plan/run.sh [ROUNDS]        (default 7)
#   SIZES="1000 10000" bench/plan/run.sh 3  to pick sizes (multiples of 10)
#   BENCH_DIR=/some/dir                      to keep the generated files
#   CARGO_TARGET_DIR is honoured for the build and the binaries run
#   RESULTS=dir                              also writes the rounds to dir/plan.json
#   BEFORE=/path/to/ipc-run                  also times `check` with another binary
#   MODES="check plan-text plan-json"        what of ipc-run to time (default: all three)
#
# Times and peak RSS are measured by bench/plan/rusage_exec.c (built here with
# cc), which forks the command from its own small process: the RSS column is
# the command's alone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
rounds="${1:-7}"
sizes="${SIZES:-1000 10000 100000}"
bench_scratch
bench_build --example gen_topology --example parse_only
ipc_run="$IPC_RUN"
parse_only="$bin/examples/parse_only"
bench_rusage_exec

echo "== generate into $dir" >&2
size_args=()
for n in $sizes; do
    file="$dir/bench-$n.toml"
    "$bin/examples/gen_topology" "$n" >"$file"
    # Fail early on a file the planner rejects: timing an error is meaningless.
    "$ipc_run" check --limits default "$file" >&2
    size_args+=("$n=$file")
done

bench_machine

echo "== measure ($rounds rounds)" >&2
# A peer parse of the same file: Python's tomllib (3.11+), when there.
peer=()
python3 -c 'import tomllib' 2>/dev/null &&
    peer=("python-tomllib=$(command -v python3) -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], \"rb\"))' {file}")
commands=()
for mode in ${MODES:-check plan-text plan-json}; do
    case "$mode" in
        check) commands+=("check=$ipc_run check --limits default {file}") ;;
        plan-text) commands+=("plan-text=$ipc_run plan --limits default {file}") ;;
        plan-json) commands+=("plan-json=$ipc_run plan --format json --limits default {file}") ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
done
[ -n "${BEFORE:-}" ] && commands+=("check-before=$BEFORE check --limits default {file}")
RUSAGE_EXEC="$rusage_exec" MEASURE_JSON="${RESULTS:+$RESULTS/plan.json}" \
    python3 bench/plan/measure.py "$rounds" "${size_args[@]}" -- \
    "${commands[@]}" \
    "parse-table=$parse_only table {file}" \
    "parse-topology=$parse_only topology {file}" \
    "${peer[@]}"

if [ -z "${BENCH_DIR:-}" ]; then
    rm -rf "$dir"
fi
