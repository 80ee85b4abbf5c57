#!/usr/bin/env bash
# The fast test suite against the OLDEST versions pyproject.toml declares: .venv-lowest, installed
# with .ci/lowest-constraints.txt (every direct and test dependency pinned to its lower bound;
# transitive dependencies resolve freely, upgraded eagerly as in a fresh venv), plus JupyterLab at the
# `browser` extra's lower bound, since the fast tests in tests/server run a `jupyter server` and list the
# lab extensions. Resolved versions: artifacts/freeze-lowest.txt. The editable install reuses the
# labextension the newest stage built (hatch-jupyter-builder rebuilds it only when labextension/src is newer).
set -euo pipefail
source "$(dirname "$0")/common.sh"
stage_begin lowest "fast suite, lowest declared dependencies (.venv-lowest)"

python3 .ci/stages/lowest_pins.py pyproject  # the pins are pyproject.toml's lower bounds
python3 -m venv .venv-lowest
.venv-lowest/bin/pip install -q --disable-pip-version-check --upgrade --upgrade-strategy eager \
    -c .ci/lowest-constraints.txt -e '.[test]' jupyterlab
.venv-lowest/bin/pip freeze --disable-pip-version-check > artifacts/freeze-lowest.txt
echo "resolved versions: artifacts/freeze-lowest.txt"

.venv-lowest/bin/python .ci/stages/lowest_pins.py installed

.venv-lowest/bin/python -m pytest -q -p no:cacheprovider -m "not slow and not browser"
