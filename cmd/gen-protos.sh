#!/usr/bin/env bash
# Regenerates the committed Python code of the API (integration_hub/v1/) from
# protos/, with mypy stubs. The one command to run after editing a .proto:
#
#   cmd/gen-protos.sh            regenerate integration_hub/v1/ and protos/openapi.json
#   cmd/gen-protos.sh --check    fail if the committed code or the OpenAPI document is stale (CI)
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

# Each API package and the Python package its code goes to: the hub's, and the chatbot
# layer's (a client of the hub with an API of its own).
API_PACKAGES="integration_hub/v1 chatbot/v1"

generate_into() {
  local out=$1 protoc_include package
  protoc_include=$("$PY" -c 'import grpc_tools, pathlib; print(pathlib.Path(grpc_tools.__file__).parent / "_proto")')
  for package in $API_PACKAGES; do
    mkdir -p "$out/$package"
    "$PY" -m grpc_tools.protoc \
      -I protos -I protos/third_party/googleapis -I "$protoc_include" \
      --python_out="$out" --grpc_python_out="$out" \
      --mypy_out="$out" --mypy_grpc_out="$out" \
      "protos/$package"/*.proto
    printf '"""Generated from protos/%s by cmd/gen-protos.sh. Do not edit."""\n' "$package" > "$out/$package/__init__.py"
  done
}

# The REST contract (integration_hub/http/openapi.py), from the generated descriptors:
# the same bindings the hub's transcoder routes with.
OPENAPI=protos/openapi.json
write_openapi() {
  # Through a temporary file: a failed run leaves the committed document as it was.
  "$PY" -m integration_hub.http.openapi > "$1.tmp"
  mv "$1.tmp" "$1"
}

case "${1:-}" in
  --vendor) vendor_googleapis ;;
  --baseline) snapshot_baseline ;;
  --check)
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    generate_into "$tmp"
    for package in $API_PACKAGES; do
      if ! diff -r -q "$tmp/$package" "$package" -x __pycache__; then
        echo "$package is stale: run cmd/gen-protos.sh and commit the result" >&2
        exit 1
      fi
    done
    write_openapi "$tmp/openapi.json"
    if ! diff -q "$tmp/openapi.json" "$OPENAPI"; then
      echo "$OPENAPI is stale: run cmd/gen-protos.sh and commit the result" >&2
      exit 1
    fi
    ;;
  "")
    for package in $API_PACKAGES; do rm -f "$package"/*_pb2*.py "$package"/*_pb2*.pyi; done
    generate_into .
    write_openapi "$OPENAPI"
    ;;
  *) echo "usage: $0 [--check|--vendor|--baseline]" >&2; exit 2 ;;
esac
