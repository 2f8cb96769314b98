# Sourced by the bench/run scripts: builds the release binary, makes a scratch
# directory, prints the machine.
#   IPC_RUN=/path/to/ipc-run   use this binary instead of building one
#   CARGO_TARGET_DIR           honoured by the build, as by cargo
#   BENCH_DIR=/some/dir        keep the generated files there
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
if [ -z "${IPC_RUN:-}" ]; then
    echo "== build (release)" >&2
    cargo build --release --locked --quiet --bin ipc-run
    IPC_RUN="${CARGO_TARGET_DIR:-$root/target}/release/ipc-run"
fi
IPC_RUN=$(realpath "$IPC_RUN")
dir="${BENCH_DIR:-$(mktemp -d /tmp/ipc-run-bench.XXXXXX)}"
mkdir -p "$dir"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT

machine() {
    echo "machine: nproc $(nproc); cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ipc-run: $("$IPC_RUN" --version)"
}
