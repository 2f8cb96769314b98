#!/usr/bin/env bash
# What composing costs (docs/topology.md, "Composing a topology"):
# `ipc-run check` of a generated topology as it is (no composition: parsed
# in pieces, as before), of the same file with `include = []` added (the
# composed path: parsed whole, every value looked at for `${`), and with
# `cmd = ["${IPC_RUN_BENCH_CMD:-worker}"]` in every process (each value
# interpolated). Time and peak RSS, medians of interleaved rounds
# (bench/plan/measure.py, as bench/plan/run.sh).
#
# usage: bench/plan/compose.sh [ROUNDS]      (default 7)
#   SIZES="10000 100000" bench/plan/compose.sh 5   (multiples of 10)
#   BENCH_DIR=/some/dir                      to keep the generated files
#   CARGO_TARGET_DIR is honoured for the build and the binaries run
#   BEFORE=/path/to/ipc-run                  also times `check` of the plain
#                                            file with another binary (the
#                                            cost of looking for composition)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
rounds="${1:-7}"
sizes="${SIZES:-10000 100000}"
bench_scratch
bench_build --example gen_topology
ipc_run="$IPC_RUN"
bench_rusage_exec

echo "== generate into $dir" >&2
size_args=()
for n in $sizes; do
    file="$dir/bench-$n.toml"
    "$bin/examples/gen_topology" "$n" >"$file"
    { echo 'include = []'; cat "$file"; } >"$file.included.toml"
    sed 's/^cmd = \["worker"\]$/cmd = ["${IPC_RUN_BENCH_CMD:-worker}"]/' "$file" >"$file.interpolated.toml"
    for variant in "$file" "$file.included.toml" "$file.interpolated.toml"; do
        "$ipc_run" check --limits default --max-file-size 1GiB "$variant" >&2
    done
    # The three plan the same.
    plain=$("$ipc_run" plan --format json --limits default --max-file-size 1GiB "$file" | sha256sum)
    for variant in "$file.included.toml" "$file.interpolated.toml"; do
        [ "$("$ipc_run" plan --format json --limits default --max-file-size 1GiB "$variant" | sha256sum)" = "$plain" ] ||
            { echo "$variant plans differently" >&2; exit 1; }
    done
    size_args+=("$n=$file")
done

bench_machine

echo "== measure ($rounds rounds)" >&2
commands=(
    "check-plain=$ipc_run check --limits default --max-file-size 1GiB {file}"
    "check-included=$ipc_run check --limits default --max-file-size 1GiB {file}.included.toml"
    "check-interpolated=$ipc_run check --limits default --max-file-size 1GiB {file}.interpolated.toml"
)
[ -n "${BEFORE:-}" ] && commands+=("check-before=$BEFORE check --limits default --max-file-size 1GiB {file}")
RUSAGE_EXEC="$rusage_exec" python3 bench/plan/measure.py "$rounds" "${size_args[@]}" -- \
    "${commands[@]}"

if [ -z "${BENCH_DIR:-}" ]; then
    rm -rf "$dir"
fi
