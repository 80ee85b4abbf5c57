#!/usr/bin/env bash
# Node.js for building the JupyterLab sidebar (labextension/, built by `pip install` through
# hatch-jupyter-builder). The machine image ships Node 20; Debian's nodejs (18) when it is missing.
# Note: this must run before `pip install` of the project to matter on a machine without Node.
set -euo pipefail
if ! command -v node >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
fi
