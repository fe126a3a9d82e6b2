#!/usr/bin/env bash
# The hub's benchmark in one command: bench/README.md says what it measures.
#
#   bash bench/run.sh                 # (a) OpenAI endpoint, (b) streaming + TTFT, (c) gRPC Chat; 3 rounds x 5 s
#   bash bench/run.sh --full          # the same with 10 s rounds, then --profile and a 10-minute --soak
#   bash bench/run.sh --soak-only     # only the 10-minute soak (--soak SECONDS to change it)
#   bash bench/run.sh --help          # every option (bench/run.py)
#
# Installs what is missing: wrk, h2load (nghttp2-client) and nginx-light from Debian; py-spy into
# .venv with --profile (not a project dependency); the peers (LiteLLM, Portkey) through
# ../shared/bench/peers.sh. Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=$repo/.venv/bin/python

[ -x "$py" ] || { echo "no .venv: run bash cmd/quickstart.sh (or python3 -m venv .venv && .venv/bin/pip install -e '.[all]') first" >&2; exit 2; }

args=()
for arg in "$@"; do
  case "$arg" in
    --full) args+=(--seconds 10 --profile --soak 600) ;;
    *) args+=("$arg") ;;
  esac
done

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
case " ${args[*]-} " in
  *" --profile "*) [ -x .venv/bin/py-spy ] || .venv/bin/python -m pip install -q py-spy ;;
esac

export HUB_BENCH_COMMAND="bash bench/run.sh${*:+ $*}"
exec "$py" bench/run.py ${args[@]+"${args[@]}"}
