#!/usr/bin/env bash
# What health checks cost the supervisor: N processes (`sleep`) each with a
# `tcp` health check every INTERVAL against a closed loopback port (one
# non-blocking connect, refused, per check), against the same N processes
# without checks. Each round runs ipc-run for SECONDS and reads its
# utime+stime (clock ticks, /proc/PID/stat) over the last SECONDS-1 s;
# rounds alternate between the two topologies, and the medians are printed
# with the cost per check.
#
# usage: scripts/bench-health.sh [N=200] [INTERVAL=1s] [SECONDS=6] [ROUNDS=5]
# Needs a release build: cargo build --release --locked --bin ipc-run
set -euo pipefail

cd "$(dirname "$0")/.."
n=${1:-200}
interval=${2:-1s}
seconds=${3:-6}
rounds=${4:-5}
bin=target/release/ipc-run
[ -x "$bin" ] || { echo "bench-health.sh: build $bin first (see --help)" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

for kind in plain health; do
    file="$dir/$kind.toml"
    : > "$file"
    for i in $(seq 1 "$n"); do
        echo "[process.p$i]" >> "$file"
        echo "cmd = [\"sleep\", \"3600\"]" >> "$file"
        if [ "$kind" = health ]; then
            echo "health = { tcp = \"127.0.0.1:9\", interval = \"$interval\", timeout = \"500ms\", retries = 1000000 }" >> "$file"
        fi
    done
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() {
    "$bin" run "$1" --runtime-dir "$dir/rt" > /dev/null 2>&1 &
    local pid=$!
    sleep 1
    local before
    before=$(ticks "$pid")
    sleep $((seconds - 1))
    local after
    after=$(ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    echo $((after - before))
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

plain=()
health=()
for r in $(seq 1 "$rounds"); do
    plain+=("$(measure "$dir/plain.toml")")
    health+=("$(measure "$dir/health.toml")")
done
p=$(printf '%s\n' "${plain[@]}" | median)
h=$(printf '%s\n' "${health[@]}" | median)
hz=$(getconf CLK_TCK)
ms=$(echo "$interval" | awk '/ms$/ { print $1 + 0; next } /s$/ { print ($1 + 0) * 1000 }')
checks=$(awk -v n="$n" -v s="$seconds" -v ms="$ms" 'BEGIN { print n * (s - 1) * 1000 / ms }')
echo "processes $n, interval $interval, window $((seconds - 1))s, rounds $rounds (ticks: 1/$hz s)"
echo "plain:  ticks per round ${plain[*]} (median $p)"
echo "health: ticks per round ${health[*]} (median $h)"
awk -v p="$p" -v h="$h" -v c="$checks" -v hz="$hz" 'BEGIN {
    printf "extra CPU %.2f s over %d checks: %.1f us per check\n", (h - p) / hz, c, (h - p) / hz / c * 1e6 }'
