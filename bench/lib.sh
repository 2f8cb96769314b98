# Sourced by the bench scripts for the opening they share: the repository
# root as the working directory, the release build, a scratch directory
# removed on exit, and the machine the figures come from.
#   IPC_RUN=/path/to/ipc-run   use this binary instead of building one (the
#                              scripts that call bench_ipc_run)
#   CARGO_TARGET_DIR           honoured by the build, as by cargo
#   BENCH_DIR=/some/dir        keep the generated files there
# After it: $root (the repository, also the working directory), $target
# (the cargo target directory, absolute) and $bin (its release directory).
set -euo pipefail
# A binary given relative to where the script was started from.
[ -z "${IPC_RUN:-}" ] || IPC_RUN=$(realpath "$IPC_RUN")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/release"

# bench_build [CARGO ARGS...]: the release build of ipc-run, and of what the
# arguments add (`--example NAME`); IPC_RUN is then the binary built.
bench_build() {
    echo "== build (release)" >&2
    cargo build --release --locked --quiet --bin ipc-run "$@"
    IPC_RUN="$bin/ipc-run"
}

# bench_ipc_run: IPC_RUN as given, else built by bench_build.
bench_ipc_run() {
    [ -n "${IPC_RUN:-}" ] || bench_build
}

# bench_scratch [TEMPLATE]: $dir is BENCH_DIR (kept), or else a new directory
# (`mktemp -d TEMPLATE`, by default in $TMPDIR) removed when the script exits.
bench_scratch() {
    dir="${BENCH_DIR:-$(mktemp -d ${1:+"$1"})}"
    mkdir -p "$dir"
    [ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
}

# bench_machine: the machine and the binary, for the figures' header.
bench_machine() {
    echo "== machine" >&2
    echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel: $(uname -sr)"
    echo "ipc-run: $("$IPC_RUN" --version); rustc: $(rustc --version)"
    echo
}

# bench_rusage_exec: $rusage_exec, bench/plan/rusage_exec.c built, which runs
# a command from a small process of its own and prints its wall time, peak
# RSS (KiB) and status: the RSS is the command's alone.
bench_rusage_exec() {
    rusage_exec="$target/rusage_exec"
    cc -O2 -o "$rusage_exec" bench/plan/rusage_exec.c
}

# linegen_topology FILE LINES: a topology whose one process `gen` writes
# LINES lines of 100 bytes with $dir/linegen (built by linegen_build): the
# child of the log relay benchmarks.
linegen_build() { cc -O2 -o "$dir/linegen" bench/run/linegen.c; }
linegen_topology() {
    printf 'name = "relay"\n\n[process.gen]\ncmd = ["%s/linegen", "%s", "100"]\n' "$dir" "$2" >"$1"
}
