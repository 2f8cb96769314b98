#!/usr/bin/env bash
# All three ipc-run run benchmarks: launch, log relay, idle.
# usage: bench/run/all.sh        (ROUNDS_LAUNCH=10 ROUNDS_RELAY=10 ROUNDS_IDLE=3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${IPC_RUN:-}" ]; then
    (cd "$here/../.." && cargo build --release --locked --quiet --bin ipc-run)
    export IPC_RUN="${CARGO_TARGET_DIR:-$here/../../target}/release/ipc-run"
fi
"$here/launch.sh" "${ROUNDS_LAUNCH:-10}"
echo
"$here/relay.sh" "${ROUNDS_RELAY:-10}"
echo
"$here/idle.sh" "${ROUNDS_IDLE:-3}"
