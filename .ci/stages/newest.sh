#!/usr/bin/env bash
# The full test suite (slow and browser tests included) against the NEWEST versions pyproject.toml
# allows of the product's runtime dependencies, with the test tools (moto, playwright, pytest, hypothesis,
# ruff, mypy, build and what only they need) at the versions .ci/test-tools.txt locks. In .venv.
# `--upgrade --upgrade-strategy eager` so a warm .venv picks up new releases of every runtime dependency,
# not only missing ones. Arguments go to pytest. Resolved versions: artifacts/freeze-newest.txt (written
# before the tests run).
# STARBURST_TEST_TOOLS=newest (the tools-newest stage) unlocks the test tools too, in .venv-tools-newest.
set -euo pipefail
source "$(dirname "$0")/common.sh"
tools=${STARBURST_TEST_TOOLS:-locked}
case $tools in
    locked) venv=.venv lock=(-c .ci/test-tools.txt) name=newest ;;
    newest) venv=.venv-tools-newest lock=() name=tools-newest ;;
    *) echo "STARBURST_TEST_TOOLS must be locked or newest, not $tools" >&2; exit 2 ;;
esac
stage_begin "$name" "full suite, newest runtime dependencies, test tools $tools ($venv)"

python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade --upgrade-strategy eager "${lock[@]}" \
    -e '.[test,browser,lint]' build
"$venv/bin/pip" freeze --disable-pip-version-check > "artifacts/freeze-$name.txt"
echo "resolved versions: artifacts/freeze-$name.txt"
echo "test tools against .ci/test-tools.txt:"
"$venv/bin/python" .ci/test_tools.py diff | sed 's/^/  /'

export STARBURST_REQUIRE_BROWSER=1  # in CI a missing browser fails the browser tests instead of skipping them
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
