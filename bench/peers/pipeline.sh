#!/usr/bin/env bash
# Workload C, pipeline: producer | filter | consumer moving 1 GiB of 100-byte
# lines (linegen | cat | wc -c), wired by bash, by pipexec, and by ipc-run over
# anonymous pipes, FIFOs and socketpairs; bash over two FIFOs for reference.
# Over the shared-memory ring the three programs are unchanged and the port
# adapters (docs/ports.md) stand at each end of each ring: linegen | port
# write, port read | cat | port write, port read | wc -c. That row is the
# price of putting a ring under programs that speak stdin/stdout; the ring's
# own throughput is in `ipc-run bench` (docs/mechanisms.md).
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
ring_topology() { # -> file: both edges rings, adapters at every end
    local file="$dir/pipeline-ring.toml" raw="{ipc_run} port %s --framing raw %s"
    printf 'name = "pipeline"\n\n[process.producer]\nshell = "%s/linegen %s 100 | %s"\n' \
        "$dir" "$lines" "$(printf "$raw" write out)" >"$file"
    printf '\n[process.filter]\nshell = "%s | %s | %s"\n' \
        "$(printf "$raw" read in)" "$cat_bin" "$(printf "$raw" write out)" >>"$file"
    printf '\n[process.consumer]\nshell = "%s | %s -c"\n' "$(printf "$raw" read in)" "$wc_bin" >>"$file"
    for e in "producer.out filter.in" "filter.out consumer.in"; do
        set -- $e
        printf '\n[[edge]]\nfrom = "%s"\nto = "%s"\ntraffic = "messages"\nsync = "ring"\nsize = "4MiB"\nmessage_size = "64KiB"\n' "$1" "$2" >>"$file"
    done
    echo "$file"
}
mkfifo "$dir/f1" "$dir/f2"
commands=("bash=$gen | $cat_bin | $wc_bin -c")
for m in pipe fifo socketpair; do commands+=("ipc-run $m=$IPC_RUN -q $(topology "$m")"); done
commands+=("ipc-run shm ring=$IPC_RUN -q $(ring_topology)")
commands+=("bash fifo=$gen >$dir/f1 & $cat_bin <$dir/f1 >$dir/f2 & $wc_bin -c <$dir/f2; wait")
if have pipexec; then
    commands+=("pipexec=pipexec -- [ P $gen ] [ F $cat_bin ] [ C $wc_bin -c ] '{P:1>F:0}' '{F:1>C:0}'")
else commands+=("pipexec=!not installed"); fi

# every wiring must deliver every byte
want=$((lines * 100))
for label in "ipc-run pipe" "ipc-run fifo" "ipc-run socketpair" "ipc-run shm ring"; do
    m=${label#ipc-run }; [ "$m" = "shm ring" ] && m=ring
    file="$dir/pipeline-$m.toml"
    got=$(sed -e 's/"'"$lines"'"/"1000"/' -e 's/linegen '"$lines"' /linegen 1000 /' "$file" >"$dir/check.toml"; "$IPC_RUN" -q "$dir/check.toml" | grep -o '[0-9]*$')
    [ "$got" = 100000 ] || { echo "$label: consumer counted $got bytes of 100000" >&2; exit 1; }
done
echo "(checked on 1000 lines: every ipc-run wiring delivers every byte; timed runs move $want bytes)"
echo
# shellcheck disable=SC2046
python3 bench/run/rounds.py "$rounds" --keep-going --base bash --bytes "$want" $(json pipeline) -- "${commands[@]}"
