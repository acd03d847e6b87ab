#!/usr/bin/env bash
# SQLite → a Unified Memory collection with no server, in one run on the same data:
# ckpt-migrate's embedded destination (Qdrant's engine in the process; hash embeddings)
# and the script a LangGraph user writes today (bench/langgraph_to_qdrant_local.py:
# LangGraph's SqliteSaver, qdrant-client's local mode). Wall time, CPU, peak RSS, peak
# anonymous memory (RSS without the collection's mapped files) and the ratio go to
# bench/results/unified-embedded-<time>.json and .md.
#
#   bench/unified_embedded.sh [SCALE ...]        # default: 10000 (checkpoints)
#   BASELINES=0 bench/unified_embedded.sh 100000 1000000   # ckpt-migrate's runs only
#
# Collections are written under $TMPDIR (a disk by default: the engine flushes to it).
# Data: target/bench-data/scale-N/, as bench/run.sh makes it. The baseline's Python
# (LangGraph at the tests' pins plus qdrant-client) lives in
# target/bench-tools/qdrant-local.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("${@:-10000}")
python="${PYTHON:-target/test-tools/venv/bin/python}"
[ -x "$python" ] || { echo "bench: $python is missing: run scripts/setup.sh first" >&2; exit 2; }
baselines="${BASELINES:-1}"
venv=target/bench-tools/qdrant-local
if [ "$baselines" = 1 ] && ! "$venv/bin/python" -c "import qdrant_client, langgraph.checkpoint.sqlite" 2>/dev/null; then
  echo "bench: installing LangGraph and qdrant-client into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    -r tests/readback/requirements.txt qdrant-client==1.20.0
fi
source bench/lib.sh
bin="$(bench_binary)"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"

measure() { # name scale -- command...
  # Run in $work: ckpt-migrate keeps its resume state in the current directory.
  (cd "$work" && bench_measure "$results" "$db" "$2" "$1" "${@:3}")
  rm -rf "${work:?}/collection" "$work/.ckpt-migrate"
}

for scale in "${scales[@]}"; do
  db="$(bench_sqlite_data "$scale" "$python")"
  measure ckpt_migrate_to_embedded "$scale" -- "$bin" --source sqlite \
    --source-config "{\"connection_string\": \"$db\"}" --destination unified \
    --dest-config "{\"path\": \"$work/collection\", \"embedding_model\": \"hash\"}"
  if [ "$baselines" = 1 ]; then
    # The fixture's own pydantic models, so LangGraph rebuilds them as it would in the
    # application that wrote them.
    measure langgraph_script_to_qdrant_local "$scale" -- env PYTHONPATH="$PWD/tests/readback:$PWD/bench" \
      "$PWD/$venv/bin/python" "$PWD/bench/langgraph_to_qdrant_local.py" "$db" "$work/collection"
  fi
done

python3 - "$results" "bench/results/unified-embedded-$stamp" <<'PY'
import sys
sys.path.insert(0, "bench")
from results_table import by_scale, load, save
rows = load(sys.argv[1])
lines = []
for scale, runs in by_scale(rows):
    script = runs.get("langgraph_script_to_qdrant_local", {}).get("result", {}).get("wall_s")
    for name, row in runs.items():
        r = row["result"]
        ratio = f"{script / r['wall_s']:.1f}×" if script and r["exit"] == 0 else "—"
        failed = "" if r["exit"] == 0 else f" (exit {r['exit']})"
        lines.append(f"| {scale} | {name}{failed} | {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s | "
                     f"{r['cpu_percent']:.0f} % | {r['peak_rss_mib']:.1f} MiB | "
                     f"{r['peak_anon_mib']:.1f} MiB | {ratio} |")
save(sys.argv[2], rows, ["scale", "run", "wall", "CPU (user+sys)", "CPU %", "peak RSS",
                         "peak anonymous", "script ÷ this"], lines)
PY
