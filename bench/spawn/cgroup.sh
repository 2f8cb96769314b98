#!/usr/bin/env bash
# Children born in the run's cgroup (clone3 with CLONE_INTO_CGROUP) against
# the binary before (each child writing cgroup.procs), in the same rounds:
# one child's restart latency beside N-1 idle siblings, launch and shutdown
# (bench/scale/run.sh, PARTS=life, the C floor beside them), then launch
# until N sleep children run (bench/spawn/launch.sh). Needs a writable
# cgroup v2 (root, or delegated), else both binaries run without one and
# show no difference.
#
# usage: BEFORE=/path/to/ipc-run-before bench/spawn/cgroup.sh [ROUNDS]   (default 3)
#   IPC_RUN=path (else a release build of this tree)
#   NS="10 100"  sizes for the restart/shutdown part (K=5 restarts per run)
#   COUNTS="100 1000"  sizes for the launch part
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
: "${BEFORE:?set BEFORE to the ipc-run binary to compare with}"
if [ -z "${IPC_RUN:-}" ]; then
    cargo build --release --locked --quiet --bin ipc-run
    IPC_RUN=target/release/ipc-run
fi
export IPC_RUN
echo "== restart latency, launch and shutdown beside the C floor (bench/scale)"
PARTS=life NS="${NS:-10 100}" IPC_RUN_BEFORE="$BEFORE" bench/scale/run.sh "$rounds"
echo
echo "== launch until N sleep children run (bench/spawn/launch.sh)"
COUNTS="${COUNTS:-100 1000}" BEFORE="$BEFORE" bench/spawn/launch.sh "$rounds"
