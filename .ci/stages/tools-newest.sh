#!/usr/bin/env bash
# Not part of the default run: the full suite with the test tools UNLOCKED (their newest releases), in
# .venv-tools-newest, to try the next versions before taking them. It prints what differs from
# .ci/test-tools.txt before the tests run; a failure here with a green `newest` stage is a test tool's
# regression (tests/test_standin_canary.py names moto's in one line). `.ci/refresh-test-tools` runs this
# stage and, when it is green, writes the new lock. Arguments go to pytest.
set -euo pipefail
STARBURST_TEST_TOOLS=newest exec bash "$(dirname "$0")/newest.sh" "$@"
