#!/usr/bin/env bash
# What the browser test (tests/e2e/test_ui.py) needs: Debian's Chromium at /usr/bin/chromium and
# playwright-core (pinned in tests/e2e/package-lock.json) in tests/e2e/node_modules.
# playwright-core downloads no browser; the test drives the Debian one. Idempotent: each step is
# skipped when already satisfied. Needs root (apt-get) when Chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-browser-test-deps: node and npm (Node >= 20) are needed for tests/e2e" >&2
  exit 1
fi

if [ ! -f tests/e2e/node_modules/playwright-core/package.json ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/e2e --ignore-scripts --no-audit \
    --no-fund --loglevel=error
fi
