# Shared by the bench scripts (sourced, run from the repository's root).

# Prints the path of the binary to measure: $CKPT_MIGRATE_BIN when set (an already
# built one), else the `dist` build, the one users run (whole-program optimized; built
# first if needed, with cargo's progress on stderr).
bench_binary() {
  if [ -n "${CKPT_MIGRATE_BIN:-}" ]; then
    realpath "$CKPT_MIGRATE_BIN"
  else
    echo "bench: building ckpt-migrate with the dist profile (from scratch about 20 minutes on 2 cores)" >&2
    cargo build --profile dist -p ckpt-migrate >&2 || return 1
    echo "$PWD/target/dist/ckpt-migrate"
  fi
}

# The repository's root (the scripts run from it and source this file there).
bench_root="$PWD"

# Prints the path of a SqliteSaver database of SCALE checkpoints under
# target/bench-data/scale-SCALE/, made once by the fixtures' generator (real LangGraph
# graphs and savers) run by PYTHON.
bench_sqlite_data() { # scale python
  local data="$bench_root/target/bench-data/scale-$1"
  if [ ! -f "$data/sqlite/checkpoints.db" ]; then
    echo "bench: generating $1 checkpoints with LangGraph into $data (once)" >&2
    "$2" "$bench_root/tests/readback/generate.py" --scale "$1" --out "$data" --targets sqlite >&2
  fi
  echo "$data/sqlite/checkpoints.db"
}

# The machine's busy CPU time (user+sys of every process, seconds).
bench_busy_s() { awk '/^cpu / {print ($2 + $3 + $4) / 100; exit}' /proc/stat; }

# Runs a command under bench/measure.py and appends its figures to RESULTS (JSON lines)
# as the run NAME at SCALE, with the machine's busy CPU time over the run (a local
# server's share is that minus the command's). DB, when not empty, is a database file
# read once before the run.
bench_measure() { # results db scale name -- command...
  local results="$1" db="$2" scale="$3" name="$4"; shift 5
  echo "bench: scale $scale: $name ..." >&2
  # The runs before wrote gigabytes the kernel has yet to write back: written now,
  # not during this run (its syncs would wait behind them).
  sync
  # And reads the database once more: the kernel may have dropped cold pages of it
  # since (seen on a VM whose memory is reclaimed in the background), and the run
  # that found them gone would pay for the disk alone.
  [ -z "$db" ] || cat "$db" > /dev/null
  local r before after
  before="$(bench_busy_s)"
  r=$(python3 "$bench_root/bench/measure.py" -- "$@")
  after="$(bench_busy_s)"
  echo "{\"scale\": $scale, \"run\": \"$name\", \"machine_busy_s\": $(python3 -c "print(round($after - $before, 2))"), \"result\": $r}" >> "$results"
}

# A run whose source is a server on this machine (bench/postgres_export.sh,
# bench/redis_export.sh): name scale -- command..., into the caller's $results; the
# outputs it wrote under the caller's $out are removed after it.
bench_server_measure() {
  # No database file to warm: the source is the server's.
  bench_measure "$results" "" "$2" "$1" "${@:3}"
  rm -rf "${out:?}"/*
}

# The runs of a server-export bench at one scale: ckpt-migrate from the source given by
# SRC_ARGS to JSON and to Parquet, and the LangGraph script reading URL, each with the
# server's CPU beside ours (uses $bin, $python, $work and $results).
bench_server_exports() { # scale url src-args...
  local scale="$1" url="$2"
  shift 2
  out="$work/out"; mkdir -p "$out"
  bench_server_measure ckpt_migrate_to_json "$scale" -- "$bin" "$@" --destination json \
    --dest-config "{\"output_dir\": \"$out/json\"}"
  bench_server_measure ckpt_migrate_to_parquet "$scale" -- "$bin" "$@" --destination parquet \
    --dest-config "{\"output_path\": \"$out/ours.parquet\", \"compression\": \"zstd\"}"
  bench_server_measure langgraph_script_to_json "$scale" -- "$python" bench/langgraph_export.py "$url" "$out/langgraph.jsonl"
}

# Empties the Redis server at URL (with PYTHON's redis-py): its search indexes dropped
# first, then its keys. valkey 9.1 with the RediSearch 2.10 module hung in FLUSHALL
# SYNC (every thread waiting on a lock) while the indexes were still there, and
# crashed in FLUSHALL ASYNC.
bench_redis_flush() { # url python
  "$2" -c 'import sys, redis
r = redis.Redis.from_url(sys.argv[1])
for index in r.execute_command("FT._LIST"):
    r.execute_command("FT.DROPINDEX", index)
r.execute_command("FLUSHALL", "SYNC")' "$1"
}
