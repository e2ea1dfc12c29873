#!/usr/bin/env bash
# Sets up the environment if needed, lints, then runs the whole test suite (tests/ and the
# docstring examples of src/mlsupcon).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
