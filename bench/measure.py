#!/usr/bin/env python3
"""Runs a command and prints one JSON object: wall seconds, CPU seconds (user+sys),
CPU % of one core, peak RSS in MiB (of the largest child), exit code.

    python measure.py -- CMD ARGS...
"""

import json
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    with tempfile.TemporaryFile() as log:
        start = time.monotonic()
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=log).returncode
        wall = time.monotonic() - start
        if code != 0:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / wall, 1) if wall else 0,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit": code,
    }))


if __name__ == "__main__":
    main()
