#!/usr/bin/env python3
"""N processes, one shard each (`--shard i/N`), against one process, on the same data.

    python bench/shards.py BIN OUT_JSON -- SOURCE/DESTINATION FLAGS...

Runs the flags once per N in SHARDS (env, default "1 2 4"), all N processes at once,
with a fresh destination each time (`{run}` in the flags is replaced by a new name per
run). Prints and writes: wall time of the whole group, CPU seconds and CPU % (of one
core), peak RSS of the largest process, speedup over N=1 and efficiency (speedup / N).
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def run_group(binary: str, flags: list[str], count: int, tag: str) -> dict:
    flags = [f.replace("{run}", tag) for f in flags]
    with tempfile.TemporaryDirectory() as work:
        start = time.monotonic()
        children = []
        for index in range(count):
            log = open(os.path.join(work, f"{index}.log"), "wb")
            args = [binary, *flags] + (["--shard", f"{index}/{count}"] if count > 1 else [])
            children.append((subprocess.Popen(args, cwd=work, stdout=subprocess.DEVNULL, stderr=log), log))
        cpu = 0.0
        peak = 0
        failed = []
        for child, log in children:
            _, status, usage = os.wait4(child.pid, 0)
            log.close()
            cpu += usage.ru_utime + usage.ru_stime
            peak = max(peak, usage.ru_maxrss)
            if status != 0:
                failed.append(open(log.name, "rb").read()[-2000:].decode(errors="replace"))
        wall = time.monotonic() - start
    if failed:
        sys.exit("a shard failed:\n" + "\n".join(failed))
    return {
        "processes": count,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / wall, 1),
        "peak_rss_mib_per_process": round(peak / 1024, 1),
    }


def main() -> None:
    binary, out = sys.argv[1], sys.argv[2]
    flags = sys.argv[sys.argv.index("--") + 1 :]
    counts = [int(n) for n in os.environ.get("SHARDS", "1 2 4").split()]
    runs = []
    for n in counts:
        print(f"{n} process(es) ...", flush=True)
        runs.append(run_group(binary, flags, n, f"n{n}"))
    base = runs[0]["wall_s"]
    for r in runs:
        r["speedup"] = round(base / r["wall_s"], 2)
        r["efficiency"] = round(r["speedup"] / r["processes"] * counts[0], 2)
    result = {"benchmark": "shards", "cores": os.cpu_count(), "flags": flags, "runs": runs}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    for r in runs:
        print(
            f"N={r['processes']}: {r['wall_s']} s wall, CPU {r['cpu_percent']} %, "
            f"peak {r['peak_rss_mib_per_process']} MiB/process, speedup {r['speedup']}x, "
            f"efficiency {r['efficiency']}"
        )
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
