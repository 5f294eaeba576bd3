#!/usr/bin/env bash
# Build a local Debian bookworm + Python 3 base image for the Dockerfile, without any image registry.
#
#   infra/image/base-image.sh            # prints the image name (clip-lambda/base:bookworm) on stdout
#   BASE_IMAGE_ARCH=arm64 infra/image/base-image.sh   # clip-lambda/base:bookworm-arm64 (via QEMU, ~2 min)
#   BASE_IMAGE_FORCE=1 infra/image/base-image.sh   # rebuild even if the image exists
#
# Why: no Docker registry is reachable from these machines (CI included), so `FROM python:3.11-slim`
# cannot be pulled. debootstrap builds the same Debian userland from the Debian mirror, which is
# reachable, and `docker import` turns it into an image. The production default base stays the public
# Debian-slim Python image; infra/image/Dockerfile only uses `python3 -m venv` and pip, so either base works.
#
# The host's CA bundle and a pip.conf that points at it are copied in, so that pip inside the build
# (docker build --network host) reaches PyPI through whatever TLS setup this machine has.
# Cached: skips everything when the image already exists in the engine (its data root outlives runs).
set -euo pipefail

ARCH="${BASE_IMAGE_ARCH:-amd64}" # Debian's name; also Docker's (amd64, arm64)
SUITE="${BASE_IMAGE_SUITE:-bookworm}"
DEFAULT_NAME="clip-lambda/base:$SUITE"
[[ "$ARCH" == amd64 ]] || DEFAULT_NAME+="-$ARCH"
IMAGE="${BASE_IMAGE_NAME:-$DEFAULT_NAME}"
MIRROR="${BASE_IMAGE_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${BASE_IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "base-image: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); run infra/ci/docker-engine.sh start"
    exit 1
fi

if [[ "${BASE_IMAGE_FORCE:-0}" != "1" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists (cached)"
    echo "$IMAGE"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap not found: apt-get install -y debootstrap"
    exit 1
fi

# A scratch folder on the same disk as the engine data; removed on any exit.
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/clip-lambda-base.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"

HOST_ARCH="$(dpkg --print-architecture)"
if [[ "$ARCH" != "$HOST_ARCH" ]]; then
    # debootstrap's second stage runs the foreign root's own programs: QEMU through binfmt_misc.
    bash "$(dirname "$0")/../ci/qemu-binfmt.sh"
fi

log "debootstrap $SUITE $ARCH from $MIRROR (about a minute natively, two under QEMU)"
# minbase: only Essential + apt; python3-venv brings ensurepip (pip for the venv the Dockerfile makes).
debootstrap --arch="$ARCH" --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 40 "$WORK/debootstrap.log" >&2
    exit 1
}

if [[ -f "$CA_BUNDLE" ]]; then
    install -m 0644 "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
cat >"$ROOTFS/etc/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
disable-pip-version-check = true
timeout = 180
EOF

# Trim what an image never needs: apt lists and caches, docs, man pages, locales.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/*

log "loading as $IMAGE ($ARCH)"
# docker load of a saved-image archive rather than docker import, which labels every image with the
# host's architecture (infra/image/docker_archive.py says why that matters).
tar -C "$ROOTFS" --numeric-owner -cf "$WORK/layer.tar" .
rm -rf "$ROOTFS"
python3 "$(dirname "$0")/docker_archive.py" "$WORK/layer.tar" "$IMAGE" "$ARCH" \
    "debootstrap --variant=minbase $SUITE ($ARCH) + python3, python3-venv, ca-certificates" | docker load >/dev/null
log "done: $(docker image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "$IMAGE"
