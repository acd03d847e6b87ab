#!/usr/bin/env python3
"""Resumes a fixture thread that ends on a pending interrupt (human-in-the-loop) with
the fixture's own graph, and prints the outcome as one JSON object. Run against the
source store and against the store ckpt-migrate wrote from it, the outputs must be equal:
a migrated store is one a graph can carry on from.

    python resume.py sqlite PATH THREAD_ID      # shared fixtures: customer-0004
    python resume.py postgres DSN THREAD_ID

This WRITES the new checkpoints into the store: give it a copy or a scratch database.

The graph is scenario.build_support_graph, and scenario.py / fixture_models.py are
unchanged copies of the fixture generator's: its model is a FakeMessagesListChatModel
with fixed replies and the other nodes are plain Python, so nothing calls an LLM or the
network. The resume value is the generator's, with a fixed decision.

Output (lgconv JSON, one line): thread_id; values (the final state); next (nodes still
to run: none when the run finished); metadata (of the final checkpoint: source, step,
parents, the run's config metadata); history (len(list(graph.get_state_history(config)))).
Left out because they come from the clock: the new checkpoints' ids (config,
parent_config) and created_at; the interrupt's id, as no interrupt is printed.
"""

from __future__ import annotations

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ next to the fixture modules

import lgconv  # noqa: E402
import scenario  # noqa: E402
from langgraph.types import Command  # noqa: E402
from readback import open_saver  # noqa: E402

RESUME = {"decision": "approve", "by": "agent-007", "note": "checked 🧾 receipts"}


def main() -> None:
    ap = argparse.ArgumentParser(description="Resume a fixture thread's pending interrupt from a store.")
    ap.add_argument("kind", choices=["sqlite", "postgres"])
    ap.add_argument("target", help="SQLite file or PostgreSQL DSN (written to)")
    ap.add_argument("thread_id")
    args = ap.parse_args()
    plan = next((p for p in scenario.thread_plans() if p.thread_id == args.thread_id), None)
    if plan is None:
        raise SystemExit(f"{args.thread_id!r} is not a thread of scenario.py")
    # the config scenario.run_thread ran the thread with: the new checkpoints get the
    # same metadata as the migrated ones
    cfg = {
        "configurable": {"thread_id": plan.thread_id, **plan.configurable_extra},
        "metadata": dict(plan.metadata),
        "tags": ["support", "fixture"],
        "recursion_limit": 100,
    }
    with open_saver(args.kind, args.target, writable=True) as saver:
        graph = scenario.build_support_graph(plan, saver)
        if not graph.get_state(cfg).interrupts:
            raise SystemExit(f"thread {args.thread_id!r} has no pending interrupt in this store")
        graph.invoke(Command(resume=RESUME), cfg)
        state = graph.get_state(cfg)
        out = {
            "thread_id": plan.thread_id,
            "values": lgconv.to_json(state.values),
            "next": list(state.next),
            "metadata": lgconv.to_json(dict(state.metadata or {})),
            "history": len(list(graph.get_state_history(cfg))),
        }
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stdout.write(lgconv.dumps_line(out) + "\n")


if __name__ == "__main__":
    main()
