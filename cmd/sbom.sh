#!/usr/bin/env bash
# The SBOM: a CycloneDX 1.6 JSON document of integration-hub and every pinned dependency, with the
# lock's SHA-256 hashes, made from a lock file (no network, no install).
#   cmd/sbom.sh [LOCK] [OUTPUT]   defaults: lock/runtime.txt (what the image ships), dist/sbom.cdx.json
# cyclonedx-py (PyPI cyclonedx-bom, in the dev extra) validates the document against the CycloneDX
# schema before writing it, and fails if it does not validate.
set -euo pipefail
cd "$(dirname "$0")/.."

lock=${1:-lock/runtime.txt}
output=${2:-dist/sbom.cdx.json}
mkdir -p "$(dirname "$output")"
cyclonedx=${CYCLONEDX_PY:-.venv/bin/cyclonedx-py}

# Reproducible: the same lock gives the same document (no random serial number, no timestamp
# unless SOURCE_DATE_EPOCH is set).
"$cyclonedx" requirements --pyproject pyproject.toml --mc-type application --sv 1.6 --of JSON \
  --output-reproducible --validate -o "$output" "$lock"
echo "cmd/sbom.sh: $output ($lock)"
