#!/usr/bin/env bash
# Set up the environment (once) and run the whole pipeline on the embedded server.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q -e . -e sdk/python >/dev/null  # sdk/python: analytics_client
if [ ! -d node_modules/chart.js ] || [ ! -d node_modules/swagger-ui-dist ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null; fi  # dashboard charts, OpenAPI UI
# browser SDK (GET /sdk.js): a build output, rebuilt when its sources change (esbuild pinned by sdk/js's lockfile)
if [ ! -f sdk/js/dist/sdk.js ] || [ -n "$(find sdk/js/src sdk/js/package-lock.json -newer sdk/js/dist/sdk.js)" ]; then
  (cd sdk/js && { [ -x node_modules/.bin/esbuild ] || npm ci --no-audit --no-fund --loglevel=error >/dev/null; } && npm run --silent build)
fi
exec .venv/bin/analytics-dev "$@"
