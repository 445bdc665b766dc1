#!/usr/bin/env bash
# Debian's Chromium for the Web UI test (playwright-core drives it; no browser download).
set -euo pipefail
BIN=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$BIN" ] && exit 0
echo "[browser] installing chromium (apt, first time only)" >&2
bash "$(dirname "$0")/apt-install.sh" chromium
