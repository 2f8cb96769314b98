#!/usr/bin/env bash
# Workload A, launch: start N short processes (/bin/true) and wait until all
# have exited, for N = 1, 50 and 500, under ipc-run and every peer, rounds
# interleaved. Prints T(N) and the fixed cost T(1) and marginal cost per
# process (T(500) - T(1)) / 499, paired within each round, and the per-round
# ratio of each manager's marginal cost to the C posix_spawn launcher's.
# Goal: ipc-run's marginal cost at most 1.1x c-posix_spawn. c-posix_spawn-pipes
# also captures each child's stdout and stderr through pipes of its own, as
# ipc-run does to relay them: the floor for a launcher that relays output.
#
# usage: bench/peers/launch.sh [ROUNDS]     (default 5; COUNTS="1 50 500")
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-5}"
counts="${COUNTS:-1 50 500}"
here=bench/peers
echo "== A launch: N short processes, start to all exited; $rounds rounds"
machine
for c in spawnbench s6fin; do helper "$here/$c.c"; done

commands=()
for n in $counts; do
    # ipc-run: one process with n replicas
    printf 'name = "launch"\n\n[process.p]\ncmd = ["/bin/true"]\nreplicas = %d\n' "$n" >"$dir/launch-$n.toml"
    commands+=("ipc-run@$n=$IPC_RUN -q $dir/launch-$n.toml")
    commands+=("c-posix_spawn@$n=$dir/spawnbench posix_spawn $n" "c-fork-exec@$n=$dir/spawnbench fork-exec $n")
    commands+=("c-posix_spawn-pipes@$n=$dir/spawnbench posix_spawn-pipes $n")
    commands+=("bash@$n=for i in \$(seq $n); do /bin/true & done; wait")
    if have pipexec; then
        a=""; for i in $(seq "$n"); do a+=" [ p$i /bin/true ]"; done
        commands+=("pipexec@$n=pipexec --$a")
    else commands+=("pipexec@$n=!not installed"); fi
    if have s6-svscan; then
        sd="$dir/s6-$n"; mkdir -p "$sd"; echo "$n" >"$sd/.expect"
        for i in $(seq "$n"); do mkdir "$sd/s$i"; ln -s /bin/true "$sd/s$i/run"; ln -s "$dir/s6fin" "$sd/s$i/finish"; done
        commands+=("s6-svscan@$n=: > $sd/.count; exec s6-svscan $sd")
    else commands+=("s6-svscan@$n=!not installed"); fi
    if have supervisord; then
        supervisord_conf "$dir/sv-$n.conf" "$n" /bin/true NONE autorestart=false startretries=0
        supervisord_exit_after "$dir/sv-$n.conf" "$n"
        commands+=("supervisord@$n=supervisord -c $dir/sv-$n.conf")
    else commands+=("supervisord@$n=!not installed"); fi
    if py_has circus; then commands+=("circus@$n=$PY $here/circus_run.py $n /bin/true none")
    else commands+=("circus@$n=!not installed"); fi
    if have "$HONCHO"; then
        echo "p: /bin/true" >"$dir/Procfile"
        commands+=("honcho@$n=$HONCHO -f $dir/Procfile start -c p=$n")
    else commands+=("honcho@$n=!not installed"); fi
    if have "$CONC"; then
        a=""; for i in $(seq "$n"); do a+=" /bin/true"; done
        commands+=("concurrently@$n=$CONC$a")
    else commands+=("concurrently@$n=!not installed"); fi
done
echo
# shellcheck disable=SC2046
python3 bench/run/rounds.py "$rounds" --marginal --keep-going --base "c-posix_spawn@1" --also-base "c-posix_spawn-pipes@1" $(json launch) -- "${commands[@]}"
