#!/usr/bin/env python3
"""The script a LangGraph user writes today to put checkpoints into a Qdrant collection
with no server: LangGraph's own SqliteSaver reads every checkpoint of every thread
(list()), each becomes a point with the Unified Memory payload fields (LangChain objects
through LangChain's own dumpd()), a vector from the same kind of text hashing as
ckpt-migrate's `hash` embedding, and qdrant-client's local mode (`QdrantClient(path=…)`,
no server) stores them, 256 points per upsert. The baseline that
bench/unified_embedded.sh measures ckpt-migrate's embedded destination against.

    python langgraph_to_qdrant_local.py SQLITE_PATH COLLECTION_DIR [DIMENSIONS]

Prints the number of points on stderr.
"""

import json
import math
import re
import sqlite3
import sys
import uuid
import zlib

from qdrant_client import QdrantClient, models
from langgraph.checkpoint.sqlite import SqliteSaver

from langgraph_export import default

NAMESPACE = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
LAST_MESSAGES = 6
BATCH = 256


def text_for(thread_id: str, checkpoint: dict) -> str:
    """The thread and its last messages, as ckpt-migrate embeds a checkpoint."""
    lines = [f"thread: {thread_id}"]
    for message in (checkpoint.get("channel_values") or {}).get("messages", [])[-LAST_MESSAGES:]:
        content = getattr(message, "content", "")
        if isinstance(content, str) and content:
            lines.append(f"{getattr(message, 'type', 'message')}: {content}")
    return "\n".join(lines)[-4000:]


def hash_vector(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for token in re.findall(r"\w+", text.lower()):
        h = zlib.crc32(token.encode())
        vector[h % dimensions] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def main() -> None:
    src_path, out_dir = sys.argv[1], sys.argv[2]
    dimensions = int(sys.argv[3]) if len(sys.argv) > 3 else 768
    saver = SqliteSaver(sqlite3.connect(src_path, check_same_thread=False))
    client = QdrantClient(path=out_dir)
    client.create_collection(
        "checkpoints",
        vectors_config=models.VectorParams(size=dimensions, distance=models.Distance.COSINE),
    )
    points, written = [], 0
    for tup in saver.list(None):
        cfg = tup.config["configurable"]
        parent = (tup.parent_config or {}).get("configurable", {})
        # JSON-safe, as a payload must be.
        payload = json.loads(json.dumps({
            "type": "checkpoint",
            "thread_id": cfg["thread_id"],
            "checkpoint_ns": cfg["checkpoint_ns"],
            "checkpoint_id": cfg["checkpoint_id"],
            "id": cfg["checkpoint_id"],
            "parent_checkpoint_id": parent.get("checkpoint_id"),
            "channel_versions": tup.checkpoint.get("channel_versions"),
            "checkpoint": tup.checkpoint,
            "metadata": tup.metadata,
            "pending_writes": [
                {"task_id": t, "channel": c, "value": v} for t, c, v in tup.pending_writes or []
            ],
            "created_at": tup.checkpoint.get("ts"),
        }, default=default, ensure_ascii=False))
        vector = hash_vector(text_for(cfg["thread_id"], tup.checkpoint), dimensions)
        point_id = str(uuid.uuid5(NAMESPACE, cfg["checkpoint_id"]))
        points.append(models.PointStruct(id=point_id, vector=vector, payload=payload))
        if len(points) == BATCH:
            client.upsert("checkpoints", points)
            written += len(points)
            points = []
    if points:
        client.upsert("checkpoints", points)
        written += len(points)
    client.close()
    print(f"points {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
