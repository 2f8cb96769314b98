#!/usr/bin/env bash
# Workload C, pipeline: producer | filter | consumer moving 1 GiB of 100-byte
# lines (linegen | cat | wc -c), wired by bash, by pipexec, and by ipc-run over
# anonymous pipes, FIFOs and socketpairs; bash over two FIFOs for reference.
# ipc-run has no shared-memory ring yet (a posix-shm edge maps a segment and
# leaves the protocol to the processes), so that row says so.
# Goal: ipc-run over pipes at 1.0x the bash pipeline.
#
# usage: bench/peers/pipeline.sh [ROUNDS]     (default 5; LINES=10737418)
set -euo pipefail
source "$(dirname "$0")/../run/common.sh"
rounds="${1:-5}"
lines="${LINES:-10737418}"
echo "== C pipeline: producer | filter | consumer, $((lines * 100)) bytes; $rounds rounds"
machine
helper bench/run/linegen.c
gen="$dir/linegen $lines 100"
cat_bin=$(command -v cat); wc_bin=$(command -v wc)

topology() { # MECHANISM -> file
    local file="$dir/pipeline-$1.toml"
    printf 'name = "pipeline"\n' >"$file"
    [ "$1" = pipe ] && printf 'pipeline = ["producer", "filter", "consumer"]\n' >>"$file"
    printf '\n[process.producer]\ncmd = ["%s/linegen", "%s", "100"]\n' "$dir" "$lines" >>"$file"
    printf '\n[process.filter]\ncmd = ["%s"]\n\n[process.consumer]\ncmd = ["%s", "-c"]\n' "$cat_bin" "$wc_bin" >>"$file"
    [ "$1" = pipe ] || printf '\n[[edge]]\nfrom = "producer"\nto = "filter"\nmechanism = "%s"\n\n[[edge]]\nfrom = "filter"\nto = "consumer"\nmechanism = "%s"\n' "$1" "$1" >>"$file"
    echo "$file"
}
mkfifo "$dir/f1" "$dir/f2"
commands=("bash=$gen | $cat_bin | $wc_bin -c")
for m in pipe fifo socketpair; do commands+=("ipc-run $m=$IPC_RUN -q $(topology "$m")"); done
commands+=("ipc-run shm ring=!not in ipc-run: a posix-shm edge maps a segment, no ring protocol yet")
commands+=("bash fifo=$gen >$dir/f1 & $cat_bin <$dir/f1 >$dir/f2 & $wc_bin -c <$dir/f2; wait")
if have pipexec; then
    commands+=("pipexec=pipexec -- [ P $gen ] [ F $cat_bin ] [ C $wc_bin -c ] '{P:1>F:0}' '{F:1>C:0}'")
else commands+=("pipexec=!not installed"); fi

# every wiring must deliver every byte
want=$((lines * 100))
for label in "ipc-run pipe" "ipc-run fifo" "ipc-run socketpair"; do
    file="$dir/pipeline-${label#ipc-run }.toml"
    got=$(sed 's/"'"$lines"'"/"1000"/' "$file" >"$dir/check.toml"; "$IPC_RUN" -q "$dir/check.toml" | grep -o '[0-9]*$')
    [ "$got" = 100000 ] || { echo "$label: consumer counted $got bytes of 100000" >&2; exit 1; }
done
echo "(checked on 1000 lines: every ipc-run wiring delivers every byte; timed runs move $want bytes)"
echo
# shellcheck disable=SC2046
python3 bench/run/rounds.py "$rounds" --keep-going --base bash --bytes "$want" $(json pipeline) -- "${commands[@]}"
