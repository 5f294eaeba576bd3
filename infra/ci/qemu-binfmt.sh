#!/usr/bin/env bash
# Register QEMU's arm64 emulator with the kernel (binfmt_misc), so that arm64 programs run on this x86
# host: debootstrap --arch=arm64, `docker build --platform linux/arm64`, containers of arm64 images.
#
#   infra/ci/qemu-binfmt.sh          # idempotent; needs root and qemu-user-static
#   infra/ci/qemu-binfmt.sh status   # exit 0 when arm64 binaries can run
#
# Debian's qemu-user-static ships the registration (/usr/lib/binfmt.d/qemu-aarch64.conf) with the F flag:
# the kernel opens the emulator once at registration, so it also runs inside containers and chroots that do
# not contain it. No systemd here to apply it (systemd-binfmt), so it is written to the kernel directly.
set -euo pipefail

CONF="${QEMU_BINFMT_CONF:-/usr/lib/binfmt.d/qemu-aarch64.conf}"
MISC=/proc/sys/fs/binfmt_misc

log() { echo "qemu-binfmt: $*" >&2; }

registered() { [[ -e "$MISC/qemu-aarch64" ]] && grep -q '^enabled' "$MISC/qemu-aarch64"; }

if [[ "${1:-}" == status ]]; then
    registered
    exit
fi
if registered; then
    log "qemu-aarch64 already registered"
    exit 0
fi
if [[ ! -f "$CONF" ]]; then
    log "$CONF not found: apt-get install -y qemu-user-static"
    exit 1
fi
if [[ ! -e "$MISC/register" ]]; then
    mount -t binfmt_misc binfmt_misc "$MISC"
fi
cat "$CONF" >"$MISC/register"
registered || { log "registration did not take"; exit 1; }
log "qemu-aarch64 registered ($(grep '^flags' "$MISC/qemu-aarch64"))"
