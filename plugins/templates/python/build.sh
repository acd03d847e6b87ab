#!/usr/bin/env sh
# Builds {{name}}.wasm from app.py (needs componentize-py: pip install -r requirements.txt).
set -e
cd "$(dirname "$0")"
componentize-py -d wit -w {{world}} componentize app -o {{name}}.wasm
echo "built {{name}}.wasm"
