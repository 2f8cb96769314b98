#!/usr/bin/env bash
# Several writers, one reader: the shared-memory ring against one shared
# pipe, 1 GiB in 64 KiB records, with 1 and 2 writer processes, rounds
# interleaved (examples/ring_producers.rs). With more than one producer the
# ring's writers take the POSIX record lock for every record, as the layout
# requires. Goal (docs/performance.md): 2 writers at least 1x the pipe.
#
# usage: bench/ring/producers.sh [ROUNDS]     (default 7; SIZE=65536 TOTAL=1073741824)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-7}"
size="${SIZE:-65536}"
total="${TOTAL:-1073741824}"
cargo build --release --locked --quiet --example ring_producers
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/examples/ring_producers"
echo "== ring vs pipe, several writers: $total bytes in $size-byte records; $rounds rounds"
echo "machine: nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
commands=()
for w in 1 2; do
    commands+=("pipe, $w writer(s)=$bin pipe $w $size $total" "ring, $w writer(s)=$bin ring $w $size $total")
done
python3 bench/run/rounds.py "$rounds" --bytes "$total" --base "pipe, 2 writer(s)" -- "${commands[@]}"
