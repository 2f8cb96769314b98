#!/usr/bin/env bash
# The scaling suite: ipc-run beside the C floor at N = 10 .. 10,000 children,
# in one run: launch until all run, SIGTERM -> exit, one child's restart
# latency beside N-1 idle siblings, relay throughput of N writers (every line
# checked first), the manager's own RSS at N and its idle CPU at 1,000.
# The C floor (floor.c, relay.c) and the children (child.c) are
# compiled here with cc -O2; how each figure is taken is in scale.py.
#
# usage: bench/scale/run.sh [ROUNDS]            (default 3)
#   IPC_RUN=path          the binary measured (default: a release build of this tree)
#   IPC_RUN_BEFORE=path   an older binary, measured as a further column (ipc-run-before)
#   NS="10 100 1000 3000 10000"   K=5 LIVE_MS=50 WINDOW=5 IDLE_AT=1000
#   FDS_PER_CHILD=3       fds ipc-run holds per child (stdout and stderr pipes, a pidfd):
#                         an N that needs more than RLIMIT_NOFILE is left out, with a note,
#                         and the largest thousand that fits is measured instead
#                         (FORCE=1 runs it anyway, to see it fail)
#   RELAY_LINES=2000000 CHECK_LINES=200000
#   PARTS="life relay"    one of them alone: PARTS=relay
#   RESULTS=dir           also writes dir/scale.json (bench/plots.py draws scaling.svg from it)
#   BENCH_DIR=dir         keep the generated files there
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-3}"
ns="${NS:-10 100 1000 3000 10000}"
echo "== scale: ipc-run beside the C floor at N = $ns; $rounds rounds"
machine
for c in bench/scale/child.c bench/scale/floor.c bench/scale/relay.c; do helper "$c"; done

# Each child is a process of this user and costs ipc-run FDS_PER_CHILD fds:
# raise the soft limits to the hard ones (raising a hard limit needs
# CAP_SYS_RESOURCE), and leave out an N that cannot fit.
ulimit -Sn "$(ulimit -Hn)"
ulimit -Su "$(ulimit -Hu)"
per="${FDS_PER_CHILD:-3}" nofile=$(ulimit -n) pid_max=$(cat /proc/sys/kernel/pid_max)
running=(/proc/[0-9]*); procs=${#running[@]}
echo "limits: RLIMIT_NOFILE $nofile (hard $(ulimit -Hn)), RLIMIT_NPROC $(ulimit -u), pid_max $pid_max, processes now $procs"
fit=""
for n in $ns; do
    if [ -z "${FORCE:-}" ] && [ $((per * n + 64)) -gt "$nofile" ]; then
        echo "N=$n left out: ipc-run would hold about $((per * n + 64)) fds ($per per child: stdout and stderr pipes, a pidfd), over RLIMIT_NOFILE $nofile"
    elif [ -z "${FORCE:-}" ] && [ $((n + procs + 100)) -gt "$pid_max" ]; then
        echo "N=$n left out: $n more processes than pid_max $pid_max allows beside the $procs running"
    else fit+="${fit:+ }$n"; fi
done
# in place of what was left out, the largest thousand that fits
cap=$(( (nofile - 64) / per / 1000 * 1000 ))
last=${fit##* }
if [ "$fit" != "$ns" ] && [ "$cap" -gt "${last:-0}" ]; then
    fit+="${fit:+ }$cap"
    echo "N=$cap measured instead: the largest thousand within RLIMIT_NOFILE"
fi
ns=$fit
echo "measured: N = $ns"
[ -n "$ns" ] || { echo "no N fits the limits" >&2; exit 1; }

managers=("ipc-run=$IPC_RUN")
[ -z "${IPC_RUN_BEFORE:-}" ] || managers+=("ipc-run-before=$(realpath "$IPC_RUN_BEFORE")")
out="${RESULTS:+$RESULTS/scale.json}"
out="${out:-$dir/scale.json}"
[ -z "${RESULTS:-}" ] || mkdir -p "$RESULTS"
echo
python3 bench/scale/scale.py --dir "$dir/scale" --child "$dir/child" --floor "$dir/floor" \
    --relay "$dir/relay" --rounds "$rounds" --ns "$ns" \
    --k "${K:-5}" --live-ms "${LIVE_MS:-50}" --window "${WINDOW:-5}" --idle-at "${IDLE_AT:-1000}" \
    --relay-lines "${RELAY_LINES:-2000000}" --check-lines "${CHECK_LINES:-200000}" --parts "${PARTS:-life relay}" --json "$out" \
    -- "${managers[@]}"
echo
echo "JSON: $out"
