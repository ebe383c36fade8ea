#!/usr/bin/env bash
# Set up and run the platform locally: uv + Python deps, the local stack (lakeFS, built once
# from the Go module proxy), then `dagster dev` on embedded defaults at http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
uv sync --frozen
exec uv run --frozen dfp dev "$@"
