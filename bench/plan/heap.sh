#!/usr/bin/env bash
# Where the planner's memory goes: heaptrack over `ipc-run check` (or another
# command) on a generated topology of N processes (default 10 000), printing
# the peak heap, the largest consumers at the peak and what is still held at
# exit (the topology, the plan: `check` leaks them on purpose).
#
# usage: bench/plan/heap.sh [N] [check|plan|plan-json]     needs heaptrack
set -euo pipefail

cd "$(dirname "$0")/../.."
n="${1:-10000}"
mode="${2:-check}"
command -v heaptrack >/dev/null || { echo "heaptrack is not installed" >&2; exit 2; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

cargo build --release --locked --quiet --bin ipc-run --example gen_topology
bin="${CARGO_TARGET_DIR:-target}/release"
"$bin/examples/gen_topology" "$n" >"$dir/t.toml"
case "$mode" in
    check) args=(check --limits default) ;;
    plan) args=(plan --limits default) ;;
    plan-json) args=(plan --format json --limits default) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
heaptrack -o "$dir/heap" "$bin/ipc-run" "${args[@]}" --max-file-size 4GiB --max-processes "$n" "$dir/t.toml" >/dev/null
print() { heaptrack_print -f "$dir"/heap.*zst --print-allocators 0 --print-temporary 0 "$@" 2>/dev/null; }
echo "== $mode, $n processes"
print --print-peaks 0 --print-leaks 0 | grep -E "peak heap|peak RSS|leaked"
# Each consumer: its size, then the first frame in ipc-run's own source.
summarise() { awk '/(consumed|leaked) over/{size=$1; calls=$4; want=1; next}
    want && /at src\// {sub(/^ +at /,""); printf "  %8s over %8s calls  %s\n", size, calls, $0; want=0}'; }
echo "== at the peak"
print --print-peaks 1 --print-leaks 0 --peak-limit 30 | summarise | head -20
echo "== held at exit"
print --print-peaks 0 --print-leaks 1 --peak-limit 30 | summarise | head -20
