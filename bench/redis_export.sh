#!/usr/bin/env bash
# langgraph-redis (RedisSaver's RedisJSON documents) → JSON and → Parquet, ckpt-migrate
# against the script a LangGraph user writes today (bench/langgraph_export.py with
# LangGraph's own RedisSaver.list(), thread by thread → JSON lines), in the same run,
# on the same data and server. Wall time, CPU (user+sys) and peak RSS of this process,
# and the server's CPU over the run; figures go to
# bench/results/redis-export-<time>.json and .md.
#
#   bench/redis_export.sh REDIS_URL [SCALE ...]   # default: 30000
#
# REDIS_URL: an EMPTY server on this machine with RedisJSON and RediSearch, which the
# bench fills and empties again (its indexes dropped, then FLUSHALL) for each scale: scripts/test-servers.sh
# starts one (its CKPT_TEST_REDIS_SEARCH_URL), but start a server of its own for the
# bench (the tests' keys and indexes would be flushed, and 100 000 documents slow the
# tests' searches down). Each scale's SqliteSaver database (target/bench-data/scale-N/,
# made once, as for bench/run.sh) is copied in by ckpt-migrate (a copy the read-back
# tests hold exact against LangGraph's own RedisSaver).
# PYTHON: a Python with the pinned LangGraph savers (default:
# target/test-tools/venv/bin/python, which scripts/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
url="${1:?REDIS_URL}"
shift
scales=("${@:-30000}")
python="${PYTHON:-target/test-tools/venv/bin/python}"
[ -x "$python" ] || { echo "bench: $python is missing: run scripts/setup.sh first" >&2; exit 2; }
source bench/lib.sh
# redis-py comes with the LangGraph venv (python3 may not have it).
rcli() { "$python" -c 'import sys, redis; print(redis.Redis.from_url(sys.argv[1]).execute_command(*sys.argv[2:]))' "$url" "$@"; }
flush() { bench_redis_flush "$url" "$python"; }
[ "$(rcli DBSIZE)" = 0 ] || { echo "bench: the Redis server holds keys: give an empty one (the bench flushes it)" >&2; exit 2; }
bin="$(bench_binary)"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
trap 'rm -rf "$work"; flush || true' EXIT
results="$work/results.jsonl"

for scale in "${scales[@]}"; do
  db="$(bench_sqlite_data "$scale" "$python")"
  echo "bench: scale $scale: copying the SqliteSaver database into langgraph-redis" >&2
  "$bin" --source sqlite --source-config "{\"connection_string\": \"$db\"}" \
    --destination redis --dest-config "{\"redis_url\": \"$url\"}" >&2
  bench_server_exports "$scale" "$url" --source redis --source-config "{\"redis_url\": \"$url\"}"
  flush
done

python3 bench/results_table.py server-export "$results" "bench/results/redis-export-$stamp"
