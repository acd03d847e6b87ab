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
