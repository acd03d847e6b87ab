#!/usr/bin/env python3
"""Runs a command and prints one JSON object: wall seconds, CPU seconds (user+sys),
CPU % of one core, peak RSS in MiB (of the largest child), peak anonymous memory in
MiB (the command's own process, sampled every 50 ms: RSS without the files it maps),
exit code.

    python measure.py -- CMD ARGS...
"""

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time


def anonymous_kib(pid: int) -> int:
    """The process's anonymous memory now (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    peak_anon = 0
    with tempfile.TemporaryFile() as log:
        start = time.monotonic()
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_anon
            while not done.wait(0.05):
                peak_anon = max(peak_anon, anonymous_kib(child.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        code = child.wait()
        wall = time.monotonic() - start
        done.set()
        sampler.join()
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
        "peak_anon_mib": round(peak_anon / 1024, 1),
        "exit": code,
    }))


if __name__ == "__main__":
    main()
