"""The figures of one bench run, shared by the bench scripts: the measured runs
(JSON lines, one per `bench_measure` of bench/lib.sh) by scale, and the run written
to bench/results/ as JSON and as a Markdown table that names the machine."""

import json
import os
import platform


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def by_scale(rows: list[dict]):
    """(scale, {run name: row}) in increasing scale, runs in the order they ran."""
    for scale in sorted({r["scale"] for r in rows}):
        yield scale, {r["run"]: r for r in rows if r["scale"] == scale}


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}"


def save(out: str, rows: list[dict], header: list[str], lines: list[str]) -> None:
    """Writes OUT.json (the machine and every row) and OUT.md (the table), and prints
    the table."""
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *lines]
    json.dump({"machine": machine(), "runs": rows}, open(out + ".json", "w"), indent=1)
    open(out + ".md", "w").write(f"Machine: {machine()}\n\n" + "\n".join(table) + "\n")
    print(f"Machine: {machine()}\n")
    print("\n".join(table))
    print(f"\nbench: figures in {out}.json and {out}.md")


def save_server_export(results: str, out: str) -> None:
    """The table of an export from a server on this machine (bench/postgres_export.sh,
    bench/redis_export.sh): each run's wall, CPU, peak RSS, the server's CPU over it
    (the machine's busy time minus ours) and the LangGraph script's wall over its."""
    rows = load(results)
    lines = []
    for scale, runs in by_scale(rows):
        script = runs["langgraph_script_to_json"]["result"]["wall_s"]
        for name, row in runs.items():
            r = row["result"]
            r["server_cpu_s"] = round(max(row["machine_busy_s"] - r["cpu_s"], 0), 2)
            r["langgraph_script_speedup"] = round(script / r["wall_s"], 1)
            lines.append(f"| {scale} | {name} | {r['wall_s']} s | {r['cpu_s']} s | {r['cpu_percent']} % | "
                         f"{r['peak_rss_mib']} MiB | {r['server_cpu_s']} s | {r['langgraph_script_speedup']}× |")
    save(out, rows, ["scale", "run", "wall", "CPU (user+sys)", "CPU %", "peak RSS",
                     "server CPU", "LangGraph script ÷ this"], lines)


if __name__ == "__main__":
    import sys

    # python3 bench/results_table.py server-export RESULTS.jsonl OUT
    if sys.argv[1:2] == ["server-export"]:
        save_server_export(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: results_table.py server-export RESULTS.jsonl OUT")
