#!/usr/bin/env bash
# Launch: a chain of N processes joined by pipes (p0 | p1 | ... | pN-1), the
# first writing a little data (`seq 1 1000`), the others `cat`, the last one's
# stdout the runner's stdout (/dev/null); timed from start until every
# process has exited. ipc-run (`ipc-run -q FILE`, the topology a `pipeline`)
# against the same chain as a bash `|` pipeline and under pipexec.
# Goal: ipc-run at most 1.0x bash's wall time.
#
# usage: bench/run/launch.sh [ROUNDS]          (default 10; N=100 processes)
#        PIN_CPUS=0 bench/run/launch.sh       every command under taskset -c 0 (one core:
#                                             CPU cost without cross-core overlap)
set -euo pipefail
source "$(dirname "$0")/common.sh"
rounds="${1:-10}"
n="${N:-100}"
seq_bin=$(command -v seq); cat_bin=$(command -v cat)

echo "== launch: chain of $n processes, $rounds rounds"
machine

file="$dir/chain-$n.toml"
{
    echo 'name = "chain"'
    printf 'pipeline = ['
    for i in $(seq 0 $((n - 1))); do printf '"p%d", ' "$i"; done
    echo '"@stdout"]'
    printf '\n[process.p0]\ncmd = ["%s", "1", "1000"]\n' "$seq_bin"
    for i in $(seq 1 $((n - 1))); do printf '\n[process.p%d]\ncmd = ["%s"]\n' "$i" "$cat_bin"; done
} >"$file"

bash_chain="$seq_bin 1 1000"
pipexec_args="[ p0 $seq_bin 1 1000 ]"
for i in $(seq 1 $((n - 1))); do
    bash_chain+=" | $cat_bin"
    pipexec_args+=" [ p$i $cat_bin ] {p$((i - 1)):1>p$i:0}"
done

# The three must produce the same output before they are timed.
want=$(seq 1 1000 | md5sum)
[ "$("$IPC_RUN" -q "$file" | md5sum)" = "$want" ] || { echo "ipc-run: wrong output" >&2; exit 1; }
[ "$(bash -c "$bash_chain" | md5sum)" = "$want" ] || { echo "bash: wrong output" >&2; exit 1; }
commands=("ipc-run=$IPC_RUN -q $file" "bash=$bash_chain")
if command -v pipexec >/dev/null; then
    # quoted so that bash -c passes the brackets and braces through untouched
    pq=""; for a in $pipexec_args; do pq+=" '$a'"; done
    [ "$(bash -c "pipexec --$pq" | md5sum)" = "$want" ] || { echo "pipexec: wrong output" >&2; exit 1; }
    commands+=("pipexec=pipexec --$pq")
else
    echo "pipexec: not installed (Debian: apt-get install pipexec); its column is left out"
fi
if [ -n "${PIN_CPUS:-}" ]; then
    echo "pinned: every command runs under taskset -c $PIN_CPUS"
    for i in "${!commands[@]}"; do
        commands[i]="${commands[i]%%=*}=taskset -c $PIN_CPUS ${commands[i]#*=}"
    done
fi
echo
python3 bench/run/rounds.py "$rounds" -- "${commands[@]}"
