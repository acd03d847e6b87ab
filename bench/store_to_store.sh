#!/usr/bin/env bash
# SQLite → PostgreSQL, ckpt-migrate against the script a LangGraph user writes today
# (bench/langgraph_copy.py: LangGraph's own SqliteSaver.list() → PostgresSaver.put() +
# put_writes()), in the same run, on the same data, into two fresh databases of the
# same server. Wall time, CPU and peak RSS of each; figures go to bench/results/.
#
#   bench/store_to_store.sh SQLITE_DB POSTGRES_ADMIN_URL [BATCH_SIZE]
#
# SQLITE_DB: a scaled fixture, e.g. from the shared fixtures' generator
#   python generate.py --scale 30000 --out /tmp/bench-data --targets sqlite
# POSTGRES_ADMIN_URL: a server where this user may CREATE DATABASE (scripts/test-servers.sh
# starts one: its CKPT_TEST_PG_URL). PYTHON: a Python with the pinned LangGraph savers
# (default: target/test-tools/venv/bin/python, which scripts/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
db="$(realpath "${1:?SQLITE_DB}")"
admin="${2:?POSTGRES_ADMIN_URL}"
batch="${3:-1000}"
python="${PYTHON:-target/test-tools/venv/bin/python}"
if [ -n "${CKPT_MIGRATE_BIN:-}" ]; then
  bin="$(realpath "$CKPT_MIGRATE_BIN")"
else
  cargo build --release --quiet -p ckpt-migrate
  bin="$PWD/target/release/ckpt-migrate"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
base="${admin%/*}"
fresh() { # name → URL of a new empty database
  local name="bench_$1_$$"
  psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
  echo "$base/$name"
}
count() { psql -X -qAt -d "$1" -c "SELECT count(*) FROM checkpoints"; }

ours_url="$(fresh ours)"
echo "ckpt-migrate: SQLite → PostgreSQL ..."
ours=$(cd "$work" && python3 "$OLDPWD/bench/measure.py" -- "$bin" --source sqlite \
  --source-config "{\"connection_string\": \"$db\"}" --destination postgresql \
  --dest-config "{\"connection_string\": \"$ours_url\"}" --batch-size "$batch")
ours_count="$(count "$ours_url")"

theirs_url="$(fresh langgraph)"
echo "LangGraph script (SqliteSaver.list → PostgresSaver.put/put_writes) ..."
theirs=$(python3 bench/measure.py -- "$python" bench/langgraph_copy.py "$db" "$theirs_url")
theirs_count="$(count "$theirs_url")"

out="bench/results/store-to-store-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" "$db" "$batch" "$ours" "$ours_count" "$theirs" "$theirs_count" <<'PY'
import json, os, sys
out, db, batch, ours, ours_n, theirs, theirs_n = sys.argv[1:]
ours, theirs = json.loads(ours), json.loads(theirs)
result = {
    "benchmark": "sqlite-to-postgresql",
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
psql -X -q -d "$admin" -c "DROP DATABASE ${ours_url##*/}" -c "DROP DATABASE ${theirs_url##*/}" >/dev/null
