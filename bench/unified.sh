#!/usr/bin/env bash
# Throughput into Qdrant, in the same run, on the same data: ckpt-migrate without its
# pipeline (one wait=true upsert at a time), ckpt-migrate as it runs (concurrent
# wait=false upserts, batches overlapping their confirming count), and the script a
# user writes with the Python qdrant-client (`upload_points`, batch 256, gRPC) on
# exactly the points ckpt-migrate wrote (bench/qdrant_upload.py). ckpt-migrate's time
# includes reading, decoding, payloads and embedding; the script's is the upload only.
# Figures go to bench/results/.
#
#   QDRANT_URL=http://127.0.0.1:6333 bench/unified.sh [SQLITE_DB] [BATCH_SIZE]
#
# SQLITE_DB defaults to the bundled fixture (271 checkpoints); for a real measurement
# generate a large one with the shared fixtures' generator:
#   python generate.py --scale 20000 --out /tmp/bench-data --targets sqlite
set -euo pipefail
cd "$(dirname "$0")/.."
: "${QDRANT_URL:?set QDRANT_URL to a Qdrant server (REST URL, e.g. http://127.0.0.1:6333)}"
db="$(realpath "${1:-tests/fixtures/sqlite/checkpoints.db}")"
batch="${2:-500}"
# Both runs cut a batch into requests of this size; the pipeline sends them concurrently.
request_bytes="${REQUEST_BYTES:-2000000}"
# CKPT_MIGRATE_BIN: an already built binary (both runs use the same one either way).
source bench/lib.sh
bin="$(bench_binary)"
tools=target/bench-tools/venv
if [ ! -x "$tools/bin/python" ] || ! "$tools/bin/python" -c "import qdrant_client" 2>/dev/null; then
  echo "bench: installing qdrant-client into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q qdrant-client==1.20.0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"; curl -s -X DELETE "$QDRANT_URL/collections/bench_baseline_$$" >/dev/null; curl -s -X DELETE "$QDRANT_URL/collections/bench_pipeline_$$" >/dev/null' EXIT
mkdir -p bench/results

run() { # name pipeline
  local collection="bench_$1_$$"
  cat > "$work/$1.yaml" <<YAML
source_type: sqlite
source_config: { connection_string: "$db" }
destination_type: unified
destination_config: { qdrant_url: "$QDRANT_URL", collection: $collection, pipeline: $2, max_request_bytes: $request_bytes, embedding: { provider: hash, dimensions: 256 } }
batch_size: $batch
state_dir: $work/state-$1
YAML
  local start end
  start=$(date +%s.%N)
  (cd "$work" && "$bin" --config "$work/$1.yaml" 2> "$work/$1.log")
  end=$(date +%s.%N)
  python3 - "$work/$1.log" "$start" "$end" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
written = int(re.search(r"read \d+  written (\d+)", log).group(1))
secs = float(sys.argv[3]) - float(sys.argv[2])
print(f"{written} {secs:.3f} {written / secs:.1f}")
PY
}

read -r n_base t_base r_base < <(run baseline false)
read -r n_pipe t_pipe r_pipe < <(run pipeline true)
python_result=$("$tools/bin/python" bench/qdrant_upload.py "$QDRANT_URL" "bench_pipeline_$$" "bench_python_$$")
read -r n_py t_py r_py < <(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['points'], r['seconds'], r['points_per_second'])" "$python_result")
ratio=$(python3 -c "print(f'{$r_pipe / $r_base:.2f}')")
vs_python=$(python3 -c "print(f'{$r_pipe / $r_py:.2f}')")
out="bench/results/unified-$(date -u +%Y%m%dT%H%M%SZ).json"
cat > "$out" <<JSON
{"benchmark": "unified-upsert", "qdrant_url": "$QDRANT_URL", "source": "$db", "batch_size": $batch, "request_bytes": $request_bytes, "binary": "$bin",
 "machine": "$(nproc) cores, $(uname -m), $(uname -r)",
 "baseline": {"points": $n_base, "seconds": $t_base, "points_per_second": $r_base},
 "pipeline": {"points": $n_pipe, "seconds": $t_pipe, "points_per_second": $r_pipe},
 "python_qdrant_client_upload_points_256": {"points": $n_py, "seconds": $t_py, "points_per_second": $r_py},
 "speedup": $ratio, "pipeline_vs_python": $vs_python}
JSON
echo "baseline (sequential, wait=true): $n_base points in ${t_base}s = $r_base points/s"
echo "pipeline (3 streams, wait=false, overlapping confirms): $n_pipe points in ${t_pipe}s = $r_pipe points/s"
echo "Python qdrant-client upload_points(batch 256): $n_py points in ${t_py}s = $r_py points/s"
echo "pipeline vs baseline: ${ratio}x   pipeline vs Python: ${vs_python}x   (figures in $out)"
