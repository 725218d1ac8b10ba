#!/usr/bin/env bash
# Builds mediarelay (installing the system packages the build needs when they
# are missing) and runs it with the given arguments (embedded defaults if none).
#   ./scripts/run.sh                     # RTMP :1935, HTTP :8080, API 127.0.0.1:9997
#   ./scripts/run.sh --config config/mediarelay.toml
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages "${BUILD_PACKAGES[@]}"
ensure_node
# hls.js for the embedded player page (a declared npm dependency, embedded at build time).
(cd web && npm ci --silent --no-audit --no-fund)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mediarelay-target}"
cargo build --release --locked --bin mediarelay
exec "$CARGO_TARGET_DIR/release/mediarelay" "$@"
