#!/usr/bin/env python3
"""The script a LangGraph user writes today to move checkpoints from a SqliteSaver
database into PostgresSaver, with LangGraph's own savers: every checkpoint of every
thread (list()), put() with its parent, put_writes() per task. The baseline that
bench/store_to_store.sh measures ckpt-migrate against.

    python langgraph_copy.py SQLITE_PATH POSTGRES_DSN
"""

import sqlite3
import sys
from collections import defaultdict

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from psycopg.rows import dict_row


def main() -> None:
    src_path, dsn = sys.argv[1], sys.argv[2]
    src = SqliteSaver(sqlite3.connect(src_path, check_same_thread=False))
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        dst = PostgresSaver(conn)
        dst.setup()
        copied = 0
        for tup in src.list(None):
            cfg = tup.config["configurable"]
            parent = tup.parent_config or {
                "configurable": {"thread_id": cfg["thread_id"], "checkpoint_ns": cfg["checkpoint_ns"]}
            }
            saved = dst.put(parent, tup.checkpoint, tup.metadata, tup.checkpoint["channel_versions"])
            by_task = defaultdict(list)
            for task_id, channel, value in tup.pending_writes or []:
                by_task[task_id].append((channel, value))
            for task_id, writes in by_task.items():
                dst.put_writes(saved, writes, task_id)
            copied += 1
    print(f"copied {copied}", file=sys.stderr)


if __name__ == "__main__":
    main()
