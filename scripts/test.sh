#!/usr/bin/env bash
# The test command: installs the system packages the integration tests run
# (when missing), then runs the whole test suite. Idempotent; needs root or
# sudo only when a package is missing.
#
#   socat, python3  helper processes of the example topologies and tests
#   strace          which pids ipc-run signals, close_range (reliability tests)
#   util-linux      prlimit and unshare (reliability tests)
#   gcc, libc6-dev  build the C ring examples (run::ring_languages tests)
#
# usage: scripts/test.sh [cargo test arguments...]
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(socat python3 strace util-linux gcc libc6-dev)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --locked "$@"
