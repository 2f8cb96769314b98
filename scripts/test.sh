#!/usr/bin/env bash
# The test command: installs the system packages the integration tests run
# (when missing), then runs the whole test suite. Idempotent; needs root or
# sudo only when a package is missing.
#
#   socat, python3  helper processes of the example topologies and tests
#   strace          which pids ipc-run signals, close_range (reliability tests)
#   util-linux      prlimit and unshare (reliability tests)
#   gcc, libc6-dev  build the C ring examples (run::ring_languages tests)
#   python3-venv    the venv for the PyPI stacks below
#   curl            HTTP client of the rpc tests
#   dbus-daemon, dbus-bin          a private D-Bus broker, dbus-send
#   rpcsvc-proto, libtirpc-dev     rpcgen and libtirpc (ONC RPC example)
#   make            builds examples/onc (run::onc tests, topologies/onc-rpc.toml)
#   iproute2        ip netns and veth pairs (run::distributed, as root)
#   openmpi-bin, libopenmpi-dev    mpirun and mpicc (MPI worlds)
#   slurm-wlm, munge               a single-node Slurm of the test's own
#                                  (scripts/slurm-cluster.sh, run::slurm tests)
#
# Then a venv at target/test-venv with tests/requirements.txt (grpcio,
# grpcio-health-checking, gunicorn, jeepney, kubernetes-validate) from PyPI; the tests find it
# through IPC_RUN_TEST_VENV. A test whose stack is missing fails; none skips.
#
# usage: scripts/test.sh [cargo test arguments...]
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(socat python3 strace util-linux gcc libc6-dev python3-venv curl
    dbus-daemon dbus-bin rpcsvc-proto libtirpc-dev openmpi-bin libopenmpi-dev make
    iproute2 slurm-wlm munge)
missing=()
# systemd-analyze checks the units `ipc-run export systemd` writes (cli::export).
packages+=(systemd)
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

venv="$PWD/target/test-venv"
if ! cmp -s tests/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
    echo "installing the PyPI test stacks into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/requirements.txt"
fi
export IPC_RUN_TEST_VENV="$venv"

# The tonic server the gRPC handover test runs: a separate cargo project
# (tonic and tokio are not ipc-run's dependencies), built once here.
echo "building examples/tonic-handover"
CARGO_TARGET_DIR="$PWD/target/tonic-handover" \
    cargo build --quiet --locked --manifest-path examples/tonic-handover/Cargo.toml

exec cargo test --locked "$@"
