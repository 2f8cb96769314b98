# Sourced by the bench/control scripts, after bench/lib.sh: the binary, a
# scratch directory $work whose runtime directory $rt holds the detached run
# the script starts (asked down, and waited for, on exit, before the
# directory goes), and the timing of whole commands. $rounds is the script's
# first argument (default 20), $n the processes of the run (N, default 1000).
rounds="${1:-20}"
n="${N:-1000}"
bench_ipc_run
work="$(mktemp -d)"
rt="$work/rt"
cleanup() {
    "$IPC_RUN" down --runtime-dir "$rt" >/dev/null 2>&1 || true
    # Wait for the run to remove its directory, then ours.
    for _ in $(seq 1 200); do
        [ -z "$(ls -A "$rt" 2>/dev/null)" ] && break
        sleep 0.05
    done
    rm -rf "$work"
}
trap cleanup EXIT
# A run of a thousand processes holds more descriptors than the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ms COMMAND...: the wall time of the command in microseconds, its output
# discarded.
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}

# summary WIDTH NAME MICROSECONDS...: the median and the slowest, in ms,
# after NAME padded to WIDTH.
summary() {
    local width="$1" name="$2"
    shift 2
    printf '%s\n' "$@" | sort -n | awk -v name="$name" -v width="$width" '
        { v[NR] = $1 }
        END { printf "%-" width "s median %7.1f ms   max %7.1f ms\n", name, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
