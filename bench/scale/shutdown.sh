#!/usr/bin/env bash
# Shutdown: N idle `sleep` children, SIGTERM -> ipc-run exited; interleaved
# rounds, medians, and each binary's ratio to the first.
#
# usage: bench/scale/shutdown.sh [ROUNDS] [SIZES]   (default 5, "100,3000")
#   BEFORE=/path/to/ipc-run   also measure this binary (e.g. the one before a change)
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-5}"; sizes="${2:-100,3000}"
echo "== shutdown: SIGTERM -> exit of ipc-run with N idle children"
machine
bins=("ipc-run=$IPC_RUN")
[ -z "${BEFORE:-}" ] || bins=("before=$(realpath "$BEFORE")" "${bins[@]}")
python3 bench/scale/loop.py shutdown "$rounds" "$sizes" -- "${bins[@]}"
