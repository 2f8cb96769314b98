#!/usr/bin/env bash
# Workload B, log relay: children write 100-byte lines to stdout and a manager
# relays them, prefixed with the child's name where it can, into /dev/null.
#   one child writing 1 GiB (10 737 418 lines), then 8 and 256 children at
#   once writing 1/8 and 1/256 of that each (WRITERS="1 8 256"); honcho and
#   circus's prefixing stream, which relay at a few MB/s, write SLOW_LINES
#   (32 MiB) instead and are compared per byte.
# Throughput is the children's bytes over the wall time of the whole command;
# ratios are per round against `| cat` (one cat for all the children), and
# against c-poll-relay: one C process polling the children's pipes and
# relaying whole prefixed lines (bench/peers/relay.c -p), the floor for a
# supervisor's relay. IPC_RUN_BEFORE=path adds an older ipc-run as a column.
# Before timing, every manager relays CHECK_LINES lines into a pipe, and the
# lines that arrive whole are counted (LOSS: missing, SPLIT: broken lines);
# ipc-run is checked so with 1 child and with the most writers.
# Goals: ipc-run at least 0.8x the throughput of cat; at 256 writers at
# least 0.9x c-poll-relay. The whole command includes launching the
# children while they already write; bench/peers/relay_window.py times
# the relay alone, once all writers run, with the relay process's CPU.
#
# usage: bench/peers/relay.sh [ROUNDS]      (default 3; LINES, SLOW_LINES, CHECK_LINES, WRITERS,
#        CPU_RUNS: see the end)
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
    commands+=("cat={ $par wait; } | cat" "c-prefix-relay=$each wait"
               "c-poll-relay=$dir/relay -p $k $gen $l 100")
    printf 'name = "relay"\n\n[process.gen]\ncmd = ["%s", "%s", "100"]\n' "$gen" "$l" >"$dir/relay-$k.toml"
    [ "$k" = 1 ] || echo "replicas = $k" >>"$dir/relay-$k.toml"
    commands+=("ipc-run=$IPC_RUN -q $dir/relay-$k.toml")
    [ -z "${IPC_RUN_BEFORE:-}" ] || commands+=("ipc-run before=$IPC_RUN_BEFORE -q $dir/relay-$k.toml")
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

writers="${WRITERS:-1 8 256}"
most=$(echo "$writers" | tr ' ' '\n' | sort -n | tail -1)
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
# The same with many writers: every line whole, with its prefix, none lost.
build "$most" "$check" "$check"
want=$(( (check / most) * most ))
got=$("$IPC_RUN" -q "$dir/relay-$most.toml" | grep -c '^gen#[0-9]* *| x\{99\}$' || true)
echo "  ipc-run, $most writers: $got of $want whole"
[ "$got" = "$want" ] || { echo "ipc-run lost or broke lines with $most writers" >&2; exit 1; }

# ratio_to_c FILE: median per-round throughput of each ipc-run column relative
# to c-poll-relay's (its wall / theirs), from the rounds in FILE.
ratio_to_c() {
    python3 - "$1" <<'PY'
import json, statistics, sys
d = json.load(open(sys.argv[1])); w = d["wall"]; c = w.get("c-poll-relay", [])
for label in [l for l in d["labels"] if l.startswith("ipc-run") and l not in d["failed"]]:
    xs = [b / a for a, b in zip(w[label], c) if a > 0]
    if xs:
        print(f"{label} throughput / c-poll-relay's: median per-round ratio {statistics.median(xs):.3f}x "
              f"(min {min(xs):.3f}x, max {max(xs):.3f}x)")
PY
}

for k in $writers; do
    build "$k" "$lines" "$slow"
    echo
    echo "== $k child(ren), $(( (lines / k) * k * 100 )) bytes in all"
    rounds_json="${RESULTS:-$dir}/relay-$k.json"
    # shellcheck disable=SC2046
    python3 bench/run/rounds.py "$rounds" --keep-going --base cat --bytes $(( (lines / k) * k * 100 )) \
        --size "circus-prefixed=$(( (slow / k) * k * 100 ))" --size "honcho=$(( (slow / k) * k * 100 ))" \
        --json "$rounds_json" -- "${commands[@]}"
    ratio_to_c "$rounds_json"
done

# CPU_RUNS=N (needs perf): the CPU time of the relay process alone, without
# the generators (`perf stat --no-inherit -e task-clock`), median of N runs
# each, for ipc-run (and IPC_RUN_BEFORE) and c-poll-relay at every WRITERS
# count; `cat` for one child. Steadier than wall time on a loaded machine.
if [ -n "${CPU_RUNS:-}" ] && have perf; then
    cpu_of() { # cpu_of CMD...: task-clock of CMD's own process, in ms, median of CPU_RUNS
        local i out=() ms
        for i in $(seq "$CPU_RUNS"); do
            ms=$(perf stat -x, -e task-clock --no-inherit "$@" 2>&1 >/dev/null | grep task-clock | cut -d, -f1)
            out+=("$ms")
        done
        printf '%s\n' "${out[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
    }
    echo
    echo "== CPU of the relay process alone (median of $CPU_RUNS runs, ms)"
    for k in $writers; do
        l=$((lines / k))
        row="$k writer(s): ipc-run $(cpu_of "$IPC_RUN" -q "$dir/relay-$k.toml")"
        [ -z "${IPC_RUN_BEFORE:-}" ] || row+=", ipc-run before $(cpu_of "$IPC_RUN_BEFORE" -q "$dir/relay-$k.toml")"
        row+=", c-poll-relay $(cpu_of "$dir/relay" -p "$k" "$dir/linegen" "$l" 100)"
        if [ "$k" = 1 ]; then
            for i in $(seq "$CPU_RUNS"); do
                "$dir/linegen" "$l" 100 | perf stat -x, -e task-clock --no-inherit -o "$dir/cat.stat" cat >/dev/null
                grep task-clock "$dir/cat.stat" | cut -d, -f1
            done | sort -n | awk '{a[NR]=$1} END {printf ", cat %s", a[int((NR+1)/2)]}' >"$dir/cat.ms"
            row+=$(cat "$dir/cat.ms")
        fi
        echo "$row"
    done
fi
