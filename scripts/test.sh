#!/usr/bin/env bash
# Runs every test: installs what is missing, starts private PostgreSQL (and later
# Redis) servers on loopback, runs the whole workspace's tests, stops the servers.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

servers="$(mktemp -d /tmp/ckpt-test-servers.XXXXXX)"
chmod 755 "$servers"
trap 'scripts/test-servers.sh stop "$servers"; rm -rf "$servers"' EXIT
eval "$(scripts/test-servers.sh start "$servers")"

mkdir -p target
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
set +e
cargo test --workspace --locked "$@" 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e

# One summary line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "\nsummary: %d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.log
if [ -z "${QDRANT_URL:-}" ]; then
  echo "qdrant: the tests that need a real Qdrant server were skipped (QDRANT_URL is not set)"
fi
exit "$status"
