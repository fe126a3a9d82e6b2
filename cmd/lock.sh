#!/usr/bin/env bash
# Regenerates the hash-pinned locks from pyproject.toml; run it after changing any dependency.
#   lock/requirements.txt  base + extras all, dev, chatbot, local: what CI and developers install
#   lock/runtime.txt       base + extras all, chatbot: what the container image installs; compiled
#                          with lock/requirements.txt as a constraint, so its pins are the same ones
# Existing pins are kept; `cmd/lock.sh --upgrade` (or `-P NAME` for one package) moves them.
# An extra not (yet) in pyproject.toml is left out with a note; tests/test_lock.py fails once it
# exists and the lock does not cover it.
#
# pip-tools, not uv: pip reads this machine's pip configuration (its find-links directory and local
# indexes), which is where torch's CPU build is; see lock/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

FULL_EXTRAS=(all dev chatbot local)
RUNTIME_EXTRAS=(all chatbot)
PIP_TOOLS=pip-tools==7.6.2
TOOLS=${LOCK_TOOLS_VENV:-.hub/lock-tools}

if [ ! -x "$TOOLS/bin/pip-compile" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "$PIP_TOOLS"
fi

# `--extra=NAME` for each wanted extra that pyproject.toml defines.
extra_options() {
  python3 - "$@" <<'PY'
import sys, tomllib
with open("pyproject.toml", "rb") as file:
    defined = tomllib.load(file)["project"].get("optional-dependencies", {})
for name in sys.argv[1:]:
    if name in defined:
        print(f"--extra={name}")
    else:
        print(f"cmd/lock.sh: extra {name!r} is not in pyproject.toml yet: not locked", file=sys.stderr)
PY
}

compile() {
  "$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --all-build-deps "$@" pyproject.toml
}

mapfile -t full < <(extra_options "${FULL_EXTRAS[@]}")
mapfile -t runtime < <(extra_options "${RUNTIME_EXTRAS[@]}")

compile "${full[@]}" --constraint lock/constraints.txt --output-file lock/requirements.txt "$@"

# The runtime lock is constrained by the full one, so the image runs the pins CI tested.
compile "${runtime[@]}" --constraint lock/constraints.txt --constraint lock/requirements.txt \
  --output-file lock/runtime.txt

echo "cmd/lock.sh: lock/requirements.txt ($(grep -c '==' lock/requirements.txt) pins)," \
  "lock/runtime.txt ($(grep -c '==' lock/runtime.txt) pins)"
