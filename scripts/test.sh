#!/usr/bin/env bash
# Installs the test peers (ffmpeg, Chromium, hls.js) when they are
# missing, then runs every test: formatting, clippy, unit and end-to-end tests.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
ensure_node
(cd web && npm ci --silent --no-audit --no-fund)
(cd tests/browser && npm ci --silent --no-audit --no-fund)
# openapi-spec-validator checks the API's OpenAPI document (tests/openapi.rs).
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
  python3 -m pip install --user --quiet openapi-spec-validator ||
    python3 -m pip install --user --quiet --break-system-packages openapi-spec-validator
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# Licences, banned crates and sources of every dependency (deny.toml).
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install --locked cargo-deny
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mediarelay-target}"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo deny --log-level error check licenses bans sources
cargo nextest run --locked --profile ci
