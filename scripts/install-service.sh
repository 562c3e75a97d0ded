#!/usr/bin/env bash
# Install xapi-py as a service, as a Debian package would:
#   - everything setup.sh installs (packages, .venv), unless it is already up to date;
#   - /etc/systemd/system/xapi-py.service (this checkout's .venv), data in /var/lib/xapi-py,
#     settings in /etc/xapi-py/xapi.toml (kept if present), logs in the journal;
#   - `xe` in /usr/local/bin (the client alone, run without site packages: no
#     editable-install import hook to pay on every command) and its bash completion;
#   - then `systemctl enable --now xapi-py` when systemd runs this machine.
# --root DIR installs the files below DIR instead and enables nothing (tests, images).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$(pwd)
ROOT=""
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=$2; shift 2 ;;
    *) echo "usage: $0 [--root DIR]" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh

install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/etc/xapi-py" "$ROOT/usr/local/bin" \
  "$ROOT/usr/local/lib/xapi-py" "$ROOT/usr/share/bash-completion/completions"
install -d -m 0711 "$ROOT/var/lib/xapi-py"
sed "s|@ROOT@|$CHECKOUT|g" scripts/systemd/xapi-py.service \
  > "$ROOT/etc/systemd/system/xapi-py.service"
chmod 0644 "$ROOT/etc/systemd/system/xapi-py.service"
[ -e "$ROOT/etc/xapi-py/xapi.toml" ] || install -m 0644 scripts/xapi.toml.example "$ROOT/etc/xapi-py/xapi.toml"

# xe: a copy of the client package (stdlib only) and a launcher with -I -S
rm -rf "$ROOT/usr/local/lib/xapi-py/xe_cli"
install -d "$ROOT/usr/local/lib/xapi-py/xe_cli"
install -m 0644 xe_cli/*.py "$ROOT/usr/local/lib/xapi-py/xe_cli/"
PYTHON=/usr/bin/python3           # Debian's: a launcher's interpreter must be a binary
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
cat > "$ROOT/usr/local/bin/xe" <<LAUNCHER
#!$PYTHON -IS
import sys
sys.path.insert(0, "/usr/local/lib/xapi-py")
if "$ROOT":   # installed below a staging root (--root): its copy comes first
    sys.path.insert(0, "$ROOT/usr/local/lib/xapi-py")
from xe_cli.main import main
sys.exit(main())
LAUNCHER
chmod 0755 "$ROOT/usr/local/bin/xe"
install -m 0644 xe_cli/completion.bash "$ROOT/usr/share/bash-completion/completions/xe"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now xapi-py
  echo "xapi-py is running: systemctl status xapi-py; the root password is in /var/lib/xapi-py/root-password"
else
  echo "installed${ROOT:+ below $ROOT}; start it with: systemctl enable --now xapi-py"
fi
