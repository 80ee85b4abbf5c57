#!/usr/bin/env bash
# ruff (lint, import order, format) and mypy (strict on core, protocol, stores, backends), as configured
# in pyproject.toml, in the newest stage's .venv (which installs the `lint` extra).
set -euo pipefail
source "$(dirname "$0")/common.sh"
stage_begin lint "ruff and mypy (.venv)"

if [ ! -x .venv/bin/mypy ]; then  # run on its own (STARBURST_CI_STAGES=lint)
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -c .ci/test-tools.txt -e '.[test,browser,lint]'
fi
bash .ci/lint.sh .venv/bin
