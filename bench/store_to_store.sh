#!/usr/bin/env bash
# SQLite → PostgreSQL or → langgraph-redis, ckpt-migrate against the script a LangGraph
# user writes today (bench/langgraph_copy.py: LangGraph's own SqliteSaver.list() →
# PostgresSaver or RedisSaver .put() + put_writes()), in the same run, on the same data,
# on the same server. Wall time, CPU and peak RSS of each; figures go to bench/results/.
#
#   bench/store_to_store.sh SQLITE_DB POSTGRES_ADMIN_URL|REDIS_URL [BATCH_SIZE]
#
# SQLITE_DB: a scaled fixture, e.g. from the shared fixtures' generator
#   python generate.py --scale 30000 --out /tmp/bench-data --targets sqlite
# POSTGRES_ADMIN_URL: a server where this user may CREATE DATABASE (scripts/test-servers.sh
# starts one: its CKPT_TEST_PG_URL); each side writes into a fresh database of it.
# REDIS_URL: an empty server with RedisJSON and RediSearch (scripts/test-servers.sh's
# CKPT_TEST_REDIS_SEARCH_URL when nothing else used it); RediSearch indexes only
# database 0, so the two sides take turns: ckpt-migrate writes, its keys are counted and
# the server is flushed, then the script writes, is counted, and the server is flushed
# again. The bench refuses a server that holds keys.
# PYTHON: a Python with the pinned LangGraph savers (default:
# target/test-tools/venv/bin/python, which scripts/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
db="$(realpath "${1:?SQLITE_DB}")"
admin="${2:?POSTGRES_ADMIN_URL or REDIS_URL}"
batch="${3:-1000}"
python="${PYTHON:-target/test-tools/venv/bin/python}"
source bench/lib.sh
bin="$(bench_binary)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
source_args=(--source sqlite --source-config "{\"connection_string\": \"$db\"}" --batch-size "$batch")
case "$admin" in
  redis://* | rediss://*)
    kind=langgraph-redis
    # redis-py comes with the LangGraph venv (python3 may not have it).
    rcli() { "$python" -c 'import sys, redis; print(redis.Redis.from_url(sys.argv[1]).execute_command(*sys.argv[2:]))' "$admin" "$@"; }
    [ "$(rcli DBSIZE)" = 0 ] || { echo "bench: the Redis server holds keys: give an empty one (the bench flushes it after each side)" >&2; exit 2; }
    ours_url="$admin"; theirs_url="$admin"
    ours_cmd=("$bin" "${source_args[@]}" --destination redis --dest-config "{\"redis_url\": \"$admin\"}")
    count_and_clear() {
      "$python" -c 'import sys, redis; print(sum(1 for _ in redis.Redis.from_url(sys.argv[1]).scan_iter("checkpoint:*", count=1000)))' "$admin"
      bench_redis_flush "$admin" "$python"
    }
    ;;
  *)
    kind=postgresql
    base="${admin%/*}"
    fresh() { # name → URL of a new empty database
      local name="bench_$1_$$"
      psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
      echo "$base/$name"
    }
    ours_url="$(fresh ours)"; theirs_url="$(fresh langgraph)"
    trap 'rm -rf "$work"; psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS ${ours_url##*/}" -c "DROP DATABASE IF EXISTS ${theirs_url##*/}" >/dev/null' EXIT
    ours_cmd=("$bin" "${source_args[@]}" --destination postgresql --dest-config "{\"connection_string\": \"$ours_url\"}")
    count_and_clear() { psql -X -qAt -d "$1" -c "SELECT count(*) FROM checkpoints"; }
    ;;
esac

echo "ckpt-migrate: SQLite → $kind ..."
ours=$(cd "$work" && python3 "$OLDPWD/bench/measure.py" -- "${ours_cmd[@]}")
ours_count="$(count_and_clear "$ours_url")"

echo "LangGraph script (SqliteSaver.list → its $kind saver's put/put_writes) ..."
theirs=$(python3 bench/measure.py -- "$python" bench/langgraph_copy.py "$db" "$theirs_url")
theirs_count="$(count_and_clear "$theirs_url")"

out="bench/results/store-to-store-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" "$kind" "$db" "$batch" "$ours" "$ours_count" "$theirs" "$theirs_count" <<'PY'
import json, os, sys
out, kind, db, batch, ours, ours_n, theirs, theirs_n = sys.argv[1:]
ours, theirs = json.loads(ours), json.loads(theirs)
result = {
    "benchmark": f"sqlite-to-{kind}",
    "source": db, "source_bytes": os.path.getsize(db), "batch_size": int(batch),
    "ckpt_migrate": {**ours, "checkpoints": int(ours_n)},
    "langgraph_script": {**theirs, "checkpoints": int(theirs_n)},
    "speedup": round(theirs["wall_s"] / ours["wall_s"], 1),
}
json.dump(result, open(out, "w"), indent=1)
for name in ("ckpt_migrate", "langgraph_script"):
    r = result[name]
    print(f"{name:17} {r['checkpoints']} checkpoints in {r['wall_s']} s, CPU {r['cpu_percent']} %, peak RSS {r['peak_rss_mib']} MiB")
print(f"speedup: {result['speedup']}x  (figures in {out})")
PY
