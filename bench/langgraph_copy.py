#!/usr/bin/env python3
"""The script a LangGraph user writes today to move checkpoints from a SqliteSaver
database into PostgresSaver or langgraph-redis's RedisSaver, with LangGraph's own
savers: every checkpoint of every thread (list()), put() with its parent, put_writes()
per task. The baseline that bench/store_to_store.sh measures ckpt-migrate against.

    python langgraph_copy.py SQLITE_PATH POSTGRES_DSN|REDIS_URL
"""

import sqlite3
import sys
from collections import defaultdict

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from psycopg.rows import dict_row


def copy(src: SqliteSaver, dst) -> int:
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
    return copied


def main() -> None:
    src_path, url = sys.argv[1], sys.argv[2]
    src = SqliteSaver(sqlite3.connect(src_path, check_same_thread=False))
    if url.startswith(("redis://", "rediss://")):
        from langgraph.checkpoint.redis import RedisSaver

        with RedisSaver.from_conn_string(url) as dst:
            copied = copy(src, dst)
    else:
        with psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            copied = copy(src, PostgresSaver(conn))
    print(f"copied {copied}", file=sys.stderr)


if __name__ == "__main__":
    main()
