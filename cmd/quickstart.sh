#!/usr/bin/env bash
# Installs integration-hub into .venv and starts it on the embedded SQLite store,
# with a DEVELOPMENT keyring (.hub/keyring.json) and an admin token for tenant
# "dev" (printed, and kept in .hub/dev-admin-token). Nothing else to install.
# For production, see README "Configuration": HUB_KEYRING_FILE, HUB_DATABASE_URL...
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
# The runtime lock (every provider SDK and the chatbot layer, hash-pinned; torch is its CPU build),
# then the project itself without resolving anything more.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r lock/runtime.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
hub=.venv/bin/integration-hub

mkdir -p -m 0700 .hub
"$hub" migrate >/dev/null
if [ ! -s .hub/dev-admin-token ]; then
  (umask 077; "$hub" tokens create --tenant dev --scope admin --scope invoke --name quickstart 2>/dev/null \
    | tail -n 1 > .hub/dev-admin-token)
fi
echo "admin token for tenant 'dev' (also in .hub/dev-admin-token):"
cat .hub/dev-admin-token
echo "gRPC on 127.0.0.1:${HUB_GRPC_PORT:-9004}, HTTP on 127.0.0.1:${HUB_HTTP_PORT:-9005}; Ctrl-C stops it"
exec "$hub" serve --dev-keyring
