#!/usr/bin/env bash
# An MPI rank's stdout into a pipe: rank 0 of a 4-rank world
# (examples/mpi/lines.c, built with mpicc) writes LINES numbered lines
# (default 2000000, about 40 MB). Three commands, rounds interleaved:
#   pipe    ipc-run relays rank 0's lines from mpirun's tagged output into a
#           pipe to `cat > /dev/null` (topology: solver -> count)
#   log     the same world, rank 0's lines relayed to ipc-run's log (-q,
#           stdout /dev/null): the relay's cost without the pipe
#   mpirun  mpirun --tag-output alone, into `cat > /dev/null`: the floor
# Throughput is rank 0's bytes over the wall time of the whole command (MPI
# start-up included, the same in all three).
#
# usage: bench/run/mpi-pipe.sh [ROUNDS]      (default 5; LINES=... to change the size;
#        IPC_RUN_BEFORE=path adds an older binary's `pipe` and `log` columns)
# Needs: apt install openmpi-bin libopenmpi-dev
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-5}"
lines="${LINES:-2000000}"

echo "== MPI rank 0's stdout into a pipe: $lines lines, $rounds rounds"
machine
mpicc -O2 -o "$dir/lines" examples/mpi/lines.c
# Rank 0's bytes: every line as lines.c writes it.
bytes=$("$dir/lines" "$lines" 2>/dev/null | wc -c)

world() { # world FILE WITH_PIPE
    {
        printf 'name = "mpi-bench"\n'
        [ "$2" = 1 ] && printf 'exit_code_from = "count"\n[process.count]\ncmd = ["cat"]\n'
        printf '[process.solver]\ncmd = ["%s/lines", "%s"]\n' "$dir" "$lines"
        printf '[process.worker]\ncmd = ["%s/lines", "%s"]\nreplicas = 3\n' "$dir" "$lines"
        printf '[[edge]]\nname = "world"\nmechanism = "mpi"\ntraffic = "messages"\nfrom = "solver"\nto = "worker"\n'
        [ "$2" = 1 ] && printf '[[edge]]\nfrom = "solver"\nto = "count"\n'
        true
    } >"$1"
}
world "$dir/pipe.toml" 1
world "$dir/log.toml" 0

# Completeness first: every line through the pipe, in order.
cat >"$dir/check.sh" <<'CHECK'
awk -v n="$1" '/^line /{i++; if ($2 != i) bad++} END {exit !(i == n && !bad)}'
CHECK
printf 'name = "mpi-check"\nexit_code_from = "count"\n[process.count]\ncmd = ["sh", "%s/check.sh", "%s"]\n' \
    "$dir" "$lines" >"$dir/check.toml"
sed -n '/^\[process.solver\]/,$p' "$dir/pipe.toml" >>"$dir/check.toml"
"$IPC_RUN" -q "$dir/check.toml" >/dev/null 2>"$dir/check.err" ||
    { cat "$dir/check.err" >&2; echo "the pipe did not get $lines lines in order" >&2; exit 1; }

np="--tag-output --oversubscribe --allow-run-as-root -np 1 $dir/lines $lines : -np 3 $dir/lines $lines"
before=()
[ -n "${IPC_RUN_BEFORE:-}" ] && before=("pipe before=$IPC_RUN_BEFORE -q $dir/pipe.toml"
                                        "log before=$IPC_RUN_BEFORE -q $dir/log.toml")
python3 bench/run/rounds.py "$rounds" --bytes "$bytes" -- \
    "pipe=$IPC_RUN -q $dir/pipe.toml" \
    "log=$IPC_RUN -q $dir/log.toml" \
    "${before[@]}" \
    "mpirun=mpirun $np | cat > /dev/null"
