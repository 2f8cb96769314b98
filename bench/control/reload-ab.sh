#!/usr/bin/env bash
# Two ipc-run binaries, A and B, compared on bench/control/reload.sh:
# PAIRS alternating runs (A, B, A, B, ...) of ROUNDS rounds each, so that
# both see the same machine; prints each run's medians.
# usage: bench/control/reload-ab.sh A B [PAIRS] [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
a="$1" b="$2" pairs="${3:-3}" rounds="${4:-7}"
for _ in $(seq 1 "$pairs"); do
    for bin in "$a" "$b"; do
        echo "== $bin"
        IPC_RUN="$bin" "$here/reload.sh" "$rounds" | sed -n 2,4p
    done
done
