#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff) and run the whole test suite; napari tests run under Xvfb (pytest-xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
# Let Python keep its bytecode caches even where the environment says not to (this machine kind sets
# PYTHONDONTWRITEBYTECODE=1): pytest then rewrites the asserts of napari's, zarr's and hypothesis's modules once
# instead of in every worker, and each command a test runs loads the package compiled (docs/results.md §2f)
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh
.venv/bin/python -m ruff check . && echo "ruff: clean"   # the lint configuration in pyproject.toml
# pytest-xdist: one worker per CPU that nproc gives (CELLSYNTH_TEST_WORKERS=0: in this process), whole files per
# worker so that a module's trained fixtures are made once, longest first (tests/conftest.py orders them by
# tests/durations.json; xdist's own order, by test count, is turned off); tests/conftest.py gives each worker one thread.
.venv/bin/python -m pytest -n "${CELLSYNTH_TEST_WORKERS:-$(nproc)}" --dist loadfile --no-loadscope-reorder "$@"
