#!/bin/sh
# Spawn cost per process (spawn + wait of /bin/true), medians:
# std Command (posix_spawn), std Command with a pre_exec hook (fork), and
# ipc-run's clone(CLONE_VM|CLONE_VFORK) child path; from a small parent and
# from a parent with 1 GiB resident.
# Usage: bench/spawn.sh [N]
set -eu
cd "$(dirname "$0")/.."
n=${1:-300}
cargo build --release --quiet --example spawn_bench
for bloat in 0 1024; do
    target/release/examples/spawn_bench "$n" "$bloat"
    echo
done
