#!/usr/bin/env bash
# Restart latency of one child (restart_backoff 0) beside N idle siblings:
# from its crash to its next start (bench/peers/restart.c crasher, K crashes
# of LIVE_MS each); interleaved rounds, medians, ratios to the first binary.
#
# usage: bench/scale/restart.sh [ROUNDS] [SIZES]   (default 5, "10,3000")
#   BEFORE=/path/to/ipc-run   also measure this binary
#   K=20 LIVE_MS=30           crashes per run, life of each
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-5}"; sizes="${2:-10,3000}"
echo "== restart: one child's restart latency beside N idle siblings"
machine
helper bench/peers/restart.c
bins=("ipc-run=$IPC_RUN")
[ -z "${BEFORE:-}" ] || bins=("before=$(realpath "$BEFORE")" "${bins[@]}")
python3 bench/scale/loop.py restart "$rounds" "$sizes" "$dir/restart" -- "${bins[@]}"
