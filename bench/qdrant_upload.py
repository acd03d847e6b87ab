#!/usr/bin/env python3
"""The baseline of bench/unified.sh: what a user writes with the Python qdrant-client to
put points into Qdrant — `upload_points` with batch 256 over gRPC — timed on exactly the
points ckpt-migrate wrote (same ids, payloads and vectors, read back from its collection
before the clock starts), until Qdrant shows them all.

    qdrant_upload.py QDRANT_URL SOURCE_COLLECTION TARGET_COLLECTION

Prints one JSON line: points, seconds, points_per_second.
"""

import json
import sys
import time
from urllib.parse import urlparse

from qdrant_client import QdrantClient, models


def main() -> None:
    url, source, target = sys.argv[1:4]
    host = urlparse(url).hostname or "127.0.0.1"
    client = QdrantClient(host=host, grpc_port=6334, prefer_grpc=True, timeout=120)
    # Untimed: the points as ckpt-migrate made them.
    points, offset = [], None
    while True:
        page, offset = client.scroll(source, limit=1000, offset=offset, with_payload=True, with_vectors=True)
        points += [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in page]
        if offset is None:
            break
    size = len(points[0].vector)
    client.recreate_collection(target, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE))
    start = time.perf_counter()
    client.upload_points(target, points, batch_size=256, wait=True)
    while client.count(target, exact=True).count < len(points):
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    client.delete_collection(target)
    print(json.dumps({"points": len(points), "seconds": round(seconds, 3),
                      "points_per_second": round(len(points) / seconds, 1)}))


if __name__ == "__main__":
    main()
