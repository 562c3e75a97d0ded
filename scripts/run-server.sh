#!/usr/bin/env bash
# Set everything up, then run the server on https://0.0.0.0:8443 (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/xapi-server "$@"
