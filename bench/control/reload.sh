#!/usr/bin/env bash
# `ipc-run reload` of a run of 1,000 idle processes (docs/operate.md,
# "Reload"): a detached run of N `sleep` replicas and one `tick` process,
# then ROUNDS interleaved rounds of
#   - `reload --dry-run` of the unchanged file (plan, hand over, read the
#     plan back, diff: the fixed cost of any reload),
#   - `reload` of a file where `tick`'s env changed (that, plus restarting
#     one process),
#   - `status` (the client's own floor: start, find the run, one request),
# each timed as a whole command; prints the median and the slowest of
# each, in milliseconds. `tick`'s restarts are checked at the end.
# usage: bench/control/reload.sh [ROUNDS]   (N=1000; IPC_RUN=path to skip the build)
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
    for _ in $(seq 1 200); do
        [ -z "$(ls -A "$rt" 2>/dev/null)" ] && break
        sleep 0.05
    done
    rm -rf "$work"
}
trap cleanup EXIT
topology() { # the topology with tick's GEN = $1
    echo 'name = "reload-bench"'
    echo '[process.idle]'
    echo 'cmd = ["sleep", "100000"]'
    echo "replicas = $n"
    echo '[process.tick]'
    echo 'cmd = ["sleep", "100000"]'
    echo 'restart = "on-failure"'
    echo "env = { GEN = \"$1\" }"
}
topology 0 >"$work/run.toml"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$IPC_RUN" run --detach "$work/run.toml" --runtime-dir "$rt" >/dev/null
ms() { # the wall time of "$@" in microseconds, its output discarded
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}
declare -a dry change status
for round in $(seq 1 "$rounds"); do
    dry+=("$(ms "$IPC_RUN" reload reload-bench "$work/run.toml" --dry-run --runtime-dir "$rt")")
    topology "$round" >"$work/next.toml"
    change+=("$(ms "$IPC_RUN" reload reload-bench "$work/next.toml" --runtime-dir "$rt")")
    cp "$work/next.toml" "$work/run.toml"
    status+=("$(ms "$IPC_RUN" status reload-bench tick --runtime-dir "$rt")")
done
summary() { # name, then microseconds
    local name="$1"
    shift
    printf '%s\n' "$@" | sort -n | awk -v name="$name" '
        { v[NR] = $1 }
        END { printf "%-26s median %7.1f ms   max %7.1f ms\n", name, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
echo "ipc-run reload, $n + 1 processes, $rounds interleaved rounds (wall time of each command)"
summary "reload --dry-run (same)" "${dry[@]}"
summary "reload (one env changed)" "${change[@]}"
summary "status (the floor)" "${status[@]}"
"$IPC_RUN" status reload-bench tick --runtime-dir "$rt" | sed -n 's/^\(tick .*\)/last: \1/p'
