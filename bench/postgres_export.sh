#!/usr/bin/env bash
# PostgreSQL (PostgresSaver's tables) → JSON and → Parquet, ckpt-migrate against the
# script a LangGraph user writes today (bench/langgraph_export.py with LangGraph's own
# PostgresSaver.list() → JSON lines), in the same run, on the same data and server.
# Wall time, CPU (user+sys) and peak RSS of this process, and the server's CPU over
# the run (PostgreSQL does part of the work: JSONB to text, the joins); figures go to
# bench/results/postgres-export-<time>.json and .md.
#
#   bench/postgres_export.sh POSTGRES_ADMIN_URL [SCALE ...]   # default: 30000
#
# POSTGRES_ADMIN_URL: a server on this machine where this user may CREATE DATABASE
# (scripts/test-servers.sh starts one: its CKPT_TEST_PG_URL). Each scale's SqliteSaver
# database (target/bench-data/scale-N/, made once, as for bench/run.sh) is copied into
# a fresh database by ckpt-migrate (a copy the read-back tests hold exact against
# LangGraph's own PostgresSaver), which is dropped at the end.
# PYTHON: a Python with the pinned LangGraph savers (default:
# target/test-tools/venv/bin/python, which scripts/setup.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
admin="${1:?POSTGRES_ADMIN_URL}"
shift
scales=("${@:-30000}")
python="${PYTHON:-target/test-tools/venv/bin/python}"
[ -x "$python" ] || { echo "bench: $python is missing: run scripts/setup.sh first" >&2; exit 2; }
source bench/lib.sh
bin="$(bench_binary)"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
databases=()
cleanup() {
  rm -rf "$work"
  for name in "${databases[@]}"; do
    psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS $name" >/dev/null || true
  done
}
trap cleanup EXIT
results="$work/results.jsonl"

for scale in "${scales[@]}"; do
  db="$(bench_sqlite_data "$scale" "$python")"
  name="bench_pg_export_${scale}_$$"
  psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
  databases+=("$name")
  url="${admin%/*}/$name"
  echo "bench: scale $scale: copying the SqliteSaver database into PostgreSQL ($name)" >&2
  "$bin" --source sqlite --source-config "{\"connection_string\": \"$db\"}" \
    --destination postgresql --dest-config "{\"connection_string\": \"$url\"}" >&2
  psql -X -q -d "$url" -c "VACUUM ANALYZE" >/dev/null
  bench_server_exports "$scale" "$url" --source postgresql --source-config "{\"connection_string\": \"$url\"}"
done

python3 bench/results_table.py server-export "$results" "bench/results/postgres-export-$stamp"
