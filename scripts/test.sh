#!/usr/bin/env bash
# Set up everything the suite needs (once), then run it against servers the tests start themselves.
# A bare machine needs Python >= 3.11 with venv, Node.js/npm (the dashboard's chart library, the
# SDK build, the real Segment SDKs) and Chromium (the dashboard's and the browser SDK's tests):
# what is missing is installed with apt-get when this runs as root (or with password-less sudo);
# otherwise it says what to install and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
if ! command -v python3 >/dev/null || ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  need+=(python3 python3-venv python3-pip)
fi
command -v npm >/dev/null || need+=(nodejs npm)
# a C compiler and Python's headers build collector/native_batch.pyx (the compiled batch path)
command -v cc >/dev/null || need+=(gcc)
python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || need+=(python3-dev)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: please install ${need[*]} (Debian/Ubuntu package names): Python runs the" \
         "suite, npm fetches the dashboard's and SDKs' packages, /usr/bin/chromium runs the browser tests" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q -e '.[test]' -e sdk/python >/dev/null  # sdk/python: analytics_client; compiles collector/native_batch.pyx when changed
if [ ! -d node_modules/chart.js ] || [ ! -d node_modules/swagger-ui-dist ] || [ ! -d node_modules/@segment/analytics-node ] || [ ! -d node_modules/@segment/analytics-next ]; then npm ci --no-audit --no-fund --loglevel=error >/dev/null; fi  # dashboard charts, OpenAPI UI, Segment SDKs (tests)
# browser SDK (GET /sdk.js): a build output, rebuilt when its sources change (esbuild pinned by sdk/js's lockfile)
if [ ! -f sdk/js/dist/sdk.js ] || [ -n "$(find sdk/js/src sdk/js/package-lock.json -newer sdk/js/dist/sdk.js)" ]; then
  (cd sdk/js && { [ -x node_modules/.bin/esbuild ] || npm ci --no-audit --no-fund --loglevel=error >/dev/null; } && npm run --silent build)
fi
exec .venv/bin/python -m pytest "$@"
