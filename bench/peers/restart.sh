#!/usr/bin/env bash
# Workload F, restart: a child (bench/peers/restart.c) lives LIVE_MS (1100 ms,
# past s6-supervise's 1 s respawn throttle) and crashes (exit 1), K times; its
# stdout is a channel to a reader that time-stamps every line. Measured from
# the crash to the replacement's first instruction (running), and to its first
# line read at the other end of its channel (running with its channels).
#   ipc-run: `restart = "on-failure"`, `restart_backoff = 0`, the channel a
#            pipeline edge crasher -> sink; and with the default 100 ms backoff
#   s6:      s6-svscan, the crasher a service with a log/ service as the sink
#            (s6 keeps that pipe open across restarts)
#   supervisord: autorestart, startsecs=0; no channel between programs
#
# usage: bench/peers/restart.sh [ROUNDS]     (default 3; K=5, LIVE_MS=1100)
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-3}"
k="${K:-5}"
live="${LIVE_MS:-1100}"
echo "== F restart: crash -> replacement running; $k crashes per run, $rounds rounds"
machine
helper bench/peers/restart.c
r="$dir/restart"
log() { echo "$dir/$1.log"; }

ipcrun_topology() { # LABEL BACKOFF-LINE
    local file="$dir/$1.toml"
    printf 'name = "restart"\npipeline = ["crasher", "sink"]\n\n[process.crasher]\n' >"$file"
    printf 'cmd = ["%s", "crasher", "%s", "%s", "%s"]\nrestart = "on-failure"\nrestart_limit = 1000\n%s\n' \
        "$r" "$(log "$1")" "$k" "$live" "$2" >>"$file"
    printf '\n[process.sink]\ncmd = ["%s", "sink", "%s"]\n' "$r" "$(log "$1")" >>"$file"
    echo "$file"
}
commands=("ipc-run=exec $IPC_RUN -q $(ipcrun_topology ipc-run 'restart_backoff = 0')"
          "ipc-run-backoff-100ms=exec $IPC_RUN -q $(ipcrun_topology ipc-run-backoff-100ms '')")
if have s6-svscan; then
    sd="$dir/s6"; mkdir -p "$sd/crasher/log"
    ln -sf "$r" "$sd/crasher/run"; ln -sf "$r" "$sd/crasher/log/run"
    echo "$(log s6) $k $live" >"$sd/crasher/crash.conf"; log s6 >"$sd/crasher/log/sink.conf"
    echo "s6-svscanctl -t $sd" >"$dir/s6.stop"
    commands+=("s6=exec s6-svscan $sd")
else commands+=("s6=!not installed"); fi
if have supervisord; then
    supervisord_conf "$dir/sv-restart.conf" 1 "$r crasher $(log supervisord) $k $live" NONE \
        autorestart=true startretries=1000
    commands+=("supervisord=exec supervisord -c $dir/sv-restart.conf")
else commands+=("supervisord=!not installed"); fi
echo
# shellcheck disable=SC2046
python3 bench/peers/restart.py "$rounds" "$k" "$dir" $(json restart) -- "${commands[@]}"
