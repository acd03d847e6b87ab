#!/usr/bin/env bash
# The main job on the bundled sample data (a real LangGraph SqliteSaver database):
# exports it to JSON and to Parquet under ./sample-output/. No server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet -p ckpt-migrate
bin=target/debug/ckpt-migrate
"$bin" --config examples/sample-to-json.yaml
"$bin" --config examples/sample-to-parquet.yaml
echo
echo "JSON:    sample-output/json/ (manifest.json, threads/*.jsonl)"
echo "Parquet: sample-output/checkpoints.parquet"
