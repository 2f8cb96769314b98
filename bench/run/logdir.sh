#!/usr/bin/env bash
# The relay with log files: one child writes LINES lines of 100 bytes
# (default 2,000,000: 200 MB) to its stdout; ipc-run relays them to its own
# stdout, /dev/null, and with --log-dir also into a file (rotated at 64 MiB,
# one old file kept, so the disk use stays bounded). Columns, in the same
# interleaved rounds:
#   ipc-run                     no log directory, nothing kept in memory (the
#                               foreground default): the plain relay path
#   --log-memory 64KiB          the last 64 KiB of each process kept in memory
#                               for `ipc-run logs` (the --detach default)
#   ipc-run before              an older binary, no log directory
#                               (IPC_RUN_BEFORE=path; shows the path is unchanged)
#   --log-dir                   plus the log file
#   --log-dir --timestamps      plus a timestamp per line, relayed and in the file
#   --log-format json           JSON records instead of prefixed lines
#   cat                         the generator piped through cat
#   tee to a file               the generator through tee into a file in the
#                               same directory: what the page cache costs alone
# Ratios are to the first column. The log directory is on the disk of
# BENCH_DIR (default /tmp).
#
# usage: bench/run/logdir.sh [ROUNDS]   (default 10; LINES=... to change the size)
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-10}"
lines="${LINES:-2000000}"
bytes=$((lines * 100))

echo "== log relay with --log-dir: $bytes bytes of 100-byte lines, $rounds rounds"
machine

linegen_build
file="$dir/relay.toml"
linegen_topology "$file" "$lines"
logs="$dir/logs"
mkdir -p "$logs"
chmod 0700 "$logs"
rotate="--log-max-size 64MiB --log-keep 1"

# Completeness first: every line in the file, once, unprefixed.
check_lines=100000
linegen_topology "$dir/check.toml" "$check_lines"
mkdir -p "$dir/check-logs"
chmod 0700 "$dir/check-logs"
"$IPC_RUN" -q "$dir/check.toml" --log-dir "$dir/check-logs" >/dev/null
got=$(grep -c '^x\{99\}$' "$dir/check-logs/gen.stdout.log" || true)
[ "$got" = "$check_lines" ] || { echo "the log file holds $got of $check_lines lines" >&2; exit 1; }

before=()
[ -n "${IPC_RUN_BEFORE:-}" ] && before=("ipc-run before=$IPC_RUN_BEFORE -q $file")
python3 bench/run/rounds.py "$rounds" --bytes "$bytes" $(json logdir) -- \
    "ipc-run=$IPC_RUN -q $file" \
    "--log-memory 64KiB=$IPC_RUN -q $file --log-memory 64KiB" \
    "${before[@]}" \
    "--log-dir=$IPC_RUN -q $file --log-dir $logs $rotate" \
    "--log-dir --timestamps=$IPC_RUN -q $file --log-dir $logs $rotate --timestamps" \
    "--log-format json=$IPC_RUN -q $file --log-format json" \
    "cat=$dir/linegen $lines 100 | cat" \
    "tee to a file=$dir/linegen $lines 100 | tee $logs/tee.log >/dev/null"
