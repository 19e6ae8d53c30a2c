#!/usr/bin/env bash
# Installs redis-server (the service's Redis store and its tests) and redis-sentinel (the
# Sentinel failover test) when either is missing.
# A no-op when both are on PATH; otherwise apt-get on a Debian/Ubuntu host, as root or through
# sudo. Debian ships both from the same Redis build; installing them starts nothing here (the
# tests start their own servers on loopback ports).
set -euo pipefail

missing=()
for binary in redis-server redis-sentinel; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "redis-server and redis-sentinel present: $(redis-server --version)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "${missing[*]} missing and apt-get is not available; install Redis >= 6 (server and" \
        "sentinel) by hand." >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "${missing[*]} missing; run this script as root (or install sudo)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# The package names are the binaries' names.
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
echo "installed: $(redis-server --version); $(redis-sentinel --version)"
