#!/usr/bin/env bash
# CI entry point (also the newcomer's "set up and run the tests" command).
# Installs everything the tests need on a fresh machine of this kind, then runs the test
# command that README.md shows. Idempotent: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

# Slow-to-build artifacts (the lakeFS binary) are cached outside the clone and reused.
export DFP_CACHE_DIR="${DFP_CACHE_DIR:-$HOME/.cache/dfp}"
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

step "Debian packages"
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)  # Feast's online store (tests start their own)
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)  # Spark; javac builds dfp's Iceberg FileIO
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)  # `config` validates docker-compose.yaml
# Monitoring (`dfp stack` services; promtool/amtool check and unit-test deploy/monitoring/).
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-pushgateway ] || missing+=(prometheus-pushgateway)
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
[ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "Go toolchain (for the one-time lakeFS build)"
# lakeFS's go.mod asks for Go 1.26. Go >= 1.21 fetches that toolchain from the module proxy by
# itself (GOTOOLCHAIN=auto); with no Go (or an older one), fetch the same toolchain module.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
go_minor=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p' || true)
if [ "${go_minor:-0}" -lt 21 ] && [ ! -x "$DFP_CACHE_DIR/lakefs-v1.84.0-ui/lakefs" ]; then
  toolchain="$DFP_CACHE_DIR/go-toolchain"
  if [ ! -x "$toolchain/bin/go" ]; then
    version=v0.0.1-go1.26.4.linux-amd64
    proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
    mkdir -p "$DFP_CACHE_DIR"
    python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
      "$proxy/golang.org/toolchain/@v/$version.zip" "$DFP_CACHE_DIR/go.zip"
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
      "$DFP_CACHE_DIR/go.zip" "$DFP_CACHE_DIR/go-unpacked"
    mv "$DFP_CACHE_DIR/go-unpacked/golang.org/toolchain@$version" "$toolchain"
    chmod -R u+x "$toolchain/bin" "$toolchain/pkg/tool"
    rm -rf "$DFP_CACHE_DIR/go.zip" "$DFP_CACHE_DIR/go-unpacked"
  fi
  export PATH="$toolchain/bin:$PATH" GOTOOLCHAIN=local
fi

step "uv and Python dependencies (uv.lock)"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install -q uv
fi
uv sync --frozen

step "browser test deps (Debian chromium, playwright-core from npm)"
bash scripts/install-browser-test-deps.sh

step "lakeFS build with its web UI (npm + vite from the module's webui/; cached in $DFP_CACHE_DIR)"
uv run --frozen dfp stack build

step "Spark and CDC (Kafka, Connect, Debezium) jars from Maven Central + dfp's branch FileIO (cached in $DFP_CACHE_DIR/jars)"
uv run --frozen dfp stack jars --cdc

step "dbt manifest (loading the Dagster definitions needs it; never parsed at import)"
uv run --frozen dfp dbt prepare

