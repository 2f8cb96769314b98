#!/usr/bin/env bash
# What `status`'s traffic counters cost the relays that keep them: the log
# relay (bench/run/relay.sh: one child's 100-byte lines to ipc-run's log,
# into /dev/null, then into a pipe) and the rank-pipe relay
# (bench/run/mpi-pipe.sh: rank 0's lines into a pipe), each with a binary
# built without the counters as a column in the same interleaved rounds.
#
# usage: bench/control/counters.sh [ROUNDS]   (default 7)
#   BEFORE=path   an ipc-run without the counters; by default the commit
#                 before them (BASE, default `git merge-base HEAD main`) is
#                 built into target/counters-before/ipc-run
#   LINES=N       lines of the log relay run (default 3000000, 300 MB)
#   MPI_LINES=N   lines of the rank-pipe run (default 1000000); MPI_LINES=0
#                 skips it (it needs openmpi-bin and libopenmpi-dev)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
rounds="${1:-7}"
target="${CARGO_TARGET_DIR:-$root/target}"

echo "== build (release)" >&2
cargo build --release --locked --quiet --bin ipc-run
after="$target/counters-after/ipc-run"
mkdir -p "$(dirname "$after")"
cp "$target/release/ipc-run" "$after"

before="${BEFORE:-}"
if [ -z "$before" ]; then
    base="${BASE:-$(git merge-base HEAD main)}"
    src="$target/counters-before/src"
    rm -rf "$src" && mkdir -p "$src"
    git archive "$base" | tar -x -C "$src"
    echo "== build $base (release, without the counters)" >&2
    # The same target dir: only the two crates of this repository rebuild.
    CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet --bin ipc-run \
        --manifest-path "$src/Cargo.toml"
    before="$target/counters-before/ipc-run"
    cp "$target/release/ipc-run" "$before"
    rm -rf "$src"
    # Put this branch's binary back where the other scripts look.
    cp "$after" "$target/release/ipc-run"
fi

IPC_RUN="$after" IPC_RUN_BEFORE="$before" LINES="${LINES:-3000000}" \
    bench/run/relay.sh "$rounds"
if [ "${MPI_LINES:-1000000}" != 0 ]; then
    echo
    IPC_RUN="$after" IPC_RUN_BEFORE="$before" LINES="${MPI_LINES:-1000000}" \
        bench/run/mpi-pipe.sh "$rounds"
fi
