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
#        IPC_RUN_BEFORE=path adds an older binary as a column)
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
