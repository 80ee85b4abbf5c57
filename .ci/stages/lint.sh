#!/usr/bin/env bash
# ruff (lint, import order, format), mypy (strict on core, protocol, stores, backends) and import-linter
# (the layers as contracts), as configured
# in pyproject.toml, in the newest stage's .venv (which installs the `lint` extra).
set -euo pipefail
source "$(dirname "$0")/common.sh"
stage_begin lint "ruff, mypy and import-linter (.venv)"

if [ ! -x .venv/bin/lint-imports ]; then  # run on its own (STARBURST_CI_STAGES=lint), or an older .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -c .ci/test-tools.txt -e '.[test,browser,lint]'
fi
bash .ci/lint.sh .venv/bin
