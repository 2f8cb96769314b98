#!/usr/bin/env bash
# Idle: ipc-run supervising sleeping children (`sleep 30`). CPU time of
# ipc-run over a 10 s window with 50 children (goal: under 10 ms), and its
# memory (VmRSS, VmHWM) with 100 children (goal: under 16 MiB). Afterwards
# ipc-run is stopped with SIGTERM by its pid and must exit, its children
# gone. For reference, bash holding the same children (`sleep 30 &` ...
# `wait`) is measured alongside, round by round.
#
# usage: bench/run/idle.sh [ROUNDS]          (default 3; WINDOW=10 seconds)
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-3}"
window="${WINDOW:-10}"
sleep_bin=$(command -v sleep)

echo "== idle: $rounds rounds"
machine

topology() { # N -> file
    local n=$1 file="$dir/idle-$1.toml"
    echo 'name = "idle"' >"$file"
    for i in $(seq 0 $((n - 1))); do printf '\n[process.p%d]\ncmd = ["%s", "30"]\n' "$i" "$sleep_bin" >>"$file"; done
    echo "$file"
}
for n in 50 100; do
    file=$(topology "$n")
    echo
    python3 bench/run/idle.py "$rounds" "$window" "$n" -- \
        "ipc-run=exec $IPC_RUN -q $file" \
        "bash=for i in \$(seq $n); do $sleep_bin 30 & done; wait"
done
