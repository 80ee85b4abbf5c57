#!/usr/bin/env bash
# The full test suite (slow and browser tests included) against the NEWEST versions pyproject.toml
# allows, in .venv. `--upgrade --upgrade-strategy eager` so a warm .venv picks up new releases of
# every dependency, not only missing ones. Arguments go to pytest. Resolved versions:
# artifacts/freeze-newest.txt (written before the tests run).
set -euo pipefail
source "$(dirname "$0")/common.sh"
stage_begin newest "full suite, newest dependencies (.venv)"

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[test,browser,lint]'
.venv/bin/pip freeze --disable-pip-version-check > artifacts/freeze-newest.txt
echo "resolved versions: artifacts/freeze-newest.txt"

export STARBURST_REQUIRE_BROWSER=1  # in CI a missing browser fails the browser tests instead of skipping them
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
