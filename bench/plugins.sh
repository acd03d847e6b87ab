#!/usr/bin/env bash
# Plugin costs in Rust, Python and JavaScript, in one run on the same data:
#   - per-record overhead of a no-op filter (keeps every record, reads nothing) and of
#     add_metadata (reads and patches the metadata), and of the Rust normalize_timestamps
#     (reads and patches ts), against the same run without
#     plugins, on a scaled SqliteSaver database → JSON;
#   - compile time of each component, cold (empty cache) and from the cache, and the
#     time to instantiate it (from `plugin check --verbose`'s log).
# Figures go to bench/results/plugins-<time>.json and .md.
#
#   bench/plugins.sh [SCALE]          # default: 10000 (checkpoints)
#   ROUNDS=N bench/plugins.sh ...     # rounds of every configuration (default 3)
#
# Guests: scripts/build-guests.py (Python, JS); the Rust ones are embedded (reference
# plugins) or built by the host's build script (keep-prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-10000}"
rounds="${ROUNDS:-3}"
python="${PYTHON:-target/test-tools/venv/bin/python}"
[ -x "$python" ] || { echo "bench: $python is missing: run scripts/setup.sh first" >&2; exit 2; }
source bench/lib.sh
bin="$(bench_binary)"
echo "bench: building the Python and JavaScript guests (cached)" >&2
python3 scripts/build-guests.py >/dev/null
guest() { python3 -c "import json,sys; print(json.load(open('target/plugin-guests/manifest.json'))[sys.argv[1]])" "$1"; }
# The Rust no-op: the keep-prefix test guest the host's build script builds.
keep_prefix="target/wasm-plugins/wasm32-wasip2/release/keep_prefix.wasm"
[ -f "$keep_prefix" ] || { echo "bench: $keep_prefix not found (build the host once)" >&2; exit 2; }
keep_prefix="$PWD/$keep_prefix"

data="target/bench-data/scale-$scale"
db="$PWD/$data/sqlite/checkpoints.db"
if [ ! -f "$db" ]; then
  echo "bench: generating $scale checkpoints with LangGraph into $data (once)" >&2
  "$python" tests/readback/generate.py --scale "$scale" --out "$data" --targets sqlite
fi
records="$(sqlite3 "$db" 'SELECT COUNT(*) FROM checkpoints' 2>/dev/null || "$python" -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from checkpoints').fetchone()[0])" "$db")"

mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$(mktemp -d)"
# The exports go to memory (tmpfs) when there is one: what is measured is the plugins'
# cost, and creating a thousand files on a disk where the last run's were just
# deleted swung the same run's kernel time twofold (ext4). BENCH_OUT=DIR chooses.
out_root="${BENCH_OUT:-}"
if [ -z "$out_root" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then out_root=/dev/shm; fi
out_root="$(mktemp -d "${out_root:-$work}/ckpt-bench.XXXXXX")"
trap 'rm -rf "$work" "$out_root"' EXIT
results="$work/results.jsonl"
cache="$work/cache"

# Each configuration is written once and run once to fill the compile cache; then
# ROUNDS rounds run every configuration in turn, so that a slow spell of the machine
# falls on all of them alike, and the report takes each one's median.
configs=()
prepare() { # name yaml-plugins
  local name="$1" plugins="$2" yaml="$work/$1.yaml"
  printf 'source_type: sqlite\nsource_config: {connection_string: "%s"}\ndestination_type: json\ndestination_config: {output_dir: "%s"}\nmax_errors: 0\n%s' \
    "$db" "$out_root/out-$name" "$plugins" > "$yaml"
  CKPT_MIGRATE_CACHE_DIR="$cache" "$bin" --config "$yaml" --restart >/dev/null 2>&1 || true
  rm -rf "$out_root/out-$name" .ckpt-migrate
  configs+=("$name")
}
measure() { # name round
  local name="$1" r
  r=$(CKPT_MIGRATE_CACHE_DIR="$cache" python3 bench/measure.py -- "$bin" --config "$work/$name.yaml" --restart)
  echo "{\"run\": \"$name\", \"round\": $2, \"result\": $r}" >> "$results"
  rm -rf "$out_root/out-$name" .ckpt-migrate
}

entry() { printf '  - path: "%s"\n    config: %s\n' "$1" "$2"; }
filter() { printf 'filters:\n  plugins:\n    - path: "%s"\n      config: %s\n' "$1" "$2"; }

echo "bench: compiling the plugins once (cache) ..." >&2
prepare none ""
prepare noop_rust "$(filter "$keep_prefix" '{prefix: ""}')"
prepare noop_python "$(filter "$(guest python/gate)" '{prefix: ""}')"
prepare noop_js "$(filter "$(guest js/gate)" '{prefix: ""}')"
prepare add_metadata_rust "transformers: [add_metadata]"
prepare normalize_timestamps_rust "transformers: [normalize_timestamps]"
prepare add_metadata_python "transformers:
$(entry "$(guest python/add_metadata)" '{}')"
prepare add_metadata_js "transformers:
$(entry "$(guest js/add_metadata)" '{}')"
for round in $(seq 1 "$rounds"); do
  for name in "${configs[@]}"; do
    echo "bench: round $round/$rounds: $name ..." >&2
    measure "$name" "$round"
  done
done

# Compile (cold: empty cache; warm: from the cache) and instantiate, per component.
load_times() { # name wasm
  local name="$1" wasm="$2" cold="$work/cold-$1"
  local t0 t1 t2 inst
  t0=$(date +%s.%N)
  CKPT_MIGRATE_CACHE_DIR="$cold" "$bin" plugin check "$wasm" >/dev/null 2>&1
  t1=$(date +%s.%N)
  inst=$(CKPT_MIGRATE_CACHE_DIR="$cold" CKPT_MIGRATE_LOG=debug "$bin" plugin check "$wasm" 2>&1 >/dev/null | grep -o 'instance ready in [0-9.]* ms' | head -1 | grep -o '[0-9.]*' || echo null)
  t2=$(date +%s.%N)
  CKPT_MIGRATE_CACHE_DIR="$cold" "$bin" plugin check "$wasm" >/dev/null 2>&1
  local t3; t3=$(date +%s.%N)
  python3 - "$name" "$wasm" "$t0" "$t1" "$t2" "$t3" "$inst" >> "$results" <<'PY'
import json, os, sys
name, wasm, t0, t1, t2, t3, inst = sys.argv[1:]
print(json.dumps({"load": name, "bytes": os.path.getsize(wasm),
                  "check_cold_s": round(float(t1) - float(t0), 3),
                  "check_cached_s": round(float(t3) - float(t2), 3),
                  "instantiate_ms": None if inst == "null" else float(inst)}))
PY
}
echo "bench: compile and instantiate ..." >&2
load_times add_metadata_rust "$PWD/target/wasm-plugins/wasm32-wasip2/release/add_metadata.wasm"
load_times add_metadata_python "$(guest python/add_metadata)"
load_times add_metadata_js "$(guest js/add_metadata)"

python3 - "$results" "bench/results/plugins-$stamp" "$records" "$out_root" <<'PY'
import json, os, platform, sys
from statistics import median
rows = [json.loads(l) for l in open(sys.argv[1])]
out, records, out_root = sys.argv[2], int(sys.argv[3]), sys.argv[4]
machine = f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}"
# Every configuration's rounds, summed up by their medians (wall and CPU apart).
runs = {}
for r in (r for r in rows if "run" in r):
    runs.setdefault(r["run"], []).append(r["result"])
summary = {}
for name, results in runs.items():
    walls = [r["wall_s"] for r in results]
    summary[name] = {"rounds": len(results), "wall_s": round(median(walls), 3),
                     "wall_min_s": min(walls), "wall_max_s": max(walls),
                     "cpu_s": round(median([r["cpu_s"] for r in results]), 3),
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in results)}
base = summary["none"]
table = [f"{records} checkpoints, SQLite → JSON (written under {os.path.dirname(out_root)}), optimized build; {len(runs['none'])} rounds, every configuration in turn; "
         "medians. Throughput = median wall without plugins ÷ median wall; CPU per record = "
         "(median CPU − median CPU without plugins) ÷ checkpoints.", "",
         "| run | wall (median, range) | CPU (user+sys) | peak RSS | CPU per record | throughput vs no plugin |", "|---|---|---|---|---|---|"]
for name, r in summary.items():
    r["cpu_us_per_record"] = round((r["cpu_s"] - base["cpu_s"]) / records * 1e6, 1)
    r["throughput_vs_none"] = round(base["wall_s"] / r["wall_s"], 2)
    table.append(f"| {name} | {r['wall_s']} s ({r['wall_min_s']}–{r['wall_max_s']}) | {r['cpu_s']} s | {r['peak_rss_mib']} MiB | "
                 f"{r['cpu_us_per_record']} µs | {r['throughput_vs_none']}× |")
table += ["", "| component | size | `plugin check` cold (compile) | from the cache | instantiate |", "|---|---|---|---|---|"]
for r in (r for r in rows if "load" in r):
    inst = "—" if r["instantiate_ms"] is None else f"{r['instantiate_ms']:.1f} ms"
    table.append(f"| {r['load']} | {r['bytes'] / 1e6:.1f} MB | {r['check_cold_s']} s | {r['check_cached_s']} s | {inst} |")
json.dump({"machine": machine, "records": records, "output_dir": os.path.dirname(out_root), "summary": summary, "rows": rows}, open(out + ".json", "w"), indent=1)
open(out + ".md", "w").write(f"Machine: {machine}\n\n" + "\n".join(table) + "\n")
print(f"Machine: {machine}\n\n" + "\n".join(table))
print(f"\nfigures in {out}.json and {out}.md")
PY
