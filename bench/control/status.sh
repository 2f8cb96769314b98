#!/usr/bin/env bash
# `ipc-run status` of a run of 1,000 idle processes (docs/operate.md,
# "Performance"): a detached run of N `sleep` processes, then ROUNDS
# interleaved rounds of `status` (text), `status --format json`, `status`
# naming every instance (one request of N names: the run finds each by a
# look-up, not a scan of every instance per name) and `ps` (one `info`
# per live run), each timed as a whole command (process start
# included); prints the median and the slowest of each, in milliseconds.
# usage: bench/control/status.sh [ROUNDS]   (N=1000; IPC_RUN=path to skip the build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../lib.sh"
source "$here/common.sh"
{
    echo 'name = "status-bench"'
    echo '[process.idle]'
    echo 'cmd = ["sleep", "100000"]'
    echo "replicas = $n"
} >"$work/idle.toml"
"$IPC_RUN" run --detach "$work/idle.toml" --runtime-dir "$rt" >/dev/null
pid=$("$IPC_RUN" ps --runtime-dir "$rt" --format json | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# Idle: the run's own CPU over 2 s with nobody asking (clock ticks).
idle_before=$(cpu_ticks)
sleep 2
idle_ticks=$(($(cpu_ticks) - idle_before))
names=()
for k in $(seq 0 $((n - 1))); do names+=("idle#$k"); done
declare -a text json named ps
for _ in $(seq 1 "$rounds"); do
    text+=("$(ms "$IPC_RUN" status --runtime-dir "$rt")")
    json+=("$(ms "$IPC_RUN" status --runtime-dir "$rt" --format json)")
    named+=("$(ms "$IPC_RUN" status status-bench "${names[@]}" --runtime-dir "$rt" --format json)")
    ps+=("$(ms "$IPC_RUN" ps --runtime-dir "$rt")")
done
bytes=$("$IPC_RUN" status --runtime-dir "$rt" --format json | wc -c)
echo "ipc-run status, $n processes, $rounds interleaved rounds (wall time of each command)"
summary 22 "status (text)" "${text[@]}"
summary 22 "status --format json" "${json[@]}"
summary 22 "status of N named" "${named[@]}"
summary 22 "ps" "${ps[@]}"
echo "status --format json: $bytes bytes"
echo "ipc-run's CPU while idle for 2 s: $idle_ticks clock tick(s) of $(getconf CLK_TCK)/s"
