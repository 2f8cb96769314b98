#!/usr/bin/env bash
# Whether two ipc-run binaries print the same bytes for `check`, `plan` and
# `plan --format json` of a generated topology of N processes (default
# 10 000): a memory change to the planner must not change its output.
#
# usage: bench/plan/same_output.sh BEFORE_BINARY [N]
#   the other binary is this tree's release build (CARGO_TARGET_DIR honoured)
set -euo pipefail

cd "$(dirname "$0")/../.."
before="${1:?usage: bench/plan/same_output.sh BEFORE_BINARY [N]}"
n="${2:-10000}"
cargo build --release --locked --quiet --bin ipc-run --example gen_topology
bin="${CARGO_TARGET_DIR:-target}/release"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$bin/examples/gen_topology" "$n" >"$dir/t.toml"
status=0
for args in "check" "plan" "plan --format json"; do
    # shellcheck disable=SC2086 # the modes are words on purpose
    old="$("$before" $args --limits default --max-file-size 4GiB --max-processes "$n" "$dir/t.toml" 2>&1 | md5sum)"
    # shellcheck disable=SC2086
    new="$("$bin/ipc-run" $args --limits default --max-file-size 4GiB --max-processes "$n" "$dir/t.toml" 2>&1 | md5sum)"
    if [ "$old" = "$new" ]; then
        echo "same: $args (${new%% *})"
    else
        echo "DIFFERENT: $args" >&2
        status=1
    fi
done
exit "$status"
