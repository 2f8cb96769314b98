#!/usr/bin/env bash
# Installs the peers that bench/compare.sh measures ipc-run against, idempotently:
#   Debian packages (root, apt-get): pipexec supervisor tini s6 gcc
#   a Python venv under $PEERS_DIR/venv: circus, honcho, and matplotlib for the plots
#   an npm prefix under $PEERS_DIR/npm: concurrently
# A peer that cannot be installed is reported and left out; compare.sh then
# prints "not installed" in its column instead of a number.
#
# usage: bench/peers/setup.sh        (PEERS_DIR defaults to ~/.cache/ipc-run-peers)
set -uo pipefail
P="${PEERS_DIR:-$HOME/.cache/ipc-run-peers}"
mkdir -p "$P"
status=0
note() { echo "setup: $*" >&2; }

apt_pkgs=()
for spec in pipexec:pipexec supervisord:supervisor tini:tini s6-svscan:s6 cc:gcc; do
    command -v "${spec%%:*}" >/dev/null || apt_pkgs+=("${spec#*:}")
done
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        note "apt-get install ${apt_pkgs[*]}"
        apt-get update -qq >/dev/null 2>&1
        for pkg in "${apt_pkgs[@]}"; do
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
                || { note "could not install $pkg"; status=1; }
        done
    else
        note "not root or no apt-get: ${apt_pkgs[*]} left out"; status=1
    fi
fi

if [ ! -x "$P/venv/bin/python" ]; then
    python3 -m venv "$P/venv" || { note "python3 -m venv failed"; status=1; }
fi
if [ -x "$P/venv/bin/python" ]; then
    for mod in circus:circus honcho:honcho matplotlib:matplotlib; do
        "$P/venv/bin/python" -c "import ${mod%%:*}" 2>/dev/null && continue
        "$P/venv/bin/pip" install -q "${mod#*:}" >/dev/null 2>&1 || { note "pip install ${mod#*:} failed"; status=1; }
    done
fi

if [ ! -x "$P/npm/node_modules/.bin/concurrently" ]; then
    if command -v npm >/dev/null; then
        mkdir -p "$P/npm"
        (cd "$P/npm" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install -q concurrently >/dev/null 2>&1) \
            || { note "npm install concurrently failed"; status=1; }
    else
        note "no npm: concurrently left out"; status=1
    fi
fi
note "peers under $P"
exit 0
