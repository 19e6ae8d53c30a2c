#!/usr/bin/env bash
# Installs redis-server (used by the service's Redis store and its tests) when it is missing.
# A no-op when `redis-server` is already on PATH; otherwise apt-get on a Debian/Ubuntu host,
# as root or through sudo.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server present: $(redis-server --version)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing and apt-get is not available; install Redis >= 6 by hand." >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "redis-server is missing; run this script as root (or install sudo)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends redis-server
echo "installed: $(redis-server --version)"
