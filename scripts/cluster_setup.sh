#!/usr/bin/env bash
# Prepares the container images the live cluster test (tests/cluster/test_cluster_live.py) runs,
# on a Debian host as root with no container registry: podman, a debootstrap base image, local
# stand-ins for the registry images (Redis, nginx, Prometheus and a Python base, all from Debian
# packages) and the project's own images built from docker/service/Dockerfile and
# docker/trainer/Dockerfile with build arguments swapped (base image, torch index and version).
# Idempotent and safe after an interrupted run: every step checks what is already there, podman's
# layer cache keys each image on its Dockerfile and the files it copies (a changed source rebuilds
# from its COPY on), and leftovers of killed builds are removed first.
#   bash scripts/cluster_setup.sh          # install + build (make test runs it)
#   bash scripts/cluster_setup.sh clean    # remove the images, the wheelhouse (make clean)
# See the README, section Cluster, for the same test on a Docker host.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
CACHE=${DISTREWARD_CLUSTER_CACHE:-/var/cache/distreward-cluster}
WHEELS=$CACHE/wheels
BASE_IMAGE=localhost/distreward-test/debian-base:bookworm
PREFIX=localhost/distreward-test
# The CPU-only torch wheel kept on this kind of machine (a few hundred MB instead of the CUDA
# build's several GB) and the torchvision release made for it.
TORCH_VERSION=2.13.0+cpu
TORCHVISION_VERSION=0.28.0
PYTHON_VERSION=3.11.2  # Debian 12's python3, in both project images
# pip evaluates dependency markers against the host's Python, not --python-version: what the
# images' 3.11.2 needs beyond that (redis needs async-timeout below 3.11.3).
MARKER_EXTRAS=("async-timeout>=4.0.3")
CONF=/etc/containers/containers.conf
MARK="# written by distreward scripts/cluster_setup.sh"

log() { printf '[cluster-setup %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

no_build_running() { ! pgrep -x podman >/dev/null 2>&1 && ! pgrep -x buildah >/dev/null 2>&1; }

# Mount points under a folder (a debootstrap killed half-way leaves proc/sys mounted there).
unmount_under() {
    local dir=$1 mnt
    for mnt in $(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$mnt" || true
    done
}

clean() {
    if command -v podman >/dev/null 2>&1; then
        local images
        images=$(podman images --format '{{.Repository}}:{{.Tag}}' | grep "^$PREFIX/" || true)
        if [ -n "$images" ]; then
            # shellcheck disable=SC2086
            podman rmi --force $images >/dev/null
        fi
        podman image prune --force >/dev/null
    fi
    rm -rf "$CACHE"
    log "removed the cluster test's images and $CACHE"
}

# One at a time per machine, and not while the live test runs (it holds the same lock).
lock() {
    exec 9> /run/distreward-test.lock
    flock 9
}

if [ "${1:-}" = clean ]; then
    if [ "$(id -u)" -eq 0 ]; then
        lock
    fi
    clean
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/cluster_setup.sh installs podman and builds images: run it as root." >&2
    exit 1
fi
started=$(date +%s)
lock

# -- tools --------------------------------------------------------------------------------------
PACKAGES=(podman buildah uidmap slirp4netns fuse-overlayfs runc netavark aardvark-dns iptables
          debootstrap)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Settings this kind of host needs: ulimits within what the host allows (no CAP_SYS_RESOURCE),
# runc with cgroupfs (crun refuses the cgroup v1/v2 hybrid; there is no systemd), and netavark
# (with aardvark-dns: service names resolve inside compose networks; Debian's podman would
# otherwise pick CNI, whose plugins it does not install). Written once; a file someone else wrote
# is left alone if it already has them.
if [ ! -f "$CONF" ] || grep -qF "$MARK" "$CONF"; then
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<EOF
$MARK
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "netavark"
EOF
elif ! grep -q 'runtime *= *"runc"' "$CONF" || ! grep -q default_ulimits "$CONF" ||
    ! grep -q 'network_backend *= *"netavark"' "$CONF"; then
    echo "$CONF lacks runtime = \"runc\", default_ulimits or network_backend = \"netavark\"." >&2
    exit 1
fi

# Leftovers of killed builds: gigabytes under /var/tmp.
if no_build_running; then
    find /var/tmp -maxdepth 1 \( -name 'buildah[0-9]*' -o -name 'storage[0-9]*' \) \
        -user root -exec rm -rf {} + 2>/dev/null || true
    for stale in /var/tmp/distreward-rootfs.*; do
        [ -e "$stale" ] || continue
        unmount_under "$stale"
        rm -rf --one-file-system "$stale"
    done
fi

have_image() { podman image exists "$1"; }

# -- base image ---------------------------------------------------------------------------------
if ! have_image "$BASE_IMAGE"; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
        true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d /var/tmp/distreward-rootfs.XXXXXX)
    log "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    unmount_under "$rootfs"
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf --one-file-system "$rootfs"
fi

# -- wheelhouse: every Python package the two project images install, as a PEP 503 index ------
# Downloaded on the host (where pip reaches PyPI and the local indexes), so that the builds run
# offline. Keyed on pyproject.toml and the pins above.
if [ ! -x "$VENV/bin/python" ]; then
    echo "no virtual environment at $VENV: run \`make venv\` first (or set VENV)." >&2
    exit 1
fi
pins="$TORCH_VERSION $TORCHVISION_VERSION $PYTHON_VERSION ${MARKER_EXTRAS[*]}"
key=$( (cat "$ROOT/pyproject.toml"; echo "$pins") | sha256sum | cut -c1-16)
if [ "$(cat "$WHEELS/.key" 2>/dev/null)" != "$key" ]; then
    log "pip download into $WHEELS"
    mkdir -p "$WHEELS"
    rm -f "$WHEELS/.key"
    # The project's own requirements (pyproject.toml), none of which contains a space.
    read -r -a requirements < <("$VENV/bin/python" -c '
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
print(" ".join(r.replace(" ", "") for r in
               project["dependencies"] + extras["service"] + extras["trainer"]))
' "$ROOT/pyproject.toml")
    "$VENV/bin/python" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
        --python-version "$PYTHON_VERSION" \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "setuptools>=68" wheel \
        "${MARKER_EXTRAS[@]}" "${requirements[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
    "$VENV/bin/python" - "$WHEELS" <<'EOF'
import re, sys
from pathlib import Path
wheels = Path(sys.argv[1])
simple = wheels / "simple"
projects: dict[str, list[str]] = {}
for f in sorted(wheels.glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", f.name.split("-")[0]).lower()
    projects.setdefault(name, []).append(f.name)
for name, files in projects.items():
    (simple / name).mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="../../{n}">{n}</a>\n' for n in files)
    (simple / name / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
(wheels / "pip.conf").write_text("[global]\nindex-url = file:///wheelhouse/simple\n")
EOF
    echo "$key" > "$WHEELS/.key"
fi

# -- images -------------------------------------------------------------------------------------
# --format docker keeps HEALTHCHECK and SHELL (the OCI format drops them).
build() {
    local tag=$1
    shift
    log "build $tag"
    podman build --quiet --format docker --layers --tag "$tag" "$@" "$ROOT" >/dev/null
}

for target in python redis nginx prometheus; do
    build "$PREFIX/$target:local" --file "$ROOT/docker/standins/Dockerfile" --target "$target" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --ignorefile "$ROOT/docker/standins/Dockerfile.dockerignore"
done

# The wheelhouse is mounted read-only for the RUN steps only (nothing of it stays in an image);
# its pip.conf points pip's default index at it, TORCH_INDEX_URL does the same for torch.
offline=(--volume "$WHEELS:/wheelhouse:ro" --volume "$WHEELS/pip.conf:/etc/pip.conf:ro"
         --build-arg "TORCH_INDEX_URL=file:///wheelhouse/simple"
         --build-arg "TORCH_VERSION=$TORCH_VERSION")
build "$PREFIX/reward-service:local" --file "$ROOT/docker/service/Dockerfile" \
    --ignorefile "$ROOT/docker/service/Dockerfile.dockerignore" "${offline[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
build "$PREFIX/trainer:local" --file "$ROOT/docker/trainer/Dockerfile" \
    --ignorefile "$ROOT/docker/trainer/Dockerfile.dockerignore" "${offline[@]}" \
    --build-arg "BASE_IMAGE=$PREFIX/python:local" \
    --build-arg "TORCHVISION_VERSION=$TORCHVISION_VERSION"

# The digits base networks, trained by the cluster's reference-init job on the first run and kept
# here for later ones (compose.test.yaml mounts it; the containers run as uid 10001).
install -d -o 10001 -g 10001 "$CACHE/digits-cache"

# Layers a rebuild replaced.
podman image prune --force >/dev/null
log "images ready in $(( $(date +%s) - started )) s"
