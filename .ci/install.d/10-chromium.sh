#!/usr/bin/env bash
# Chromium for tests/browser (about 30 s when missing; nothing when present).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
