#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff) and run the whole test suite; napari tests run under Xvfb (pytest-xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check . && echo "ruff: clean"   # the lint configuration in pyproject.toml
.venv/bin/python -m pytest "$@"
