#!/usr/bin/env bash
# Scaling out with --shard: N processes on one scaled SQLite fixture against one
# process, in the same run, into (1) Parquet files (decoding: CPU-bound) and, when a
# PostgreSQL admin URL is given, (2) PostgreSQL (PostgresSaver tables, raw values:
# the server's work counts). Figures go to bench/results/shards-*.json.
#
#   bench/shards.sh SQLITE_DB [POSTGRES_ADMIN_URL]
#   SHARDS="1 2 4 8" bench/shards.sh …      # the process counts (default "1 2 4")
#
# SQLITE_DB: e.g. python generate.py --scale 30000 --out /tmp/bench-data --targets sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
db="$(realpath "${1:?SQLITE_DB}")"
admin="${2:-}"
source bench/lib.sh
bin="$(bench_binary)"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
source_flags=(--source sqlite --source-config "{\"connection_string\": \"$db\"}")

echo "SQLite → Parquet (zstd), one shard per process"
python3 bench/shards.py "$bin" "bench/results/shards-parquet-$stamp.json" -- "${source_flags[@]}" \
  --destination parquet --dest-config "{\"output_path\": \"$out_dir/{run}.parquet\", \"compression\": \"zstd\"}"

if [ -n "$admin" ]; then
  base="${admin%/*}"
  for n in ${SHARDS:-1 2 4}; do
    psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS bench_shards_n${n}" -c "CREATE DATABASE bench_shards_n${n}" >/dev/null
  done
  echo "SQLite → PostgreSQL, one shard per process"
  # shards.py names each run n<N>: one fresh database per process count.
  python3 bench/shards.py "$bin" "bench/results/shards-postgresql-$stamp.json" -- "${source_flags[@]}" \
    --destination postgresql --dest-config "{\"connection_string\": \"$base/bench_shards_{run}\"}"
  for n in ${SHARDS:-1 2 4}; do
    psql -X -q -d "$admin" -c "DROP DATABASE IF EXISTS bench_shards_n${n}" >/dev/null
  done
fi
