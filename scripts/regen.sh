#!/usr/bin/env bash
# Regenerates the artefacts the binary produces and the repository commits:
# schemas/topology.schema.json and schemas/plan.schema.json.
#
# It also renders the man page and the shell completions into a temporary
# directory (they are not committed) to check that they still build, and
# prints where they are unless --clean is given.
#
# usage: scripts/regen.sh [--check] [--clean]
#   --check  do not write; exit 1 if a committed schema is out of date
#   --clean  remove the temporary man page/completions directory afterwards
set -euo pipefail

cd "$(dirname "$0")/.."
check=false
clean=false
for arg in "$@"; do
    case "$arg" in
        --check) check=true ;;
        --clean) clean=true ;;
        *) echo "usage: scripts/regen.sh [--check] [--clean]" >&2; exit 2 ;;
    esac
done

cargo build --release --locked --quiet --bin ipc-run
bin="${CARGO_TARGET_DIR:-target}/release/ipc-run"

stale=0
for kind in topology plan; do
    file="schemas/$kind.schema.json"
    fresh="$(mktemp)"
    "$bin" schema "$kind" >"$fresh"
    if cmp -s "$fresh" "$file"; then
        echo "up to date: $file"
        rm -f "$fresh"
    elif $check; then
        echo "out of date: $file (run scripts/regen.sh)" >&2
        diff -u "$file" "$fresh" | head -40 >&2 || true
        rm -f "$fresh"
        stale=1
    else
        mv "$fresh" "$file"
        echo "regenerated: $file"
    fi
done

out="$(mktemp -d)"
"$bin" man >"$out/ipc-run.1"
for shell in bash elvish fish powershell zsh; do
    "$bin" completions "$shell" >"$out/ipc-run.$shell"
done
# The man page must at least be well-formed roff with a NAME section.
grep -q '^\.SH NAME' "$out/ipc-run.1"
if command -v man >/dev/null; then
    MANWIDTH=80 man -l "$out/ipc-run.1" >/dev/null 2>&1
fi
bash -n "$out/ipc-run.bash"
if $clean; then
    rm -rf "$out"
    echo "man page and completions build"
else
    echo "man page and completions built in $out"
fi
exit "$stale"
