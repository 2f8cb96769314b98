#!/usr/bin/env bash
# The scaling suite: ipc-run beside the C floor at N = 10 .. 10,000 children,
# in one run: launch until all run, SIGTERM -> exit, one child's restart
# latency beside N-1 idle siblings, relay throughput of N writers (every line
# checked first), the manager's own RSS at N and its idle CPU at 1,000.
# The C floor (floor.c, relay.c) and the children (child.c, linegen.c) are
# compiled here with cc -O2; how each figure is taken is in scale.py.
#
# usage: bench/scale/run.sh [ROUNDS]            (default 3)
#   IPC_RUN=path          the binary measured (default: a release build of this tree)
#   IPC_RUN_BEFORE=path   an older binary, measured as a further column (ipc-run-before)
#   NS="10 100 1000 3000 10000"   K=5 LIVE_MS=50 WINDOW=5 IDLE_AT=1000
#   RELAY_LINES=2000000 CHECK_LINES=200000
#   RESULTS=dir           also writes dir/scale.json (bench/plots.py draws scaling.svg from it)
#   BENCH_DIR=dir         keep the generated files there
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-3}"
ns="${NS:-10 100 1000 3000 10000}"
echo "== scale: ipc-run beside the C floor at N = $ns; $rounds rounds"
machine
for c in bench/scale/child.c bench/scale/floor.c bench/scale/relay.c bench/run/linegen.c; do helper "$c"; done

# Each child is a process (and a thread) of this user, ipc-run holds two pipe
# ends per child (its stdout and stderr): raise the soft limits to the hard ones.
ulimit -Sn "$(ulimit -Hn)"
ulimit -Su "$(ulimit -Hu)"
max=0; for n in $ns; do [ "$n" -gt "$max" ] && max=$n; done
echo "limits: RLIMIT_NOFILE $(ulimit -n), RLIMIT_NPROC $(ulimit -u), pid_max $(cat /proc/sys/kernel/pid_max), processes now $(ls -d /proc/[0-9]* | wc -l); largest N $max"
if [ $((2 * max + 64)) -gt "$(ulimit -n)" ]; then
    echo "note: N=$max needs about $((2 * max + 64)) fds in ipc-run (two relay pipes per child), over RLIMIT_NOFILE $(ulimit -n): expect ipc-run to fail there"
fi
if [ $((2 * max + $(ls -d /proc/[0-9]* | wc -l))) -gt "$(cat /proc/sys/kernel/pid_max)" ]; then
    echo "note: N=$max may exceed pid_max with other processes running"
fi

managers=("ipc-run=$IPC_RUN")
[ -z "${IPC_RUN_BEFORE:-}" ] || managers+=("ipc-run-before=$(realpath "$IPC_RUN_BEFORE")")
out="${RESULTS:+$RESULTS/scale.json}"
out="${out:-$dir/scale.json}"
[ -z "${RESULTS:-}" ] || mkdir -p "$RESULTS"
echo
python3 bench/scale/scale.py --dir "$dir/scale" --child "$dir/child" --floor "$dir/floor" \
    --relay "$dir/relay" --linegen "$dir/linegen" --rounds "$rounds" --ns "$ns" \
    --k "${K:-5}" --live-ms "${LIVE_MS:-50}" --window "${WINDOW:-5}" --idle-at "${IDLE_AT:-1000}" \
    --relay-lines "${RELAY_LINES:-2000000}" --check-lines "${CHECK_LINES:-200000}" --json "$out" \
    -- "${managers[@]}"
echo
echo "JSON: $out"
