#!/usr/bin/env bash
# `ipc-run status` of a run of 1,000 idle processes (docs/operate.md,
# "Performance"): a detached run of N `sleep` processes, then ROUNDS
# interleaved rounds of `status` (text), `status --format json` and `ps`
# (one `info` per live run), each timed as a whole command (process start
# included); prints the median and the slowest of each, in milliseconds.
# usage: bench/control/status.sh [ROUNDS]   (N=1000; IPC_RUN=path to skip the build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds="${1:-20}"
n="${N:-1000}"
if [ -z "${IPC_RUN:-}" ]; then
    (cd "$here/../.." && cargo build --release --locked --quiet --bin ipc-run)
    IPC_RUN="${CARGO_TARGET_DIR:-$here/../../target}/release/ipc-run"
fi
work="$(mktemp -d)"
rt="$work/rt"
cleanup() {
    "$IPC_RUN" down --runtime-dir "$rt" >/dev/null 2>&1 || true
    # Wait for the run to remove its directory, then ours.
    for _ in $(seq 1 200); do
        [ -z "$(ls -A "$rt" 2>/dev/null)" ] && break
        sleep 0.05
    done
    rm -rf "$work"
}
trap cleanup EXIT
{
    echo 'name = "status-bench"'
    echo '[process.idle]'
    echo 'cmd = ["sleep", "100000"]'
    echo "replicas = $n"
} >"$work/idle.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$IPC_RUN" run --detach "$work/idle.toml" --runtime-dir "$rt" >/dev/null
pid=$("$IPC_RUN" ps --runtime-dir "$rt" --format json | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
# Idle: the run's own CPU over 2 s with nobody asking (clock ticks).
idle_before=$(cpu_ticks)
sleep 2
idle_ticks=$(($(cpu_ticks) - idle_before))
ms() { # the wall time of "$@" in ms, its output discarded
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}
declare -a text json ps
for _ in $(seq 1 "$rounds"); do
    text+=("$(ms "$IPC_RUN" status --runtime-dir "$rt")")
    json+=("$(ms "$IPC_RUN" status --runtime-dir "$rt" --format json)")
    ps+=("$(ms "$IPC_RUN" ps --runtime-dir "$rt")")
done
bytes=$("$IPC_RUN" status --runtime-dir "$rt" --format json | wc -c)
summary() { # name, then microseconds
    local name="$1"
    shift
    printf '%s\n' "$@" | sort -n | awk -v name="$name" '
        { v[NR] = $1 }
        END { printf "%-22s median %7.1f ms   max %7.1f ms\n", name, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
echo "ipc-run status, $n processes, $rounds interleaved rounds (wall time of each command)"
summary "status (text)" "${text[@]}"
summary "status --format json" "${json[@]}"
summary "ps" "${ps[@]}"
echo "status --format json: $bytes bytes"
echo "ipc-run's CPU while idle for 2 s: $idle_ticks clock tick(s) of $(getconf CLK_TCK)/s"
