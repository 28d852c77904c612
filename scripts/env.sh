# Sourced by the other scripts: where the project's tools live, and the environment that
# points worker-build at local binaries instead of its downloads (which need the internet).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# worker-build reads these; see ARCHITECTURE.md, "Toolchain".
export WASM_BINDGEN_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"

export WRANGLER_SEND_METRICS=false
# wrangler and workerd: no update checks, no browser, nothing interactive.
export CI="${CI:-}"
export WRANGLER_LOG_PATH="$ROOT/target/wrangler-logs"

# The pinned worker-build, and the wasm-bindgen-cli matching the wasm-bindgen in Cargo.lock.
WORKER_BUILD_VERSION="0.8.7"
# The admin API's contract tester, installed into target/tools/venv by scripts/setup.
SCHEMATHESIS_VERSION="4.32.5"
# The Standard Webhooks reference library, which verifies the webhook tests' signatures
# (tests/webhooks_verify.py), installed into the same venv.
STANDARDWEBHOOKS_VERSION="1.1.0"
# The deployment checks' tools (scripts/check-deploy): PyPI wheels pinned in
# scripts/ops-requirements.txt, in their own venv; promtool taken from the distribution's
# prometheus package, whose version the distribution fixes (Debian 12: 2.42; CI's Ubuntu
# 24.04: 2.45); any 2.x reads our rules alike. scripts/setup installs both.
OPS_VENV="$ROOT/target/tools/ops-venv"
PROMTOOL_VERSION="2"
export KUBECTL="${KUBECTL:-$OPS_VENV/bin/kubectl}"
export PROMTOOL="${PROMTOOL:-$ROOT/target/tools/bin/promtool}"
wasm_bindgen_version() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock"
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
