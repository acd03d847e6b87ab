#!/usr/bin/env bash
# The main job on the bundled sample data (a real LangGraph SqliteSaver database):
# exports it to JSON and to Parquet, writes it into an embedded Unified Memory collection
# and searches it, all under ./sample-output/. No server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --sample
if [ ! -x target/debug/ckpt-migrate ]; then
  echo "sample: building ckpt-migrate; the first build compiles ~400 crates (about 15-20 minutes on 2 cores), cargo shows each one"
fi
cargo build -p ckpt-migrate
bin=target/debug/ckpt-migrate
"$bin" --config examples/sample-to-json.yaml
"$bin" --config examples/sample-to-parquet.yaml
# --restart: the collection is upserted again from the start, same points, no duplicates.
"$bin" --config examples/sample-to-unified.yaml --restart
echo
echo 'search "my package arrived damaged" in it:'
"$bin" search "my package arrived damaged" --path sample-output/memory --limit 3
echo
echo "JSON:    sample-output/json/ (manifest.json, threads/*.jsonl)"
echo "Parquet: sample-output/checkpoints.parquet"
echo "Unified Memory (embedded Qdrant): sample-output/memory/checkpoints"
echo "  search it: target/debug/ckpt-migrate search \"your words\" --path sample-output/memory"
