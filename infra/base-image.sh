#!/usr/bin/env bash
# Build a local Debian bookworm + Python 3 base image for the Dockerfile, without any image registry.
#
#   infra/base-image.sh            # prints the image name (clip-lambda/base:bookworm) on stdout
#   BASE_IMAGE_FORCE=1 infra/base-image.sh   # rebuild even if the image exists
#
# Why: no Docker registry is reachable from these machines (CI included), so `FROM python:3.11-slim`
# cannot be pulled. debootstrap builds the same Debian userland from the Debian mirror, which is
# reachable, and `docker import` turns it into an image. The production default base stays the public
# Debian-slim Python image; infra/Dockerfile only uses `python3 -m venv` and pip, so either base works.
#
# The host's CA bundle and a pip.conf that points at it are copied in, so that pip inside the build
# (docker build --network host) reaches PyPI through whatever TLS setup this machine has.
# Cached: skips everything when the image already exists in the engine (its data root outlives runs).
set -euo pipefail

IMAGE="${BASE_IMAGE_NAME:-clip-lambda/base:bookworm}"
SUITE="${BASE_IMAGE_SUITE:-bookworm}"
MIRROR="${BASE_IMAGE_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${BASE_IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "base-image: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); run infra/docker-engine.sh start"
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

log "debootstrap $SUITE from $MIRROR (about a minute)"
# minbase: only Essential + apt; python3-venv brings ensurepip (pip for the venv the Dockerfile makes).
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
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

log "importing as $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE + python3, python3-venv, ca-certificates" \
    - "$IMAGE" >/dev/null
log "done: $(docker image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "$IMAGE"
