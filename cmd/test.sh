#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs into .venv from the lock, then lint, types,
# API checks (buf lint, breaking changes, stale generated code) and pytest.
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts them).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Every dependency from the hash-pinned lock (cmd/lock.sh; pip refuses any file whose SHA-256 is not
# in it, and any requirement it does not pin), then the project itself: no dependency resolved, and
# built with the locked setuptools rather than one fetched for an isolated build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r lock/requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
# shellcheck disable=SC1091
. .venv/bin/activate

# One command per line: under `set -e`, a failure inside an `a && b` list does not stop the script.
echo "== ruff"; ruff check .; ruff format --check .
echo "== mypy"; mypy
echo "== buf"; buf lint; buf breaking --against protos/baseline
echo "== generated code"; cmd/gen-protos.sh --check
echo "== pytest"; python -m pytest "$@"
