#!/usr/bin/env bash
# Regenerates the committed Python code of the API (integration_hub/v1/) from
# protos/, with mypy stubs. The one command to run after editing a .proto:
#
#   cmd/gen-protos.sh            regenerate integration_hub/v1/
#   cmd/gen-protos.sh --check    fail if the committed code is stale (CI)
#   cmd/gen-protos.sh --vendor   refresh protos/third_party/googleapis from the
#                                installed googleapis-common-protos wheel
#   cmd/gen-protos.sh --baseline record the current API as the breaking-change
#                                baseline (protos/baseline/); do this
#                                when a version of the API is released
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

vendor_googleapis() {
  local site
  site=$("$PY" -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parent)')
  for f in api/annotations api/http api/field_behavior rpc/status rpc/error_details rpc/code; do
    install -D -m 0644 "$site/$f.proto" "protos/third_party/googleapis/google/$f.proto"
  done
}

# The released API, kept as a buf workspace of its own so that
# `buf breaking --against protos/baseline` compares module by module.
snapshot_baseline() {
  rm -rf protos/baseline
  mkdir -p protos/baseline/protos
  cp buf.yaml protos/baseline/
  cp -r protos/integration_hub protos/third_party protos/baseline/protos/
}

generate_into() {
  local out=$1 protoc_include
  protoc_include=$("$PY" -c 'import grpc_tools, pathlib; print(pathlib.Path(grpc_tools.__file__).parent / "_proto")')
  mkdir -p "$out/integration_hub/v1"
  "$PY" -m grpc_tools.protoc \
    -I protos -I protos/third_party/googleapis -I "$protoc_include" \
    --python_out="$out" --grpc_python_out="$out" \
    --mypy_out="$out" --mypy_grpc_out="$out" \
    protos/integration_hub/v1/*.proto
  cat > "$out/integration_hub/v1/__init__.py" <<'PY'
"""Generated from protos/integration_hub/v1 by cmd/gen-protos.sh. Do not edit."""
PY
}

case "${1:-}" in
  --vendor) vendor_googleapis ;;
  --baseline) snapshot_baseline ;;
  --check)
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    generate_into "$tmp"
    if ! diff -r -q "$tmp/integration_hub/v1" integration_hub/v1 -x __pycache__; then
      echo "integration_hub/v1 is stale: run cmd/gen-protos.sh and commit the result" >&2
      exit 1
    fi
    ;;
  "") rm -f integration_hub/v1/*_pb2*.py integration_hub/v1/*_pb2*.pyi; generate_into . ;;
  *) echo "usage: $0 [--check|--vendor|--baseline]" >&2; exit 2 ;;
esac
