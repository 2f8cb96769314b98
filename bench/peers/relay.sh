#!/usr/bin/env bash
# Workload B, log relay: children write 100-byte lines to stdout and a manager
# relays them, prefixed with the child's name where it can, into /dev/null.
#   one child writing 1 GiB (10 737 418 lines), and 8 children at once writing
#   1/8 of that each; honcho and circus's prefixing stream, which relay at a few
#   MB/s, write SLOW_LINES (32 MiB) instead and are compared per byte.
# Throughput is the children's bytes over the wall time of the whole command;
# ratios are per round against `| cat` (one cat for all 8 children).
# Before timing, every manager relays CHECK_LINES lines into a pipe, and the
# lines that arrive whole are counted (LOSS: missing, SPLIT: broken lines).
# Goal: ipc-run at least 0.8x the throughput of cat.
#
# usage: bench/peers/relay.sh [ROUNDS]      (default 3; LINES, SLOW_LINES, CHECK_LINES)
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-3}"
lines="${LINES:-10737418}"
slow="${SLOW_LINES:-335544}"
here=bench/peers
echo "== B log relay: $((lines * 100)) bytes of 100-byte lines, 1 child and 8 children; $rounds rounds"
machine
helper "$here/relay.c"
helper bench/run/linegen.c

# build K L S: fills `commands` for K children writing L lines in all (S for the slow relays)
build() {
    local k=$1 l=$(($2 / $1)) s=$(($3 / $1)) gen="$dir/linegen" i par="" each=""
    commands=()
    # par CMD: k copies of CMD at once (CMD may use $i)
    for i in $(seq "$k"); do par+="$gen $l 100 & "; each+="$gen $l 100 | $dir/relay g$i & "; done
    commands+=("cat={ $par wait; } | cat" "c-prefix-relay=$each wait")
    printf 'name = "relay"\n\n[process.gen]\ncmd = ["%s", "%s", "100"]\n' "$gen" "$l" >"$dir/relay-$k.toml"
    [ "$k" = 1 ] || echo "replicas = $k" >>"$dir/relay-$k.toml"
    commands+=("ipc-run=$IPC_RUN -q $dir/relay-$k.toml")
    if have s6-log; then
        each=""; for i in $(seq "$k"); do each+="$gen $l 100 | s6-log 1 & "; done
        commands+=("s6-log=$each wait")
    else commands+=("s6-log=!not installed"); fi
    if have supervisord; then
        supervisord_conf "$dir/sv-relay-$k.conf" "$k" "$gen $l 100" /dev/stdout autorestart=false startretries=0
        supervisord_exit_after "$dir/sv-relay-$k.conf" "$k"
        commands+=("supervisord=supervisord -c $dir/sv-relay-$k.conf")
    else commands+=("supervisord=!not installed"); fi
    if have "$CONC"; then
        each=""; for i in $(seq "$k"); do each+=" '$gen $l 100'"; done
        commands+=("concurrently=$CONC$each")
    else commands+=("concurrently=!not installed"); fi
    if py_has circus; then
        commands+=("circus=$PY $here/circus_run.py $k '$gen $l 100' plain"
                   "circus-prefixed=$PY $here/circus_run.py $k '$gen $s 100' fancy")
    else commands+=("circus=!not installed" "circus-prefixed=!not installed"); fi
    if have "$HONCHO"; then
        echo "g: $gen $s 100" >"$dir/Procfile-$k"
        commands+=("honcho=$HONCHO -f $dir/Procfile-$k start -c g=$k")
    else commands+=("honcho=!not installed"); fi
}

check="${CHECK_LINES:-100000}"
echo
echo "lines arriving whole when the relay writes into a pipe ($check lines, 1 child):"
build 1 "$check" "$check"
for c in "${commands[@]}"; do
    label=${c%%=*} cmd=${c#*=}
    [ "${cmd:0:1}" = "!" ] && { echo "  $label: ${cmd:1}"; continue; }
    got=$(bash -c "$cmd" 2>/dev/null | grep -c 'x\{99\}' || true)
    verdict=ok; [ "$got" -lt "$check" ] && verdict=LOSS; [ "$got" -gt "$check" ] && verdict=SPLIT
    echo "  $label: $got of $check $verdict"
    if [ "$label" = ipc-run ] && [ "$(bash -c "$cmd" | grep -c '^gen | x\{99\}$')" != "$check" ]; then
        echo "ipc-run lost or broke lines" >&2; exit 1
    fi
done

for k in 1 8; do
    build "$k" "$lines" "$slow"
    echo
    echo "== $k child(ren), $(( (lines / k) * k * 100 )) bytes in all"
    # shellcheck disable=SC2046
    python3 bench/run/rounds.py "$rounds" --keep-going --base cat --bytes $(( (lines / k) * k * 100 )) \
        --size "circus-prefixed=$(( (slow / k) * k * 100 ))" --size "honcho=$(( (slow / k) * k * 100 ))" \
        $(json "relay-$k") -- "${commands[@]}"
done
