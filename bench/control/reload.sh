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
source "$here/../lib.sh"
source "$here/common.sh"
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
"$IPC_RUN" run --detach "$work/run.toml" --runtime-dir "$rt" >/dev/null
declare -a dry change status
for round in $(seq 1 "$rounds"); do
    dry+=("$(ms "$IPC_RUN" reload reload-bench "$work/run.toml" --dry-run --runtime-dir "$rt")")
    topology "$round" >"$work/next.toml"
    change+=("$(ms "$IPC_RUN" reload reload-bench "$work/next.toml" --runtime-dir "$rt")")
    cp "$work/next.toml" "$work/run.toml"
    status+=("$(ms "$IPC_RUN" status reload-bench tick --runtime-dir "$rt")")
done
echo "ipc-run reload, $n + 1 processes, $rounds interleaved rounds (wall time of each command)"
summary 26 "reload --dry-run (same)" "${dry[@]}"
summary 26 "reload (one env changed)" "${change[@]}"
summary 26 "status (the floor)" "${status[@]}"
"$IPC_RUN" status reload-bench tick --runtime-dir "$rt" | sed -n 's/^\(tick .*\)/last: \1/p'
