#!/usr/bin/env bash
# SQLite → Parquet and → JSON on scaled SqliteSaver databases, in one run on the same
# data: DuckDB's raw copy (no decoding: the floor), the script a LangGraph user writes
# today (bench/langgraph_export.py), and ckpt-migrate (→ Parquet, → JSON, and → SQLite,
# the raw mode store copies use). Wall time, CPU (user+sys), peak RSS and ratios go to
# bench/results/run-<time>.json and .md.
#
#   bench/run.sh [SCALE ...]          # default: 30000 (checkpoints)
#   BASELINES=0 bench/run.sh 10000 1000000   # ckpt-migrate's runs only (memory at scale:
#                                            # the LangGraph script takes 15 min at 1M)
#
# Data: target/bench-data/scale-N/, made once by tests/readback/generate.py (real
# LangGraph graphs and savers, in the test venv that scripts/setup.sh installs).
# DuckDB: PyPI duckdb + duckdb-extension-sqlite, pinned, in target/bench-tools/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("${@:-30000}")
python="${PYTHON:-target/test-tools/venv/bin/python}"
[ -x "$python" ] || { echo "bench: $python is missing: run scripts/setup.sh first" >&2; exit 2; }

baselines="${BASELINES:-1}"
tools=target/bench-tools/venv
if [ "$baselines" = 1 ] && [ ! -x "$tools/bin/python" ] || ! "$tools/bin/python" -c "import duckdb, duckdb_extension_sqlite" 2>/dev/null; then
  echo "bench: installing duckdb into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q duckdb==1.5.5 duckdb-extension-sqlite==1.5.5
fi
source bench/lib.sh
bin="$(bench_binary)"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"

measure() { # name scale -- command...
  bench_measure "$results" "$db" "$2" "$1" "${@:3}"
  # On tmpfs the outputs are memory: kept, they would push each later run onto memory
  # the machine has not touched yet, which a VM's host fills in page by page (the
  # 100 000 runs took 2–4× as long at the end of a run than alone). Disk outputs stay
  # until the end (below).
  if [ "$(stat -f -c %T "$work")" = tmpfs ]; then
    rm -rf "${out:?}"/*
    mkdir -p "$out/duckdb"
  fi
}

for scale in "${scales[@]}"; do
  db="$(bench_sqlite_data "$scale" "$python")"
  src=(--source sqlite --source-config "{\"connection_string\": \"$db\"}")
  out="$work/$scale"; mkdir -p "$out/duckdb"
  if [ "$baselines" = 1 ]; then
    measure duckdb_raw_copy_to_parquet "$scale" -- "$tools/bin/python" bench/duckdb_copy.py "$db" "$out/duckdb"
  fi
  measure ckpt_migrate_to_parquet "$scale" -- "$bin" "${src[@]}" --destination parquet \
    --dest-config "{\"output_path\": \"$out/ours.parquet\", \"compression\": \"zstd\"}"
  measure ckpt_migrate_to_json "$scale" -- "$bin" "${src[@]}" --destination json \
    --dest-config "{\"output_dir\": \"$out/ours-json\"}"
  # Raw mode: the same exports without the view (nothing decoded), as DuckDB copies.
  measure ckpt_migrate_raw_to_parquet "$scale" -- "$bin" "${src[@]}" --destination parquet \
    --dest-config "{\"output_path\": \"$out/raw.parquet\", \"compression\": \"zstd\", \"view\": false}"
  measure ckpt_migrate_raw_to_json "$scale" -- "$bin" "${src[@]}" --destination json \
    --dest-config "{\"output_dir\": \"$out/raw-json\", \"view\": false}"
  measure ckpt_migrate_raw_to_sqlite "$scale" -- "$bin" "${src[@]}" --destination sqlite \
    --dest-config "{\"connection_string\": \"$out/copy.db\"}"
  if [ "$baselines" = 1 ]; then
    measure langgraph_script_to_json "$scale" -- "$python" bench/langgraph_export.py "$db" "$out/langgraph.jsonl"
  fi
  # Disk outputs are removed at the end (the trap), not here: on an ext4 without a journal
  # the kernel skips inodes freed in the last minutes when it creates files, so the
  # next scale's JSON runs would pay for this scale's deletes. Leave a few minutes
  # between runs of this script for the same reason.
done

python3 - "$results" "bench/results/run-$stamp" <<'PY'
import sys
sys.path.insert(0, "bench")
from results_table import by_scale, load, save
rows = load(sys.argv[1])
lines = []
for scale, runs in by_scale(rows):
    # Without the baselines (BASELINES=0) the ratios are left out.
    duck = runs.get("duckdb_raw_copy_to_parquet", {}).get("result", {}).get("wall_s")
    script = runs.get("langgraph_script_to_json", {}).get("result", {}).get("wall_s")
    for name, row in runs.items():
        r = row["result"]
        vs_duckdb, speedup = "—", "—"
        if duck:
            r["vs_duckdb"] = round(r["wall_s"] / duck, 2)
            vs_duckdb = f"{r['vs_duckdb']}×"
        if script:
            r["langgraph_script_speedup"] = round(script / r["wall_s"], 1)
            speedup = f"{r['langgraph_script_speedup']}×"
        lines.append(f"| {scale} | {name} | {r['wall_s']} s | {r['cpu_s']} s | {r['cpu_percent']} % | "
                     f"{r['peak_rss_mib']} MiB | {vs_duckdb} | {speedup} |")
save(sys.argv[2], rows, ["scale", "run", "wall", "CPU (user+sys)", "CPU %", "peak RSS",
                         "× DuckDB wall", "LangGraph script ÷ this"], lines)
PY
