#!/usr/bin/env bash
# Runs every test of the repository, in order, and stops at the first failure:
#   1. the Rust workspace (cargo test --workspace --locked)
#   2. the conclave binary the other clients' tests start (cargo build -p conclave-cli)
#   3. the TypeScript client: unit tests, shared vectors, real-host integration, the page bundle
#   4. the party's page in Debian's chromium (installed with apt when missing and run as root;
#      CONCLAVE_SKIP_BROWSER=1 skips it, loudly)
#   5. the Python client, when clients/python is there
# Usage: scripts/test-all.sh   (from anywhere; it works from the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "cargo test --workspace --locked"
cargo test --workspace --locked

step "cargo build -p conclave-cli --locked (the binary the client tests start)"
cargo build -p conclave-cli --locked
export CONCLAVE_BIN="$root/target/debug/conclave"

step "TypeScript client: npm ci && npm test"
(cd clients/typescript && npm ci --no-audit --no-fund && npm test)

step "TypeScript client: the party's page in chromium"
if [ "${CONCLAVE_SKIP_BROWSER:-}" = "1" ]; then
  echo "SKIPPED: CONCLAVE_SKIP_BROWSER=1, the browser tests did not run" >&2
else
  chromium="${CONCLAVE_CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ] && [ "$(id -u)" = "0" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  fi
  if [ ! -x "$chromium" ]; then
    echo "FAILED: the browser tests need chromium at $chromium: install it (apt-get install chromium, as root)," >&2
    echo "        point CONCLAVE_CHROMIUM at one, or set CONCLAVE_SKIP_BROWSER=1 to skip them" >&2
    exit 1
  fi
  (cd clients/typescript && npm run test:browser)
fi

# The Python client (clients/python) adds its tests here: its run-tests.sh runs them all.
if [ -d clients/python ]; then
  step "Python client: clients/python/run-tests.sh"
  if [ -f clients/python/run-tests.sh ]; then
    bash clients/python/run-tests.sh
  else
    echo "NOTE: clients/python has no run-tests.sh yet; no Python tests ran" >&2
  fi
fi

step "all tests passed"
