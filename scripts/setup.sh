#!/usr/bin/env bash
# Install everything xapi-py needs on Debian 12 (as root) and the package into .venv.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config
  libvirt-dev libvirt-daemon-system libvirt-clients   # libvirt-python builds against libvirt-dev
  qemu-system-x86 qemu-utils ipxe-qemu seabios         # hypervisor (TCG or KVM), NIC ROMs, qemu-img
  lvm2                                                 # LVM storage driver
  fuse3                                                # qemu-storage-daemon's FUSE export: a VDI's bytes for import/export
  acl                                                  # setfacl: QEMU's user may search folders above disks
  libpam0g libpam-modules                              # PAM logins (python-pam, pam_unix)
  iproute2 bridge-utils                                # bridges, VLANs, taps
  dnsmasq-base nftables                                # the host-internal NAT network: DHCP/DNS, masquerading
  busybox-static linux-image-cloud-amd64 cpio genisoimage  # the tiny test guest, test ISOs
  isolinux syslinux-common                             # a bootable test ISO (the day-one walk-through test)
  wrk                                                  # load generator for bench/
  librrd-dev rrdtool prometheus                        # metrics archives (pip rrdtool builds on librrd-dev); the Prometheus scrape test
)

# The PAM service for system-account logins (pam_service = "xapi-py"); see the file.
install -m 0644 scripts/pam.d/xapi-py /etc/pam.d/xapi-py

# Nothing more to do when this script and the Python dependencies are what they were at
# the last complete run (run-server.sh calls this on every start). Our own code needs no
# reinstall: the venv holds it as an editable install.
STAMP=.venv/.setup-done
WANT=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/xapi-server ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
echo "$WANT" > "$STAMP"
