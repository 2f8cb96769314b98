#!/usr/bin/env bash
# Soak runs of the reliability bar at full size, too long for `cargo test`:
#
#   L2  100 children each write 50 MB to stdout and 50 MB to stderr without
#       a newline (10 GB through ipc-run's relay): every child's bytes must
#       come out exactly, with no deadlock and ipc-run's peak RSS < 64 MiB;
#   K3  1,000 restart cycles: ipc-run's RSS, threads and fds after 20
#       cycles and after 1,000 must match;
#   H8  1,500 runs beside a looping `ipc-run clean`: none is taken for dead
#       (tests/reliability/launch.rs, 100 runs in the suite).
#
# They are the tests l2_* and k3_* of tests/reliability/run.rs, which read
# IPC_RUN_SOAK=1 (set here) to switch from their CI share (10 x 5 MB, 200
# cycles) to these sizes.
#
# usage: scripts/soak.sh [--release] [-- EXTRA CARGO TEST ARGS]
#   --release  build and run optimised (a separate build; the default is
#              the debug build `cargo test` already made)
set -euo pipefail

cd "$(dirname "$0")/.."
profile=()
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=(--release) ;;
        --) shift; break ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

export IPC_RUN_SOAK=1
start=$(date +%s)
cargo test --locked "${profile[@]}" --test reliability -- \
    --test-threads 1 --nocapture "$@" \
    l2_large_output_without_newlines_is_relayed_exactly_in_bounded_memory \
    k3_200_restart_cycles_keep_rss_threads_and_fds_flat
cargo test --locked "${profile[@]}" --test reliability -- \
    --test-threads 1 "$@" \
    clean_in_a_loop_never_takes_a_starting_run_for_dead
echo "soak: passed in $(( $(date +%s) - start ))s"
