#!/usr/bin/env python3
"""LangGraph Store (long-term memory) data written and read back by LangGraph's own classes:

    python store_items.py generate --sqlite PATH | --postgres DSN [--vectors] | --redis URL
    python store_items.py dump     --sqlite PATH | --postgres DSN [--vectors] [--as-postgres] | --redis URL

`generate` puts a fixed corpus (unicode namespaces and keys, exact-float and 64-bit-int
values, a ~300 KB value, TTLs, unindexed items, one item written twice) through
`SqliteStore` / `PostgresStore`.  `dump` prints one canonical JSON document of what
those classes read back (list_namespaces, search, get, filters, vector search) plus the
raw TTL and vector columns, so a test can compare a source store with the destination
ckpt-migrate wrote.  `dump` never writes: refresh_ttl=False everywhere, SQLite is opened
read-only (mode=ro), PostgreSQL gets no setup().  Exit code 3: vectors are unavailable
(no pgvector, or no sqlite3 that loads sqlite_vec); tests skip.
"""

import argparse
import datetime as dt
import decimal
import json
import sqlite3
import struct
import sys
import time
from pathlib import Path

DIMS = 16
# The text of ("users",)/"settings": PostgresStore (which embeds "text") ranks it first.
QUERY = "I prefer dark mode and keyboard shortcuts"
UTC = dt.timezone.utc
TEN_YEARS_MIN = 10 * 365 * 24 * 60


def index_config(postgres: bool) -> dict:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    # `fields` is the documented IndexConfig key. PostgresStore honours it; SqliteStore
    # 3.1.2 reads `text_fields` instead and so embeds the whole value at path "$" - we
    # keep the config users write, so the fixture holds what real SQLite stores hold.
    cfg = {"dims": DIMS, "embed": DeterministicFakeEmbedding(size=DIMS), "fields": ["text"]}
    if postgres:
        cfg["ann_index_config"] = {"kind": "flat"}  # exact search: no HNSW approximation
    return cfg


# ----------------------------------------------------------------------------- corpus


def corpus() -> list:
    """(namespace, key, value, put-kwargs) in put order; ~40 items."""
    u1 = ("users", "u-1", "memories")
    items = [
        (("users",), "profile", {"text": "Alice, likes tea", "kind": "profile", "priority": 1}, {}),
        (("users",), "settings", {"text": QUERY, "kind": "preference", "priority": 9,
                                  "ui": {"theme": "dark", "shortcuts": ["ctrl+k", "g g"]}}, {}),
        # Must not match the ("users",) prefix search: "users-archive" only shares characters.
        (("users-archive",), "old", {"text": "archived user", "kind": "profile"}, {}),
        (("usersx",), "x", {"text": "another look-alike prefix", "kind": "profile"}, {}),
    ]
    for i in range(1, 9):
        items.append((u1, f"m-{i:03d}", {
            "text": f"memory number {i}: talked about topic {i * 7 % 5}",
            "kind": "memory" if i % 3 else "preference",
            "priority": i,
            "tags": [f"t{i}", "common"] + (["even"] if i % 2 == 0 else []),
            "meta": {"turn": i, "source": {"thread": f"th-{i % 2}", "score": i / 8}},
        }, {}))
    items += [
        (("users", "u-2", "memories"), "café au lait", {"text": "Café au lait, s'il vous plaît", "kind": "preference", "priority": 6}, {}),
        (("users", "u-2", "memories"), "naïve-ключ", {"text": "Ключ на русском", "kind": "memory"}, {}),
        (("users", "u-2", "memories"), "键-中文", {"text": "中文的记忆", "kind": "memory"}, {}),
        (("users", "u-2", "memories"), "🔑 emoji key", {"text": "emoji 🔑🚀👩‍👩‍👧", "kind": "memory"}, {}),
        (("users", "u-2", "memories"), "key with  two spaces ", {"text": "spaces around", "kind": "memory"}, {}),
        (("users", "u-2", "memories"), "dotted.key.name", {"text": "a key may hold dots, a namespace label may not"}, {}),
        (("users", "u-2", "memories"), "quote\"d'/back\\slash", {"text": "quotes and slashes"}, {}),
        (("users", "ü-ñ", "memories"), "m-1", {"text": "Grüße aus München", "kind": "memory"}, {}),
        (("org", "acme"), "policy", {"text": "ACME retention policy", "kind": "policy", "days": 30}, {}),
        (("org", "acme", "team-ü", "prefs"), "editor", {"text": "vim keybindings", "kind": "preference", "priority": 7}, {}),
        (("org", "acme", "team-ü", "prefs"), "tabs", {"text": "tabs, not spaces", "kind": "preference", "priority": 2}, {}),
        (("org", "acme", "team-ü", "prefs"), "empty-ish", {"text": "", "empty_list": [], "empty_obj": {}, "null": None}, {}),
        (("日本語",), "挨拶", {"text": "こんにちは世界", "kind": "memory"}, {}),
        (("emoji", "🚀"), "launch", {"text": "🚀 to the moon", "kind": "memory"}, {}),
        (("numbers",), "exact", {
            "text": "numbers that must round-trip exactly",
            # Every float here differs from its neighbours in the last bit; -0.0 keeps its sign in JSON text.
            "floats": [0.1, 1e308, 5e-324, -0.0, 0.9949503943874963, 1.7976931348623157e308,
                       2.2250738585072014e-308, 123456789.12345679, 1 / 3],
            # Beyond 2^53 (a double would round them); orjson only takes 64-bit ints.
            "ints": [2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1, 0, -1],
            "bools": [True, False, None],
            "deep": {"a": [{"b": [{"c": [1, [2, [3, {"d": "ü"}]]]}]}]},
        }, {}),
        (("numbers",), "unicode", {"text": "unicode strings", "s": [
            "Grüße, 世界 🌍", "e\u0301 vs é", "שלום", "a\u2028b\u2029c", "tab\tnew\nline", "ctrl\u0001\u001f", "\ufeffbom"]}, {}),
        # Unindexed: readable by get/search, but no vector rows.
        (("docs",), "unindexed-1", {"text": "never embedded", "kind": "doc"}, {"index": False}),
        (("docs",), "unindexed-2", {"text": "also never embedded", "kind": "doc", "priority": 8}, {"index": False}),
        (("docs",), "no-text-field", {"body": "no text field: PostgresStore embeds nothing", "kind": "doc"}, {}),
        # An explicit per-item index: several vector rows (field names "notes[*].0", ...).
        (("docs",), "multi-field", {"text": "main text", "notes": ["first note", "second note", "third note"]},
         {"index": ["text", "notes[*]"]}),
        (("docs",), "large", {"text": "a large value", "blob": ("lorem ipsum ü 😀 " * 20000)[:300_000]}, {}),
        # TTLs: one far away, one fractional (PostgreSQL's ttl_minutes is INT), one a day.
        (("ttl",), "ten-years", {"text": "expires in ten years", "kind": "memory"}, {"ttl": TEN_YEARS_MIN}),
        (("ttl",), "ninety-and-a-half", {"text": "expires in 90.5 minutes", "kind": "memory"}, {"ttl": 90.5}),
        (("ttl",), "one-day", {"text": "expires in a day", "kind": "memory"}, {"ttl": 1440, "index": False}),
        (("ttl",), "none", {"text": "never expires", "kind": "memory"}, {"ttl": None}),
    ]
    return items


def generate(store, raw) -> None:
    """Put the corpus, then overwrite one item after >1 s (SQLite's CURRENT_TIMESTAMP has
    second resolution).  PostgresStore keeps created_at (updated_at > created_at);
    SqliteStore's INSERT OR REPLACE resets both, so there they stay equal."""
    if store.search((), limit=1, refresh_ttl=False):
        sys.exit("store_items: the store already holds items; generate wants an empty one")
    for ns, key, value, kw in corpus():
        store.put(ns, key, value, **kw)
    ns = ("users", "u-1", "memories")
    store.put(ns, "updated", {"text": "first version", "kind": "memory", "version": 1})
    time.sleep(1.1)
    store.put(ns, "updated", {"text": "second version", "kind": "memory", "version": 2})
    items = store.search((), limit=10000, refresh_ttl=False)
    vectors = raw("SELECT count(*) FROM store_vectors")[0][0] if store.index_config else 0
    print(f"store_items: {len(items)} items, {len({i.namespace for i in items})} namespaces, "
          f"{vectors} vector rows", file=sys.stderr)


# ----------------------------------------------------------------------------- dump


def iso(value) -> str | None:
    """ISO-8601 UTC with microseconds; SQLite gives naive text (UTC), psycopg aware datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def jsonb(v):
    """`v` as it reads back after a trip through PostgreSQL jsonb (numeric): -0.0 loses its
    sign, and a float JSON writes with an exponent (|x| >= 1e16, so integral) comes back
    as an integer (1e308 -> 10**308). Other floats return exactly."""
    if isinstance(v, float):
        text = json.dumps(v)
        return 0.0 if v == 0 else int(decimal.Decimal(text)) if "e+" in text else v
    if isinstance(v, dict):
        return {k: jsonb(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonb(x) for x in v]
    return v


def item_json(item, as_postgres: bool) -> dict:
    return {"namespace": list(item.namespace), "key": item.key,
            "value": jsonb(item.value) if as_postgres else item.value,
            "created_at": iso(item.created_at), "updated_at": iso(item.updated_at)}


def ttl_minutes(m, as_postgres: bool):
    # PostgreSQL's column is INT: float8 -> int rounds half to even, as round() does.
    return None if m is None else float(round(m) if as_postgres else m)


# The namespace prefix of the dump's vector search (--vector-prefix).
VECTOR_PREFIX: tuple = ()


def dump(store, raw, vectors: bool, as_postgres: bool) -> dict:
    namespaces = sorted(list(ns) for ns in store.list_namespaces(limit=10000))
    items = []
    for ns in namespaces:
        # search() also returns descendants: keep the namespace's own items only.
        items += [i for i in store.search(tuple(ns), limit=10000, refresh_ttl=False) if list(i.namespace) == ns]
    items = sorted((item_json(i, as_postgres) for i in items), key=lambda r: (r["namespace"], r["key"]))
    gets = [item_json(store.get(tuple(r["namespace"]), r["key"], refresh_ttl=False), as_postgres) for r in items]

    def keys(found):
        return sorted([list(i.namespace), i.key] for i in found)

    doc = {
        "namespaces": namespaces,
        "items": items,
        "gets": gets,
        "prefix_search": {"prefix": ["users"], "keys": keys(store.search(("users",), limit=10000, refresh_ttl=False))},
        "filter_search": {
            "kind == preference": keys(store.search((), filter={"kind": "preference"}, limit=10000, refresh_ttl=False)),
            "priority > 5": keys(store.search((), filter={"priority": {"$gt": 5}}, limit=10000, refresh_ttl=False)),
        },
        "ttl": sorted(({"prefix": p, "key": k, "expires_at": iso(e), "ttl_minutes": ttl_minutes(m, as_postgres)}
                       for p, k, e, m in raw("SELECT prefix, key, expires_at, ttl_minutes FROM store")),
                      key=lambda r: (r["prefix"], r["key"])),
    }
    if vectors:
        hits = store.search(VECTOR_PREFIX, query=QUERY, limit=5, refresh_ttl=False)
        doc["vector_search"] = {"query": QUERY, "hits": [
            {"namespace": list(h.namespace), "key": h.key, "score": round(h.score, 6)} for h in hits]}
        doc["vectors"] = sorted(({"prefix": p, "key": k, "field_name": f, "embedding": e}
                                 for p, k, f, e in raw("SELECT prefix, key, field_name, embedding FROM store_vectors")),
                                key=lambda r: (r["prefix"], r["key"], r["field_name"]))
    return doc


# ----------------------------------------------------------------------------- backends


def sqlite_module(vectors: bool):
    """The stdlib sqlite3, or pysqlite3 when vectors need sqlite_vec and this Python was
    built without loadable extensions (pyenv's default): SqliteStore.setup() calls
    conn.enable_load_extension."""
    if not vectors or hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as pysqlite3

        return pysqlite3
    except ImportError:
        print("store_items: this Python's sqlite3 cannot load extensions (sqlite_vec) and "
              "pysqlite3-binary is not installed; skipping", file=sys.stderr)
        sys.exit(3)


def run_sqlite(path: str, cmd: str, vectors: bool, as_postgres: bool):
    from langgraph.store.sqlite import SqliteStore

    db = sqlite_module(vectors)
    if cmd == "generate":
        conn = db.connect(path, check_same_thread=False, isolation_level=None)
    else:
        # Read-only: a dump that tried to write (a TTL refresh, a pending migration) fails loudly.
        conn = db.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True,
                          check_same_thread=False, isolation_level=None)
    try:
        store = SqliteStore(conn, index=index_config(False) if vectors else None)
        try:
            store.setup()  # no-op on a migrated store; loads sqlite_vec when vectors are on
        except db.OperationalError as e:
            # Read-only: setup() found a migration (or store_vectors) missing.
            sys.exit(f"store_items: {path} is not a fully migrated SqliteStore{' with vectors' * vectors}: {e}")

        def raw(sql):
            rows = conn.execute(sql).fetchall()
            if "embedding" in sql:  # little-endian float32 blobs (sqlite_vec.serialize_float32)
                rows = [(*r[:3], list(struct.unpack(f"<{len(r[3]) // 4}f", r[3]))) for r in rows]
            return rows

        return generate(store, raw) if cmd == "generate" else dump(store, raw, vectors, as_postgres)
    finally:
        conn.close()


def require_pgvector(conn, create: bool) -> None:
    import psycopg

    try:
        if create:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        elif not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            raise RuntimeError("the vector extension is not installed in this database")
    except (psycopg.Error, RuntimeError) as e:
        print(f"store_items: pgvector is unavailable ({str(e).strip()}); skipping", file=sys.stderr)
        sys.exit(3)


def run_postgres(dsn: str, cmd: str, vectors: bool, as_postgres: bool):
    import psycopg
    from langgraph.store.postgres import PostgresStore
    from psycopg.rows import dict_row

    # What PostgresStore.from_conn_string opens. Not a read-only session: get() is a
    # data-modifying CTE (its TTL-refresh UPDATE touches no row with refresh_ttl=False).
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        if vectors:
            require_pgvector(conn, create=cmd == "generate")
        store = PostgresStore(conn, index=index_config(True) if vectors else None)
        if cmd == "generate":
            store.setup()  # dump skips it: PostgresStore reads without it, and it may write

        def raw(sql):
            # psycopg does not know pgvector's type: read it as real[], in binary so each
            # float4 arrives exact (text output would be its shortest decimal).
            sql = sql.replace("embedding FROM", "embedding::real[] FROM")
            with conn.cursor(binary=True) as cur:
                return [tuple(r.values()) for r in cur.execute(sql).fetchall()]

        return generate(store, raw) if cmd == "generate" else dump(store, raw, vectors, as_postgres)


def run_redis(url: str, prefix: str, cmd: str, vectors: bool) -> dict | None:
    """langgraph-checkpoint-redis's RedisStore (RedisJSON + RediSearch). Its reads are
    limited in the pinned version (get misses multi-level namespaces, list_namespaces
    stops at 10 documents), so the dump is what `search(())` returns: every item with
    its namespace, key, value and times; with --vectors, also a vector search (the
    index config SqliteStore's fixture was written with) and the raw expiry per item."""
    import redis
    from langgraph.store.redis import RedisStore

    # Index names are the prefixes: one store per prefix on a shared server (RediSearch
    # indexes only database 0).
    vector_prefix = "store_vectors" if prefix == "store" else f"{prefix}_vectors"
    index = index_config(False) if vectors else None
    with RedisStore.from_conn_string(url, index=index, store_prefix=prefix, vector_prefix=vector_prefix) as store:
        if cmd == "generate":
            store.setup()
            if store.search((), limit=1, refresh_ttl=False):
                sys.exit("store_items: the store already holds items; generate wants an empty one")
            for ns, key, value, kw in corpus():
                kw = {k: v for k, v in kw.items() if k != "index"}
                store.put(ns, key, value, **kw)
            items = store.search((), limit=10000, refresh_ttl=False)
            print(f"store_items: {len(items)} items in RedisStore", file=sys.stderr)
            return None
        items = store.search((), limit=10000, refresh_ttl=False)
        doc = {"items": sorted((item_json(i, False) for i in items),
                               key=lambda r: (r["namespace"], r["key"]))}
        # get() and list_namespaces() as they are in this version, misses included:
        # a copy must give what the original gives.
        found = [store.get(tuple(r["namespace"]), r["key"], refresh_ttl=False) for r in doc["items"]]
        doc["gets"] = [None if f is None else item_json(f, False) for f in found]
        doc["namespaces"] = sorted(list(ns) for ns in store.list_namespaces(limit=10000))
        if vectors:
            # RedisStore 0.5.2 builds `@prefix:*` for an empty prefix, which RediSearch
            # refuses: its vector search needs a namespace prefix.
            hits = store.search(VECTOR_PREFIX, query=QUERY, limit=5, refresh_ttl=False)
            doc["vector_search"] = {"query": QUERY, "hits": [
                {"namespace": list(h.namespace), "key": h.key, "score": round(h.score, 6)} for h in hits]}
        # The keys' own expiry (RedisStore's TTL), to the second.
        r = redis.Redis.from_url(url)
        expiry = {}
        for key in r.scan_iter(match=f"{prefix}:*", count=500):
            at = r.pexpiretime(key)
            if at > 0:
                got = r.json().get(key, "$.prefix", "$.key")
                expiry[f"{got['$.prefix'][0]} {got['$.key'][0]}"] = at // 1000
        doc["expires_at_s"] = dict(sorted(expiry.items()))
        return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["generate", "dump"])
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", metavar="PATH")
    target.add_argument("--postgres", metavar="DSN")
    target.add_argument("--redis", metavar="URL", help="RedisStore (dump: its search results)")
    ap.add_argument("--redis-prefix", default="store", help="RedisStore's store_prefix (vectors: PREFIX_vectors)")
    ap.add_argument("--vectors", action="store_true", help="index with DeterministicFakeEmbedding(size=16) on 'text'")
    ap.add_argument("--as-postgres", action="store_true",
                    help="dump: values and ttl_minutes as PostgreSQL would hold them (compare a SQLite source with a PostgreSQL copy)")
    ap.add_argument("--vector-prefix", default="", help="dump: the vector search's namespace prefix, labels joined by '.'")
    args = ap.parse_args()
    global VECTOR_PREFIX
    VECTOR_PREFIX = tuple(args.vector_prefix.split(".")) if args.vector_prefix else ()
    if args.redis:
        out = run_redis(args.redis, args.redis_prefix, args.cmd, args.vectors)
    elif args.sqlite:
        out = run_sqlite(args.sqlite, args.cmd, args.vectors, args.as_postgres)
    else:
        out = run_postgres(args.postgres, args.cmd, args.vectors, args.as_postgres)
    if args.cmd == "dump":
        # json (not orjson): Python floats print with repr, so every value round-trips exactly.
        sys.stdout.write(json.dumps(out, sort_keys=True, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
