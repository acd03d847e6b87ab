#!/usr/bin/env bash
# The main job on the bundled sample data (a real LangGraph SqliteSaver database):
# exports it to JSON and to Parquet under ./sample-output/. No server needed.
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
echo
echo "JSON:    sample-output/json/ (manifest.json, threads/*.jsonl)"
echo "Parquet: sample-output/checkpoints.parquet"
