#!/usr/bin/env python3
"""The script a LangGraph user writes today to export checkpoints to JSON, with
LangGraph's own SqliteSaver, PostgresSaver or RedisSaver (langgraph-checkpoint-redis):
every checkpoint of every thread (list()), LangChain objects through LangChain's own
dumpd(), the rest made JSON-safe. The baseline that bench/run.sh (SQLite),
bench/postgres_export.sh (PostgreSQL) and bench/redis_export.sh (Redis) measure
ckpt-migrate's JSON export against.

    python langgraph_export.py SQLITE_PATH|POSTGRES_URL|REDIS_URL OUT.jsonl

RedisSaver.list(None) answers at most 10 000 checkpoints (one FT.SEARCH page), so for
Redis the script lists thread by thread, the threads found with SCAN, as a user must.
"""

import base64
import contextlib
import datetime
import json
import sqlite3
import sys
import uuid

from langchain_core.load import dumpd
from langchain_core.load.serializable import Serializable
from langgraph.checkpoint.sqlite import SqliteSaver


def default(value):
    if isinstance(value, Serializable):
        return dumpd(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def open_saver(source: str, stack: contextlib.ExitStack):
    if source.startswith(("postgresql://", "postgres://")):
        from langgraph.checkpoint.postgres import PostgresSaver

        return stack.enter_context(PostgresSaver.from_conn_string(source))
    if source.startswith(("redis://", "rediss://")):
        from langgraph.checkpoint.redis import RedisSaver

        saver = stack.enter_context(RedisSaver.from_conn_string(source))
        saver.setup()
        return saver
    return SqliteSaver(sqlite3.connect(source, check_same_thread=False))


def main() -> None:
    src_path, out_path = sys.argv[1], sys.argv[2]
    with contextlib.ExitStack() as stack:
        export(open_saver(src_path, stack), src_path, out_path)


def checkpoints(saver, source: str):
    """Every checkpoint: one list() for SQLite and PostgreSQL, one per thread for Redis."""
    if not source.startswith(("redis://", "rediss://")):
        yield from saver.list(None)
        return
    import redis

    client = redis.Redis.from_url(source)
    threads = sorted(
        {key.split(b":")[1].decode() for key in client.scan_iter(b"checkpoint:*", count=1000)}
    )
    for thread in threads:
        yield from saver.list({"configurable": {"thread_id": thread}})


def export(saver, source: str, out_path: str) -> None:
    exported = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for tup in checkpoints(saver, source):
            cfg = tup.config["configurable"]
            parent = (tup.parent_config or {}).get("configurable", {})
            record = {
                "thread_id": cfg["thread_id"],
                "checkpoint_ns": cfg["checkpoint_ns"],
                "checkpoint_id": cfg["checkpoint_id"],
                "parent_checkpoint_id": parent.get("checkpoint_id"),
                "checkpoint": tup.checkpoint,
                "metadata": tup.metadata,
                "pending_writes": [
                    {"task_id": t, "channel": c, "value": v} for t, c, v in tup.pending_writes or []
                ],
            }
            out.write(json.dumps(record, default=default, ensure_ascii=False))
            out.write("\n")
            exported += 1
    print(f"exported {exported}", file=sys.stderr)


if __name__ == "__main__":
    main()
