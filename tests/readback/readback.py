#!/usr/bin/env python3
"""Reads a checkpoint store with LangGraph's own saver and prints what LangGraph sees,
one JSON line per checkpoint, exactly as tests/fixtures/oracle/*.jsonl are written
(same records, sort order and lgconv rules). A store ckpt-migrate wrote then proves
itself by matching the oracle of the source it was migrated from.

    python readback.py sqlite PATH [--typezoo] [--stats]
    python readback.py postgres DSN [--setup] [--typezoo] [--stats]
    python readback.py redis URL [--allow module.Class,…] [--stats]

--typezoo  for the type-zoo fixtures: their lgconv (the shared rules plus rules for
           the zoo types) and zoo_models (LangGraph revives those classes by module
           name) come first on sys.path, and values are read with pickle_fallback,
           as that oracle was.
--setup    postgres: run PostgresSaver.setup() first and say on stderr whether it ran
           a migration. Without it the tables are read exactly as written.
--stats    stderr: counts, and per (thread, ns) the number of checkpoints (what
           get_state_history lists) and the parent chain length from the newest.

Needs the pins of requirements.txt (scripts/setup.sh puts them in target/test-tools/venv).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # lgconv turns a pydantic model into model_dump(mode="json"), which lists a set
    # field in iteration order: str hashing must be the oracles' (the generators
    # re-execute themselves the same way)
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ next to the fixture modules

TYPEZOO = Path(__file__).resolve().parent.parent / "fixtures" / "typezoo"


@contextlib.contextmanager
def open_saver(kind: str, target: str, *, typezoo: bool = False, writable: bool = False, allow=()):
    """LangGraph's saver for the store. Unless `writable`, the store is not changed: a
    check must leave alone what it checks."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    # allowed_msgpack_modules=True is LangGraph's default, pinned so that
    # LANGGRAPH_STRICT_MSGPACK=true in the environment cannot turn user classes into dicts.
    serde = JsonPlusSerializer(pickle_fallback=typezoo, allowed_msgpack_modules=True)
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        with tempfile.TemporaryDirectory() as tmp:
            path = target
            if not writable:
                # SqliteSaver writes on open (setup(): journal_mode=WAL, CREATE TABLE IF
                # NOT EXISTS) and even a read-only open of a WAL database leaves -wal/-shm
                # files behind, so read a copy; with the -wal, which may hold committed data.
                path = os.path.join(tmp, "store.db")
                shutil.copyfile(target, path)
                if os.path.exists(target + "-wal"):
                    shutil.copyfile(target + "-wal", path + "-wal")
            conn = sqlite3.connect(path, check_same_thread=False)
            try:
                yield SqliteSaver(conn, serde=serde)
            finally:
                conn.close()
    elif kind == "redis":
        from langgraph.checkpoint.redis import RedisSaver
        from langgraph.checkpoint.redis.jsonplus_redis import JsonPlusRedisSerializer

        # RedisSaver revives lc:2 envelopes of user classes only when its serializer
        # allows them, as an app using pydantic state must configure it: `allow` is
        # that list ("module.Class").
        saver = RedisSaver(target)
        allowed = [tuple(a.rsplit(".", 1)) for a in allow]
        if typezoo and not allowed:
            # as the type-zoo generator configured its RedisSaver: every zoo class
            import inspect

            import zoo_models

            allowed = [("zoo_models", n) for n, c in vars(zoo_models).items()
                       if inspect.isclass(c) and c.__module__ == "zoo_models"]
        saver.serde = JsonPlusRedisSerializer(pickle_fallback=typezoo, allowed_json_modules=allowed or None)
        # As an app does (and the fixture generator did): setup() after choosing the
        # serializer; it only creates the indexes when they are missing.
        saver.setup()
        try:
            yield saver
        finally:
            saver._redis.close()  # RedisSaver 0.5.2 has no close(); it owns this client
    else:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        # the connection settings of PostgresSaver.from_conn_string
        with psycopg.connect(target, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
            if not writable:
                conn.execute("SET default_transaction_read_only = on")
            yield PostgresSaver(conn, serde=serde)


def migration_version(conn) -> int:
    """Highest checkpoint_migrations row, -1 when there is none (or no table)."""
    if not conn.execute("SELECT to_regclass('checkpoint_migrations') IS NOT NULL AS t").fetchone()["t"]:
        return -1
    return conn.execute("SELECT coalesce(max(v), -1) AS v FROM checkpoint_migrations").fetchone()["v"]


def run_setup(dsn: str) -> None:
    # setup() runs every migration past the highest recorded one: a store whose
    # checkpoint_migrations rows are right makes it a no-op.
    with open_saver("postgres", dsn, writable=True) as saver:
        before = migration_version(saver.conn)
        saver.setup()
        after = migration_version(saver.conn)
    if after == before:
        print(f"setup: no migration ran (checkpoint_migrations at v{after})", file=sys.stderr)
    else:
        print(f"setup: ran migrations v{before + 1}..v{after}", file=sys.stderr)


def oracle_records(saver, lgconv) -> list[dict]:
    """As oracle_records() in the fixture generators: list(None), then list() per
    (thread, ns), then get_tuple() per checkpoint; list() and get_tuple() must agree."""
    listed = list(saver.list(None))
    pairs = sorted({(t.config["configurable"]["thread_id"], t.config["configurable"]["checkpoint_ns"]) for t in listed})
    records = []
    for thread_id, ns in pairs:
        # list() first: SqliteSaver.list holds the saver's lock while it yields, so
        # get_tuple() inside a lazy iteration would deadlock
        for t in list(saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}})):
            cid = t.config["configurable"]["checkpoint_id"]
            full = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}})
            rec = lgconv.checkpoint_record(full)
            if rec != lgconv.checkpoint_record(t):
                raise AssertionError(f"list() and get_tuple() disagree for {thread_id}/{ns}/{cid}")
            records.append(rec)
    if len(records) != len(listed):
        raise AssertionError(f"list(None) gave {len(listed)} checkpoints, per-namespace lists {len(records)}")
    records.sort(key=lambda r: (r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"]))
    return records


def oracle_records_redis(saver, lgconv) -> list[dict]:
    """The same for RedisSaver (langgraph-checkpoint-redis 0.5.2), whose list() and
    get_tuple() disagree by design in ways the fixture generator documents
    (../shared fixtures redis_json.py): list() with ns "" also returns subgraph
    namespaces (filtered here), list() does not deserialize channel_values and fills
    pending_sends from the parent (the record takes get_tuple()'s checkpoint), and
    get_tuple() gives the pending writes (each checked against list()'s, as a multiset)."""
    listed = list(saver.list(None))
    pairs = sorted({(t.config["configurable"]["thread_id"], t.config["configurable"]["checkpoint_ns"]) for t in listed})
    records = []
    for thread_id, ns in pairs:
        got = list(saver.list({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}))
        for t in (t for t in got if t.config["configurable"]["checkpoint_ns"] == ns):
            cid = t.config["configurable"]["checkpoint_id"]
            full = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}})
            rec, lrec = lgconv.checkpoint_record(full), lgconv.checkpoint_record(t)
            for k in ("thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "metadata"):
                if rec[k] != lrec[k]:
                    raise AssertionError(f"list() and get_tuple() disagree on {k} for {thread_id}/{ns}/{cid}")
            canon = lambda ws: sorted(lgconv.dumps_line(w) for w in ws)  # noqa: E731
            if canon(rec["pending_writes"]) != canon(lrec["pending_writes"]):
                raise AssertionError(f"list() and get_tuple() disagree on pending writes for {thread_id}/{ns}/{cid}")
            records.append(rec)
    if len(records) != len(listed):
        raise AssertionError(f"list(None) gave {len(listed)} checkpoints, per-namespace lists {len(records)}")
    records.sort(key=lambda r: (r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"]))
    return records


def print_stats(records: list[dict]) -> None:
    parents: dict = defaultdict(dict)  # (thread, ns) -> {checkpoint id: parent id}
    for r in records:
        parents[(r["thread_id"], r["checkpoint_ns"])][r["checkpoint_id"]] = r["parent_checkpoint_id"]
    threads = len({t for t, _ in parents})
    print(f"stats: {len(records)} checkpoints, {threads} threads, {len(parents)} (thread, ns) pairs", file=sys.stderr)
    for (thread_id, ns), links in sorted(parents.items()):
        # get_state_history lists every checkpoint of the ns; the parent links from the
        # newest (highest id, what get_state reads) should reach them all. Bounded in
        # case a broken store has a cycle.
        chain, cid = 0, max(links)
        while cid in links and chain <= len(links):
            chain, cid = chain + 1, links[cid]
        print(f"stats: {thread_id!r} ns={ns!r}: history {len(links)}, parent chain {chain}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description="Print what LangGraph reads from a checkpoint store, in oracle form.")
    ap.add_argument("kind", choices=["sqlite", "postgres", "redis"])
    ap.add_argument("target", help="SQLite file, PostgreSQL DSN or Redis URL (langgraph-redis layout)")
    ap.add_argument("--allow", default="", help="redis: comma list of module.Class its serializer revives")
    ap.add_argument("--typezoo", action="store_true", help="type-zoo fixtures (their lgconv, zoo_models, pickle_fallback)")
    ap.add_argument("--setup", action="store_true", help="postgres: run PostgresSaver.setup() first")
    ap.add_argument("--stats", action="store_true", help="counts and chain lengths on stderr")
    args = ap.parse_args()
    if args.setup and args.kind != "postgres":
        ap.error("--setup is for postgres")
    if args.typezoo:
        sys.path.insert(0, str(TYPEZOO))  # before `import lgconv`: the zoo's copy wins
    import lgconv

    if args.setup:
        run_setup(args.target)
    allow = [a for a in args.allow.split(",") if a]
    with open_saver(args.kind, args.target, typezoo=args.typezoo, allow=allow) as saver:
        records = (oracle_records_redis if args.kind == "redis" else oracle_records)(saver, lgconv)
    sys.stdout.reconfigure(encoding="utf-8")  # the oracle files are UTF-8 whatever the locale
    for r in records:
        sys.stdout.write(lgconv.dumps_line(r) + "\n")
    if args.stats:
        print_stats(records)


if __name__ == "__main__":
    main()
