#!/usr/bin/env bash
# Set up the environment (once) and run the whole test suite against a server it starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q -e '.[test]' >/dev/null
if [ ! -d node_modules/chart.js ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null; fi  # dashboard charts
exec .venv/bin/python -m pytest "$@"
