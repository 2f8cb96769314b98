#!/usr/bin/env bash
# ipc-run side by side with its peers: installs the peers (bench/peers/setup.sh),
# builds ipc-run, runs every workload with ipc-run and each peer interleaved
# round by round, prints medians and per-round ratios, keeps the tables and the
# rounds in RESULTS and redraws the plots of docs/performance.md from them.
#
#   A launch       bench/peers/launch.sh     N = 1, 50, 500 short processes
#   B log relay    bench/peers/relay.sh      1 GiB of 100-byte lines, 1 and 8 children
#   C pipeline     bench/peers/pipeline.sh   producer | filter | consumer, 1 GiB
#   D planning     bench/plan/run.sh         1k/10k/100k processes vs the TOML parse
#   E idle         bench/run/idle.sh         50 and 500 sleeping children, 10 s
#   F restart      bench/peers/restart.sh    crash -> replacement running
#
# usage: bench/compare.sh [A B C D E F]     (default: all)
#   ROUNDS_A=5 ROUNDS_B=3 ROUNDS_C=5 ROUNDS_D=3 ROUNDS_E=1 ROUNDS_F=3   rounds per workload
#   RESULTS=dir     tables (*.md) and rounds (*.json); default docs/perf-data
#   PEERS_DIR=dir   where the pip and npm peers go (~/.cache/ipc-run-peers)
#   IPC_RUN=path    time this binary instead of building one
#   CARGO_TARGET_DIR is honoured by the build
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
workloads=("$@"); [ ${#workloads[@]} -gt 0 ] || workloads=(A B C D E F)
export PEERS_DIR="${PEERS_DIR:-$HOME/.cache/ipc-run-peers}"
export RESULTS="${RESULTS:-$root/docs/perf-data}"
mkdir -p "$RESULTS"

echo "== peers" >&2
bench/peers/setup.sh
echo "== build (release)" >&2
cargo build --release --locked --quiet --bin ipc-run --example gen_topology --example parse_only
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export IPC_RUN="${IPC_RUN:-$target/release/ipc-run}"

for w in "${workloads[@]}"; do
    case $w in
        A) cmd=(bench/peers/launch.sh "${ROUNDS_A:-5}") ;;
        B) cmd=(bench/peers/relay.sh "${ROUNDS_B:-3}") ;;
        C) cmd=(bench/peers/pipeline.sh "${ROUNDS_C:-5}") ;;
        D) cmd=(bench/plan/run.sh "${ROUNDS_D:-3}") ;;
        E) cmd=(env PEERS=1 bench/run/idle.sh "${ROUNDS_E:-1}") ;;
        F) cmd=(bench/peers/restart.sh "${ROUNDS_F:-3}") ;;
        *) echo "unknown workload $w (A B C D E F)" >&2; exit 2 ;;
    esac
    echo
    echo "######## workload $w: ${cmd[*]}"
    "${cmd[@]}" | tee "$RESULTS/$w.md"
done

echo
if "$PEERS_DIR/venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    "$PEERS_DIR/venv/bin/python" bench/plots.py "$RESULTS" docs/img
else
    echo "plots: matplotlib not installed in $PEERS_DIR/venv; plots not redrawn" >&2
fi
