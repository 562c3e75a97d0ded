#!/usr/bin/env bash
# Set everything up, then run the server on https://0.0.0.0:8443 (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Guests get addresses on the host-internal NAT network unless told otherwise
# (XAPI_NAT_NETWORK="" turns it off; README "Guest networking").
export XAPI_NAT_NETWORK=${XAPI_NAT_NETWORK-10.213.0.1/24}
exec .venv/bin/xapi-server "$@"
