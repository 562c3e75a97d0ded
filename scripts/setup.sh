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
  ethtool iputils-ping                                 # PIF properties (gro); the uplink move's connectivity probe
  dnsmasq-base nftables                                # the host-internal NAT network: DHCP/DNS, masquerading
  busybox-static linux-image-cloud-amd64 cpio genisoimage  # the tiny test guest, test ISOs
  isolinux syslinux-common                             # a bootable test ISO (the day-one walk-through test)
  wrk                                                  # load generator for bench/
  postgresql-15                                        # the pool database; tests start their own cluster
  patroni etcd-server etcd-client                      # Pool HA: replicated pool database (tests/ha_harness.py)
  librrd-dev rrdtool prometheus                        # metrics archives (pip rrdtool builds on librrd-dev); the Prometheus scrape test
  chromium                                             # the web console's browser tests (Playwright drives it)
)
# The web console (ui/) is built with Node: Debian's when the machine has none (a Node
# from elsewhere, with its own npm, is used as it is: Debian's npm would conflict with it).
if ! command -v node >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

# Build the web console into ui/dist when its sources or lockfile changed since the last
# build (`npm ci` only when the lockfile did). The built files are not committed.
UI_STAMP=.venv/.ui-built
build_ui() {
  local want lock
  want=$(cd ui && find package.json package-lock.json index.html vite.config.ts tsconfig.json \
           scripts src public -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  if [ -f ui/dist/index.html ] && [ "$(cat "$UI_STAMP" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  lock=$(sha256sum ui/package-lock.json | cut -d' ' -f1)
  if [ "$(cat ui/node_modules/.xapi-lock 2>/dev/null)" != "$lock" ]; then
    (cd ui && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" > ui/node_modules/.xapi-lock
  fi
  (cd ui && npm run build --silent)
  echo "$want" > "$UI_STAMP"
}

# The PAM service for system-account logins (pam_service = "xapi-py"); see the file.
install -m 0644 scripts/pam.d/xapi-py /etc/pam.d/xapi-py

# Nothing more to do when this script and the Python dependencies are what they were at
# the last complete run (run-server.sh calls this on every start). Our own code needs no
# reinstall: the venv holds it as an editable install.
STAMP=.venv/.setup-done
WANT=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/xapi-server ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  build_ui
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
build_ui
echo "$WANT" > "$STAMP"
