#!/usr/bin/env bash
# Log relay: one child writes LINES lines of 100 bytes (default 10737418
# lines, 1 GiB) to its stdout. ipc-run relays it, line by line with the name
# prefix, to its own stdout, which is /dev/null; the baseline is the same
# generator piped through `cat` into /dev/null. Throughput is the child's
# bytes over the wall time of the whole command. A second table does the same
# with a pipe after the relay (`ipc-run | cat` against `gen | cat | cat`),
# where the reader is woken for what the relay writes.
# Goal: ipc-run at least 0.5x the throughput of cat.
#
# usage: bench/run/relay.sh [ROUNDS]          (default 10; LINES=... to change the size;
#        IPC_RUN_BEFORE=path adds an older binary as a column;
#        CPU_RUNS=N adds the relay process's own CPU, context switches and
#        page faults, median of N interleaved runs each, with perf)
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-10}"
lines="${LINES:-10737418}"
bytes=$((lines * 100))

echo "== log relay: $bytes bytes of 100-byte lines, $rounds rounds"
machine

linegen_build
gen="$dir/linegen $lines 100"
file="$dir/relay.toml"
linegen_topology "$file" "$lines"

# Completeness first, on a smaller run: every line relayed once, with its prefix.
check_lines=100000
linegen_topology "$dir/check.toml" "$check_lines"
got=$("$IPC_RUN" -q "$dir/check.toml" | grep -c '^gen | x\{99\}$' || true)
[ "$got" = "$check_lines" ] || { echo "ipc-run relayed $got of $check_lines lines" >&2; exit 1; }

echo
# IPC_RUN_BEFORE=/path/to/an/older/ipc-run adds it as a column, for a
# before/after in the same rounds.
before=()
[ -n "${IPC_RUN_BEFORE:-}" ] && before=("ipc-run before=$IPC_RUN_BEFORE -q $file")
python3 bench/run/rounds.py "$rounds" --bytes "$bytes" -- \
    "ipc-run=$IPC_RUN -q $file" \
    "${before[@]}" \
    "cat=$gen | cat"
echo
echo "== the same, the relay writing into a pipe (| cat > /dev/null)"
before=()
[ -n "${IPC_RUN_BEFORE:-}" ] && before=("ipc-run before, piped=$IPC_RUN_BEFORE -q $file | cat")
python3 bench/run/rounds.py "$rounds" --bytes "$bytes" -- \
    "ipc-run, piped=$IPC_RUN -q $file | cat" \
    "${before[@]}" \
    "cat, piped=$gen | cat | cat"

# CPU_RUNS=N (needs perf): the relay process alone, without the generator
# (`perf stat --no-inherit`): task-clock, context switches (how often the
# relay and its process wake each other) and page faults, median of N runs,
# interleaved; `cat` (in `linegen | cat`) for the same bytes.
if [ -n "${CPU_RUNS:-}" ] && command -v perf >/dev/null; then
    echo
    echo "== the relay process alone, into /dev/null: median of $CPU_RUNS interleaved runs"
    stat_of() { # stat_of LABEL CMD...: one run; appends "LABEL ms switches faults" to $dir/cpu.txt
        local label=$1; shift
        perf stat -x, -e task-clock,context-switches,page-faults --no-inherit -o "$dir/one.stat" "$@" >/dev/null
        awk -F, -v l="$label" '/task-clock/ {t=$1} /context-switches/ {c=$1} /page-faults/ {f=$1}
            END {print l, t, c, f}' "$dir/one.stat" >>"$dir/cpu.txt"
    }
    : >"$dir/cpu.txt"
    for i in $(seq "$CPU_RUNS"); do
        stat_of ipc-run "$IPC_RUN" -q "$file"
        [ -z "${IPC_RUN_BEFORE:-}" ] || stat_of "ipc-run-before" "$IPC_RUN_BEFORE" -q "$file"
        $gen | stat_of cat cat
    done
    python3 - "$dir/cpu.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, *figures = line.split()
    rows.setdefault(label, []).append([float(x) for x in figures])
print("| process | CPU (task-clock) | context switches | page faults |")
print("|---|---:|---:|---:|")
for label, runs in rows.items():
    ms, sw, pf = (statistics.median(r[k] for r in runs) for k in range(3))
    print(f"| {label} | {ms:.1f} ms | {sw:.0f} | {pf:.0f} |")
PY
fi
