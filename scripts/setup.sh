#!/usr/bin/env bash
# Installs what building and testing ckpt-migrate needs on a fresh Debian machine
# that has the Rust toolchain, Python 3 and apt. Idempotent: installs only what is
# missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing+=("$1"); }

need_pkg ca-certificates
need_pkg pkg-config
# Test servers: PostgreSQL (server + psql to load pg_dump files).
need_pkg postgresql
need_pkg postgresql-client

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: system packages ready"
