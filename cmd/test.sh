#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs into .venv, then lint, types,
# API checks (buf lint, breaking changes, stale generated code) and pytest.
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# torch first, exactly 2.13.0: the CPU build on disk (a looser requirement pulls CUDA).
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[all,dev]'
# shellcheck disable=SC1091
. .venv/bin/activate

# One command per line: under `set -e`, a failure inside an `a && b` list does not stop the script.
echo "== ruff"; ruff check .; ruff format --check .
echo "== mypy"; mypy
echo "== buf"; buf lint; buf breaking --against protos/baseline
echo "== generated code"; cmd/gen-protos.sh --check
echo "== pytest"; python -m pytest "$@"
