#!/usr/bin/env bash
# Port adapters: throughput of `ipc-run port write`/`port read` against the
# raw mechanism, in real topologies run by ipc-run. Results and their reading
# are in docs/performance.md ("Port adapters").
#
#   pipe: SIZE_MB MiB of zeros through a pipe edge
#     direct   producer and consumer on the edge itself:
#              `head -c N /dev/zero` -> edge -> `wc -c`
#     cat      the same with `cat` as the ends:
#              head | cat >/dev/fd/$OUT -> edge -> cat </dev/fd/$IN | wc -c
#     adapter  the same with the adapters as the ends:
#              head | ipc-run port write out -> edge -> ipc-run port read in | wc -c
#     tapped   direct, run with `--tap e0=FILE`: the edge passes through the
#              inserted tap process, which also writes every byte to FILE
#              (in TAP_DIR, default /dev/shm, so the disk is not what is timed)
#   mq: MESSAGES messages of 100 bytes (99 + newline) through a POSIX queue
#     raw      a C loop of mq_send -> queue -> a C loop of mq_receive
#     adapter  a C loop printing lines | ipc-run port write out -> queue ->
#              ipc-run port read --count N in | a C loop reading lines
#   ring: RING_MESSAGES records of 100 bytes through a 1 MiB shared-memory ring
#     raw      ipc-run-probe ring-send (child::ring::Producer) -> ring ->
#              ipc-run-probe ring-recv (child::ring::Consumer, checks each)
#     adapter  lines | ipc-run port write out -> ring -> ipc-run port read in | lines
#
# Rounds interleave the variants; each time is the wall clock of a whole
# `ipc-run run` (launch included, a few ms). Prints medians, MB/s or
# messages/s, and each variant's ratio to the raw one.
#
# usage: bench/port/run.sh [ROUNDS]         (default 5)
#   SIZE_MB=1024 MESSAGES=200000 RING_MESSAGES=2000000   the amounts
#   IPC_RUN=/path/to/ipc-run                use this binary instead of building
#   PROBE=/path/to/ipc-run-probe            likewise for the ring's raw ends
#   CARGO_TARGET_DIR is honoured by the build; BENCH_DIR=dir keeps the files
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"
size_mb="${SIZE_MB:-1024}"
messages="${MESSAGES:-200000}"
ring_messages="${RING_MESSAGES:-2000000}"
if [ -z "${IPC_RUN:-}" ]; then
    echo "== build (release)" >&2
    cargo build --release --locked --quiet --bin ipc-run
    IPC_RUN="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-run"
fi
IPC_RUN=$(realpath "$IPC_RUN")
if [ -z "${PROBE:-}" ]; then
    cargo build --release --locked --quiet --features test-probe --bin ipc-run-probe
    PROBE="${CARGO_TARGET_DIR:-$PWD/target}/release/ipc-run-probe"
fi
PROBE=$(realpath "$PROBE")
dir="${BENCH_DIR:-$(mktemp -d /tmp/ipc-run-port-bench.XXXXXX)}"
mkdir -p "$dir"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
bytes=$((size_mb * 1024 * 1024))
tap_file="${TAP_DIR:-/dev/shm}/ipc-run-port-bench.$$.tap"

# C helpers: the raw queue ends, and a line producer/consumer for the
# adapter variant (so the shell tools' own speed is not what is measured).
cat >"$dir/mqraw.c" <<'C'
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* mqraw send|recv NAME COUNT: 99-byte messages */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    long n = atol(argv[3]);
    int send = strcmp(argv[1], "send") == 0;
    mqd_t q = mq_open(argv[2], send ? O_WRONLY : O_RDONLY);
    if (q < 0) { perror("mq_open"); return 1; }
    struct mq_attr a; mq_getattr(q, &a);
    char *buf = malloc(a.mq_msgsize);
    memset(buf, 'x', a.mq_msgsize);
    for (long i = 0; i < n; i++) {
        if (send ? mq_send(q, buf, 99, 0) : (mq_receive(q, buf, a.mq_msgsize, NULL) < 0 ? -1 : 0)) {
            perror("mq"); return 1;
        }
    }
    return 0;
}
C
cat >"$dir/lines.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* lines out COUNT: COUNT lines of 99 x's; lines in: count lines of stdin */
int main(int argc, char **argv) {
    static char buf[1 << 16];
    if (argc == 3) {
        long n = atol(argv[2]);
        char line[100]; memset(line, 'x', 99); line[99] = '\n';
        for (long i = 0; i < n; i++) fwrite(line, 1, 100, stdout);
        return 0;
    }
    long count = 0; size_t got;
    while ((got = fread(buf, 1, sizeof buf, stdin)) > 0)
        for (size_t i = 0; i < got; i++) count += buf[i] == '\n';
    printf("%ld\n", count);
    return 0;
}
C
cc -O2 -o "$dir/mqraw" "$dir/mqraw.c" -lrt
cc -O2 -o "$dir/lines" "$dir/lines.c"

# Every variant is `producer` -> `consumer`, the run's exit code the
# consumer's. Writes $dir/VARIANT.toml.
topology() { # VARIANT PRODUCE CONSUME FROM TO EDGE_OPTIONS (one per line)
    cat >"$dir/$1.toml" <<T
name = "port-bench-$1"
exit_code_from = "consumer"
[process.producer]
shell = '''$2'''
[process.consumer]
shell = '''$3'''
[[edge]]
from = "$4"
to = "$5"
$6
T
}

# Shell text that, run by the process, prints KEY's value from its port
# variable (`IPC_PORT_OUT=fd=3 ...` -> 3).
port_value() { # VARIABLE KEY
    echo "\$(printf '%s\\n' \$$1 | sed -n 's/^$2=//p')"
}

zeros="head -c $bytes /dev/zero"
pipe='mechanism = "pipe"'
topology pipe-direct "$zeros" "wc -c" producer consumer "$pipe"
topology pipe-cat "$zeros | cat >/dev/fd/$(port_value IPC_PORT_OUT fd)" \
    "cat </dev/fd/$(port_value IPC_PORT_IN fd) | wc -c" producer.out consumer.in "$pipe"
topology pipe-adapter "$zeros | {ipc_run} port write out" \
    "{ipc_run} port read in | wc -c" producer.out consumer.in "$pipe"

mq='traffic = "messages"
mechanism = "posix-mq"
message_size = 128
depth = 10'
topology mq-raw "$dir/mqraw send $(port_value IPC_PORT_OUT name) $messages" \
    "$dir/mqraw recv $(port_value IPC_PORT_IN name) $messages" producer.out consumer.in "$mq"
topology mq-adapter "$dir/lines out $messages | {ipc_run} port write out" \
    "{ipc_run} port read --count $messages in | $dir/lines" producer.out consumer.in "$mq"

ring='traffic = "messages"
sync = "ring"
size = "1MiB"'
topology ring-raw "$PROBE ring-send out x $ring_messages 100 close" \
    "$PROBE ring-recv in" producer.out consumer.in "$ring"
topology ring-adapter "$dir/lines out $ring_messages | {ipc_run} port write out" \
    "{ipc_run} port read in | $dir/lines" producer.out consumer.in "$ring"

now() { date +%s%N; }
run_once() { # FILE [RUN OPTIONS] -> elapsed ns on stdout
    local start end file=$1
    shift
    start=$(now)
    "$IPC_RUN" run --quiet --runtime-dir "$dir/rt" "$file" "$@" >"$dir/out.txt" 2>"$dir/err.txt" || {
        echo "run of $file failed:" >&2; cat "$dir/err.txt" >&2; exit 1; }
    end=$(now)
    echo $((end - start))
}

echo "machine: nproc $(nproc); cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ipc-run: $("$IPC_RUN" --version); pipe: $size_mb MiB; mq: $messages, ring: $ring_messages x 100 bytes; $rounds rounds"
: >"$dir/times.txt"
for r in $(seq 1 "$rounds"); do
    for v in direct cat adapter tapped; do
        if [ $v = tapped ]; then
            t=$(run_once "$dir/pipe-direct.toml" --tap "e0=$tap_file")
            [ "$(stat -c %s "$tap_file")" = "$bytes" ] || { echo "tap: wrong size" >&2; exit 1; }
            rm -f "$tap_file"
        else
            t=$(run_once "$dir/pipe-$v.toml")
        fi
        # The consumer's count proves everything arrived.
        grep -q " $bytes\$" "$dir/out.txt" || { echo "pipe-$v: wrong count: $(cat "$dir/out.txt")" >&2; exit 1; }
        echo "pipe-$v $t" >>"$dir/times.txt"
    done
    for v in raw adapter; do
        t=$(run_once "$dir/mq-$v.toml")
        [ "$v" = raw ] || grep -q " $messages\$" "$dir/out.txt" || { echo "mq-$v: wrong count: $(cat "$dir/out.txt")" >&2; exit 1; }
        echo "mq-$v $t" >>"$dir/times.txt"
    done
    for v in raw adapter; do
        t=$(run_once "$dir/ring-$v.toml")
        grep -qE " ($ring_messages|ring: x=$ring_messages)\$" "$dir/out.txt" || { echo "ring-$v: wrong count: $(cat "$dir/out.txt")" >&2; exit 1; }
        echo "ring-$v $t" >>"$dir/times.txt"
    done
    echo "round $r done" >&2
done

python3 - "$dir/times.txt" "$bytes" "$messages" "$ring_messages" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, ns = line.split()
    times.setdefault(name, []).append(int(ns) / 1e9)
nbytes, msgs, ring_msgs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
med = {k: statistics.median(v) for k, v in times.items()}
print()
print("| workload | variant | median s | min s | max s | throughput | vs raw |")
print("|---|---|---:|---:|---:|---:|---:|")
for workload, raw, variants in (("pipe", "pipe-direct", ("direct", "cat", "adapter", "tapped")),
                                ("mq", "mq-raw", ("raw", "adapter")),
                                ("ring", "ring-raw", ("raw", "adapter"))):
    for v in variants:
        k = f"{workload}-{v}"
        m = med[k]
        rate = (f"{nbytes / m / 1e6:.0f} MB/s" if workload == "pipe"
                else f"{(ring_msgs if workload == 'ring' else msgs) / m / 1e3:.0f} k msg/s")
        print(f"| {workload} | {v} | {m:.3f} | {min(times[k]):.3f} | {max(times[k]):.3f} "
              f"| {rate} | {med[raw] / m:.2f} |")
PY
