#!/usr/bin/env bash
# Idle: supervisors holding sleeping children (`sleep 30`). CPU time of the
# supervisor's processes over a 10 s window and their memory (VmRSS, VmHWM),
# with 50 and 500 children. Goals: ipc-run uses no CPU at idle, and at most
# 16 MiB resident with 500 children. Afterwards each supervisor is stopped
# with SIGTERM by its pid and must exit; ipc-run must leave no child behind.
# Alongside, round by round: bash holding the same children (`sleep 30 &` ...
# `wait`), and with PEERS=1 the peers that supervise long-running processes
# (supervisord, s6-svscan, circus, honcho, concurrently).
#
# usage: bench/run/idle.sh [ROUNDS]     (default 3; WINDOW=10 seconds; NS="50 500"; PEERS=1)
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-3}"
window="${WINDOW:-10}"
sleep_bin=$(command -v sleep)

echo "== idle: $rounds rounds"
machine

topology() { # N -> file
    local file="$dir/idle-$1.toml"
    printf 'name = "idle"\n\n[process.p]\ncmd = ["%s", "30"]\nreplicas = %d\n' "$sleep_bin" "$1" >"$file"
    echo "$file"
}
peers_for() { # N: appends the peers' commands to `commands`
    local n=$1 i a=""
    if have supervisord; then
        supervisord_conf "$dir/sv-idle-$n.conf" "$n" "$sleep_bin 30" NONE autorestart=false
        commands+=("supervisord=exec supervisord -c $dir/sv-idle-$n.conf")
    else commands+=("supervisord=!not installed"); fi
    if have s6-svscan; then
        local sd="$dir/s6-idle-$n"
        mkdir -p "$sd"
        for i in $(seq "$n"); do
            mkdir -p "$sd/s$i"; printf '#!/bin/sh\nexec %s 30\n' "$sleep_bin" >"$sd/s$i/run"; chmod +x "$sd/s$i/run"
        done
        commands+=("s6-svscan=exec s6-svscan $sd")
    else commands+=("s6-svscan=!not installed"); fi
    if py_has circus; then commands+=("circus=exec $PY bench/peers/circus_run.py $n '$sleep_bin 30' none")
    else commands+=("circus=!not installed"); fi
    if have "$HONCHO"; then
        echo "p: $sleep_bin 30" >"$dir/Procfile-idle"
        commands+=("honcho=exec $HONCHO -f $dir/Procfile-idle start -c p=$n")
    else commands+=("honcho=!not installed"); fi
    if have "$CONC"; then
        for i in $(seq "$n"); do a+=" '$sleep_bin 30'"; done
        commands+=("concurrently=exec $CONC$a")
    else commands+=("concurrently=!not installed"); fi
}
for n in ${NS:-50 500}; do
    file=$(topology "$n")
    commands=("ipc-run=exec $IPC_RUN -q $file" "bash=for i in \$(seq $n); do $sleep_bin 30 & done; wait")
    [ -z "${PEERS:-}" ] || peers_for "$n"
    echo
    # shellcheck disable=SC2046
    python3 bench/run/idle.py "$rounds" "$window" "$n" $(json "idle-$n") -- "${commands[@]}"
done
