#!/bin/bash
# Idempotently bring up libvirt (qemu:///system) without systemd, e.g. in CI
# containers.  Run as root.  Does NOT install packages; the project setup script
# must have installed (Debian 12):
#   libvirt-daemon-system qemu-system-x86 qemu-utils libvirt-dev pkg-config
#   busybox-static linux-image-cloud-amd64   (the last two: tests/guest/build.py)
# Safe to run repeatedly: only starts daemons that are not running.
set -euo pipefail

WAIT_SECS="${LIBVIRT_SETUP_WAIT:-30}"
log() { echo "libvirt-setup: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root"; exit 1
fi
for bin in libvirtd virtlogd virsh; do
    command -v "$bin" >/dev/null 2>&1 || {
        log "$bin not found; install libvirt-daemon-system (and qemu-system-x86)"; exit 1; }
done

# Users/groups the Debian packages normally create in postinst; a half-configured
# image (or one built with --no-install-recommends tricks) may lack them.
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt >/dev/null || groupadd --system libvirt
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd --system --gid kvm --groups libvirt-qemu --home-dir /var/lib/libvirt \
        --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi
# /dev/kvm access for the qemu user (harmless even though tests use TCG).
[ -e /dev/kvm ] && chgrp kvm /dev/kvm 2>/dev/null && chmod 660 /dev/kvm 2>/dev/null || true

mkdir -p /run/libvirt /var/run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu \
         /var/cache/libvirt/qemu /var/lib/libvirt/images

# Is a daemon alive?  Both daemons write /run/<name>.pid when run as root (also
# under systemd); the pgrep fallback covers instances started with other pidfiles.
running() {  # $1 = daemon name
    { [ -f "/run/$1.pid" ] && kill -0 "$(cat "/run/$1.pid" 2>/dev/null)" 2>/dev/null; } \
        || pgrep -x "$1" >/dev/null 2>&1
}

if ! running virtlogd; then
    log "starting virtlogd"
    rm -f /run/virtlogd.pid
    virtlogd -d
fi
if ! running libvirtd; then
    log "starting libvirtd"
    rm -f /run/libvirtd.pid
    # --timeout is not used: the daemon must stay up for the whole test run.
    libvirtd -d
fi

deadline=$(( $(date +%s) + WAIT_SECS ))
until virsh -c qemu:///system version >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "libvirtd did not answer within ${WAIT_SECS}s"
        virsh -c qemu:///system version >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "qemu:///system is up ($(virsh -c qemu:///system version --daemon 2>/dev/null | tr '\n' ' '))"
