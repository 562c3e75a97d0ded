#!/usr/bin/env bash
# Set everything up, then run the whole test suite (extra args go to pytest:
# `-m 'not slow'` leaves out the guest-booting and crash tests). The 15 slowest
# tests are listed at the end, so a test that grows slow is seen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -ra --durations=15 "$@"
