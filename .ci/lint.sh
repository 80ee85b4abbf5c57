#!/usr/bin/env bash
# Ruff (lint, import order, format), mypy and import-linter (the layer contracts), as configured in pyproject.toml.
# Usage: .ci/lint.sh VENV_BIN   (a virtualenv's bin directory holding the package and its `lint` extra)
set -euo pipefail
bin="${1:?usage: $0 VENV_BIN (a virtualenv bin directory with the lint extra installed)}"
cd "$(dirname "$0")/.."
run() {
    echo "+ $*"
    "$@"
}
run "$bin/ruff" check starburst_jupyter tests bench
run "$bin/ruff" format --check starburst_jupyter tests bench
# mypy reads [tool.mypy] (files, strict packages); it checks against the venv's installed packages
run "$bin/mypy" --python-executable "$bin/python"
# import-linter reads [tool.importlinter]: the layers of docs/architecture.md, no cycles, no IPython below the
# displays, no boto3 in the faces. Lazy and TYPE_CHECKING imports count. --no-cache: nothing written to the tree.
run "$bin/lint-imports" --no-cache
