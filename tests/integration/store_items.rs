//! LangGraph Store items (`--state store`): what ckpt-migrate writes, LangGraph's own
//! `SqliteStore` / `PostgresStore` read back exactly as they read the source
//! (`tests/readback/store_items.py dump`: list_namespaces, search, get, filters,
//! vector search, TTL and vector columns).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{self, cli, cli_env, fixtures, pg_database, pg_url_for};
use crate::store_destinations::{SEARCH_REDIS, assert_ok, python, search_redis};

/// `tests/readback/store_items.py` with `args`; its stdout as JSON.
fn store_items_py(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/readback/store_items.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "store_items.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if args[0] == "generate" {
        return Value::Null;
    }
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What LangGraph's SqliteStore reads from `db` (with the vector index).
fn sqlite_dump(db: &Path, as_postgres: bool) -> Value {
    let db = db.to_str().unwrap();
    let mut args = vec!["dump", "--sqlite", db, "--vectors"];
    if as_postgres {
        args.push("--as-postgres");
    }
    store_items_py(&args)
}

/// The fixture's own read-back, kept beside it.
fn fixture_dump() -> Value {
    let text = std::fs::read_to_string(fixtures().join("store/sqlite-store.dump.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the SqliteStore fixture (38 items in 13 namespaces, 38 vectors) in `dir`.
fn fixture_copy(dir: &Path) -> PathBuf {
    let path = dir.join("store.db");
    std::fs::copy(fixtures().join("store/sqlite-store.db"), &path).unwrap();
    path
}

/// `--state store` from (`kind`, `config`) to (`dest_kind`, `dest`), plus `extra`.
fn migrate(
    dir: &Path,
    (kind, source): (&str, Value),
    (dest_kind, dest): (&str, Value),
    extra: &[&str],
) -> harness::Run {
    let mut flags = vec!["--state", "store"];
    flags.extend_from_slice(extra);
    harness::cli_between(dir, (kind, &source), (dest_kind, &dest), &flags)
}

fn sqlite(path: &Path) -> Value {
    json!({ "connection_string": path.to_str().unwrap() })
}

/// The PostgreSQL server with pgvector started by `scripts/test.sh`.
fn pgvector_url() -> String {
    std::env::var("CKPT_TEST_PGVECTOR_URL").expect(
        "CKPT_TEST_PGVECTOR_URL is not set: run the tests with scripts/test.sh, which starts \
         PostgreSQL with pgvector (from the pgserver wheel scripts/setup.sh unpacks)",
    )
}

/// A fresh database on the pgvector server; its URL.
async fn pgvector_database() -> String {
    use sqlx::Connection as _;
    let url = pgvector_url();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn postgres(url: &str) -> Value {
    json!({ "connection_string": url })
}

#[test]
fn sqlite_store_copy_reads_back_as_the_source_and_a_rerun_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let copy = dir.path().join("copy.db");
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("sqlite", sqlite(&copy)),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(
        run.stderr().contains("read 38  written 38"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout()
            .contains("38 Store item(s) compared; 0 missing, 0 different")
    );
    assert_eq!(sqlite_dump(&copy, false), fixture_dump());

    let again = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("sqlite", sqlite(&copy)),
        &["--restart"],
    );
    assert_ok(&again);
    assert!(again.stderr().contains("written 0"), "{}", again.stderr());
    assert!(
        again.stderr().contains("38 item(s) already there and kept"),
        "{}",
        again.stderr()
    );
}

#[tokio::test]
async fn sqlite_store_to_postgres_store_with_embeddings_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let url = pgvector_database().await;
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("postgresql", postgres(&url)),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(
        run.stdout().contains("0 missing, 0 different"),
        "{}",
        run.stdout()
    );
    // PostgresStore reads (values as jsonb holds them, TTLs in whole minutes) what
    // SqliteStore read, the vector search included.
    let written = store_items_py(&["dump", "--postgres", &url, "--vectors"]);
    assert_eq!(written, sqlite_dump(&source, true));
    assert_eq!(written["vectors"].as_array().unwrap().len(), 38);

    let back = dir.path().join("back.db");
    let run = migrate(
        dir.path(),
        ("postgresql", postgres(&url)),
        ("sqlite", sqlite(&back)),
        &["--verify"],
    );
    assert_ok(&run);
    assert_eq!(sqlite_dump(&back, true), written);
}

#[tokio::test]
async fn postgres_store_written_by_langgraph_moves_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = pg_database(&[]).await;
    let url = pg_url_for(&db);
    store_items_py(&["generate", "--postgres", &url]);
    let copy = dir.path().join("copy.db");
    let run = migrate(
        dir.path(),
        ("postgresql", postgres(&url)),
        ("sqlite", sqlite(&copy)),
        &["--verify"],
    );
    assert_ok(&run);
    let copy = copy.to_str().unwrap();
    assert_eq!(
        store_items_py(&["dump", "--sqlite", copy, "--as-postgres"]),
        store_items_py(&["dump", "--postgres", &url])
    );

    // Read as checkpoints by mistake, the database says what it holds.
    let run = cli(
        dir.path(),
        &[
            "--source",
            "postgresql",
            "--source-config",
            &postgres(&url).to_string(),
            "--destination",
            "json",
            "--dest-config",
            &json!({ "output_dir": dir.path().join("x") }).to_string(),
        ],
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(run.stderr().contains("--state store"), "{}", run.stderr());
}

#[tokio::test]
async fn embeddings_need_pgvector_or_are_dropped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let url = pg_url_for(&pg_database(&[]).await);
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("postgresql", postgres(&url)),
        &[],
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(run.stderr().contains("pgvector"), "{}", run.stderr());
    let password = std::env::var("CKPT_TEST_PG_PASSWORD").unwrap();
    assert!(!run.stderr().contains(&password), "password in the error");

    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        (
            "postgresql",
            json!({ "connection_string": url, "store_embeddings": "drop" }),
        ),
        &["--restart", "--verify"],
    );
    assert_ok(&run);
    let source = source.to_str().unwrap();
    assert_eq!(
        store_items_py(&["dump", "--postgres", &url]),
        store_items_py(&["dump", "--sqlite", source, "--as-postgres"])
    );
}

#[test]
fn json_export_keeps_values_exactly_and_restores_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let out = dir.path().join("export");
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("json", json!({ "output_dir": out })),
        &["--verify"],
    );
    assert_ok(&run);
    let text = std::fs::read_to_string(out.join("store_items.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 38);
    for exact in [
        "0.9949503943874963",
        "5e-324",
        "18446744073709551615",
        "-0.0",
    ] {
        assert!(text.contains(exact), "{exact} not kept as written");
    }
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["vectors"][0]["embedding"].as_array().unwrap().len(),
        16
    );

    let restored = dir.path().join("restored.db");
    let run = migrate(
        dir.path(),
        ("json", json!({ "path": out })),
        ("sqlite", sqlite(&restored)),
        &["--verify"],
    );
    assert_ok(&run);
    assert_eq!(sqlite_dump(&restored, false), fixture_dump());
}

#[test]
fn namespace_prefix_and_dates_select_items_and_the_dry_run_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let out = dir.path().join("export");
    let dry = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("json", json!({ "output_dir": out })),
        &["--dry-run", "--namespace-prefix", "users"],
    );
    assert_ok(&dry);
    // Whole labels: `users-archive` and `usersx` are other namespaces.
    assert!(
        dry.stdout().contains("19 item(s) in 4 namespace(s)"),
        "{}",
        dry.stdout()
    );
    assert!(dry.stdout().contains("users.u-1.memories: 9"));
    assert!(!dry.stdout().contains("usersx"));
    assert!(!out.exists(), "a dry run writes nothing");

    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("json", json!({ "output_dir": out })),
        &["--namespace-prefix", "users.u-1"],
    );
    assert_ok(&run);
    let text = std::fs::read_to_string(out.join("store_items.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 9);
    for line in text.lines() {
        let item: Value = serde_json::from_str(line).unwrap();
        assert_eq!(item["namespace"][0], "users");
        assert_eq!(item["namespace"][1], "u-1");
    }

    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("json", json!({ "output_dir": dir.path().join("old") })),
        &["--date-to", "2000-01-01"],
    );
    assert_ok(&run);
    assert!(
        run.stderr().contains("written 0  filtered 38"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn bad_items_go_to_the_dead_letter_file_and_the_rest_moves() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", source.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE store SET value = 'not json' WHERE prefix = 'docs' AND key = 'large'")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE store_vectors SET embedding = x'010203' WHERE prefix = 'users' AND key = 'settings'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let copy = dir.path().join("copy.db");
    let dead = dir.path().join("dead.jsonl");
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("sqlite", sqlite(&copy)),
        &["--dead-letter", dead.to_str().unwrap()],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("written 36  filtered 0  failed 2"),
        "{}",
        run.stderr()
    );
    let lines: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["item_key"],
        json!({"namespace": ["docs"], "key": "large"})
    );
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("value is not JSON")
    );
    assert_eq!(lines[0]["item"]["value"], "not json");
    assert_eq!(
        lines[1]["item_key"],
        json!({"namespace": ["users"], "key": "settings"})
    );
    assert!(
        lines[1]["error"].as_str().unwrap().contains("3 bytes"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1]["origin"]["locator"]
            .as_str()
            .unwrap()
            .contains("store.db")
    );
}

#[test]
fn a_killed_run_resumes_after_its_last_confirmed_page() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let copy = dir.path().join("copy.db");
    let (src, dst) = (sqlite(&source).to_string(), sqlite(&copy).to_string());
    let args = [
        "--state",
        "store",
        "--source",
        "sqlite",
        "--source-config",
        &src,
        "--destination",
        "sqlite",
        "--dest-config",
        &dst,
        "--batch-size",
        "5",
    ];
    for fault in ["crash-after-commit:2", "crash-after-write:5"] {
        let killed = cli_env(dir.path(), &args, &[("CKPT_MIGRATE_FAULT", fault)]);
        assert_ne!(killed.code(), 0, "{fault}: the process was to die");
        let refused = cli(dir.path(), &args);
        assert_eq!(
            refused.code(),
            2,
            "an unfinished run is not silently redone"
        );
        assert!(
            refused.stderr().contains("--resume"),
            "{}",
            refused.stderr()
        );
        let mut resumed_args = args.to_vec();
        resumed_args.push("--resume");
        let resumed = cli_env(dir.path(), &resumed_args, &[("CKPT_MIGRATE_FAULT", "")]);
        assert_ok(&resumed);
        assert!(
            resumed.stderr().contains("resuming run"),
            "{}",
            resumed.stderr()
        );
        assert!(resumed.stderr().contains("read 38"), "{}", resumed.stderr());
        assert_eq!(sqlite_dump(&copy, false), fixture_dump());
        std::fs::remove_file(&copy).unwrap();
    }
}

#[test]
fn checkpoint_only_options_and_other_stores_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let cases = [
        (
            vec!["--thread-id", "t"],
            "json",
            "thread filters do not apply to Store items",
        ),
        (vec![], "parquet", "partitions are for checkpoints"),
        (
            vec![],
            "redis",
            "ttl_minutes applies to checkpoints; Store items keep their own expiry",
        ),
    ];
    for (extra, dest, expect) in cases {
        let dest_config = match dest {
            "json" => json!({ "output_dir": dir.path().join("x") }),
            "parquet" => {
                json!({ "output_path": dir.path().join("x"), "partition_by": ["thread_id"] })
            }
            _ => json!({ "redis_url": "redis://127.0.0.1:1", "ttl_minutes": 60 }),
        };
        let run = migrate(
            dir.path(),
            ("sqlite", sqlite(&source)),
            (dest, dest_config),
            &extra,
        );
        assert_eq!(run.code(), 2, "{}", run.stderr());
        assert!(run.stderr().contains(expect), "{}", run.stderr());
    }
    let run = cli(
        dir.path(),
        &[
            "--source",
            "sqlite",
            "--source-config",
            &sqlite(&source).to_string(),
            "--destination",
            "json",
            "--dest-config",
            &json!({ "output_dir": dir.path().join("y") }).to_string(),
        ],
    );
    assert_eq!(run.code(), 3);
    assert!(
        run.stderr().contains("--state store"),
        "a Store database read as checkpoints says what to do: {}",
        run.stderr()
    );
}

#[test]
fn redis_store_items_move_to_sqlite_as_redisstore_reads_them() {
    let _server = SEARCH_REDIS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let url = search_redis();
    // RedisStore names its indexes after its prefix: a store of this test's own.
    let prefix = format!("st_{}", uuid::Uuid::new_v4().simple());
    store_items_py(&["generate", "--redis", &url, "--redis-prefix", &prefix]);
    let source = json!({ "redis_url": url, "key_prefix": prefix });
    let copy = dir.path().join("copy.db");
    let dry = migrate(
        dir.path(),
        ("redis", source.clone()),
        ("sqlite", sqlite(&copy)),
        &["--dry-run"],
    );
    assert_ok(&dry);
    assert!(
        dry.stdout().contains("37 item(s) in 13 namespace(s)"),
        "{}",
        dry.stdout()
    );
    let run = migrate(
        dir.path(),
        ("redis", source),
        ("sqlite", sqlite(&copy)),
        &["--verify", "--batch-size", "10"],
    );
    assert_ok(&run);
    assert!(
        run.stdout()
            .contains("37 Store item(s) compared; 0 missing, 0 different")
    );
    let redis = store_items_py(&["dump", "--redis", &url, "--redis-prefix", &prefix]);
    let written = store_items_py(&["dump", "--sqlite", copy.to_str().unwrap()]);
    assert_eq!(
        written["items"], redis["items"],
        "SqliteStore reads what RedisStore read"
    );
    assert_eq!(written["gets"], redis["items"]);
    // The TTL is the keys' expiry: the ten-year item still expires in about ten years.
    let ttl = written["ttl"].as_array().unwrap();
    let expires = |key: &str| {
        ttl.iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["expires_at"].as_str())
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
    };
    let years = (expires("ten-years").unwrap() - chrono::Utc::now().fixed_offset()).num_days();
    assert!((3640..=3651).contains(&years), "{years} days");
    assert_eq!(expires("none"), None);
}

/// Store items into Unified Memory (an embedded collection): one point per item with
/// its namespace, key, exact value and times; the item's own embedding carried when it
/// has the collection's size (16 here), found again by a vector search with it; a
/// re-run upserts the same points; `verify` reads every item back from the payloads.
#[tokio::test]
async fn store_items_move_into_unified_memory_with_their_embeddings() {
    use ckpt_migrate::stores::qdrant::{config::QdrantConfig, items::item_point_id, open_store};
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let memory = dir.path().join("memory");
    let dest = json!({ "path": memory, "embedding": {"provider": "none", "dimensions": 16} });
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("unified", dest.clone()),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(
        run.stderr().contains("read 38  written 38"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout()
            .contains("38 Store item(s) compared; 0 missing, 0 different"),
        "{}",
        run.stdout()
    );
    assert!(memory.join("store_items/edge_config.json").is_file());
    let again = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("unified", dest),
        &["--restart", "--verify"],
    );
    assert_ok(&again);
    assert!(
        again.stdout().contains("0 missing, 0 different"),
        "{}",
        again.stdout()
    );

    let store = open_store(&QdrantConfig::new(
        None,
        Some(memory.clone()),
        "store_items".into(),
    ))
    .unwrap();
    let mut points = Vec::new();
    let mut offset = None;
    loop {
        let page = store
            .scroll(offset.as_deref(), 10, None, None)
            .await
            .unwrap();
        points.extend(page.points);
        match page.next {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    assert_eq!(points.len(), 38, "one point per item, none twice");
    let dump = fixture_dump();
    for item in dump["items"].as_array().unwrap() {
        let key = ckpt_migrate::items::ItemKey {
            namespace: serde_json::from_value(item["namespace"].clone()).unwrap(),
            key: item["key"].as_str().unwrap().to_owned(),
        };
        let point = points
            .iter()
            .find(|p| p.id == item_point_id(&key).to_string())
            .unwrap_or_else(|| panic!("{key} has no point"));
        assert_eq!(point.payload["type"], "store_item");
        assert_eq!(point.payload["namespace"], item["namespace"]);
        assert_eq!(point.payload["key"], item["key"]);
        assert!(
            ckpt_migrate::items::same_json(
                &point.payload["value"],
                &item["value"],
                ckpt_migrate::items::NumberFidelity::Exact
            ),
            "{key}: {} != {}",
            point.payload["value"],
            item["value"]
        );
    }
    // The item's own embedding was carried: searching with it finds the item first.
    let vector = &dump["vectors"][0];
    let embedding: Vec<f32> = serde_json::from_value(vector["embedding"].clone()).unwrap();
    let best = store.search(embedding, None, 1).await.unwrap();
    assert_eq!(best[0].payload["key"], vector["key"]);
    assert!(best[0].score.unwrap() > 0.999, "{:?}", best[0].score);

    // With an embedding of another size, vectors are computed from the item's text and
    // `search` finds items by their words.
    let hashed = json!({ "path": memory, "collection": "memories", "embedding_model": "hash" });
    assert_ok(&migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("unified", hashed),
        &[],
    ));
    let found = cli(
        dir.path(),
        &[
            "search",
            "to the moon",
            "--path",
            "memory",
            "--collection",
            "memories",
            "--limit",
            "1",
        ],
    );
    assert_eq!(found.code(), 0, "{}", found.stderr());
    assert!(
        found.stdout().contains("item emoji.🚀 / launch")
            && found.stdout().contains("🚀 to the moon"),
        "{}",
        found.stdout()
    );
}

/// Store items into one Parquet file: a row per item, the value's JSON text exact, the
/// embeddings as float32 lists; `verify` reads the file back; a killed run leaves only
/// a `.partial` file and `--resume` writes the whole file again.
#[test]
fn store_items_export_to_parquet_and_a_killed_export_is_written_again() {
    use arrow_array::{Array, ListArray, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_copy(dir.path());
    let file = dir.path().join("out/items.parquet");
    let dest = json!({ "output_path": file, "compression": "zstd" });
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&source)),
        ("parquet", dest.clone()),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(
        run.stdout()
            .contains("38 Store item(s) compared; 0 missing, 0 different"),
        "{}",
        run.stdout()
    );
    let check_file = || {
        let (batches, _) = crate::parquet_export::read(&file);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 38);
        let mut text = String::new();
        let mut vectors = 0;
        for batch in &batches {
            let values = crate::parquet_export::col::<StringArray>(batch, "value_json");
            let embeddings = crate::parquet_export::col::<ListArray>(batch, "vectors");
            for i in 0..batch.num_rows() {
                text.push_str(values.value(i));
                vectors += embeddings.value(i).len();
            }
        }
        for exact in [
            "0.9949503943874963",
            "5e-324",
            "18446744073709551615",
            "-0.0",
        ] {
            assert!(text.contains(exact), "{exact} not kept as written");
        }
        assert_eq!(vectors, 38, "every embedding row of the fixture");
    };
    check_file();

    std::fs::remove_file(&file).unwrap();
    let (src, dst) = (sqlite(&source).to_string(), dest.to_string());
    let args = [
        "--state",
        "store",
        "--source",
        "sqlite",
        "--source-config",
        &src,
        "--destination",
        "parquet",
        "--dest-config",
        &dst,
        "--batch-size",
        "5",
    ];
    let killed = cli_env(
        dir.path(),
        &args,
        &[("CKPT_MIGRATE_FAULT", "crash-after-commit:3")],
    );
    assert_ne!(killed.code(), 0, "the process was to die");
    assert!(
        !file.exists(),
        "an unfinished export must not look complete"
    );
    let mut resumed_args = args.to_vec();
    resumed_args.extend(["--resume", "--verify"]);
    let resumed = cli_env(dir.path(), &resumed_args, &[("CKPT_MIGRATE_FAULT", "")]);
    assert_ok(&resumed);
    assert!(
        resumed.stderr().contains("read 38  written 38"),
        "{}",
        resumed.stderr()
    );
    assert!(
        resumed.stdout().contains("0 missing, 0 different"),
        "{}",
        resumed.stdout()
    );
    check_file();
}

/// SqliteStore → RedisStore → RedisStore. RedisStore reads our copy as SqliteStore
/// read the source — values, times, a vector search with the carried embeddings — and
/// the TTLs are the keys' own expiry; a copy of a store RedisStore wrote itself reads
/// back exactly as the original; a re-run writes nothing; the indexes we create are
/// the ones RedisStore's `setup()` creates.
#[test]
fn store_items_move_into_redis_store_and_redisstore_reads_them_back() {
    let _server = SEARCH_REDIS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let url = search_redis();
    let new_prefix = || format!("st_{}", uuid::Uuid::new_v4().simple());
    let redis = |prefix: &str| json!({ "redis_url": url, "key_prefix": prefix });
    let dump = |prefix: &str, vectors: bool| {
        let mut args = vec!["dump", "--redis", &url, "--redis-prefix", prefix];
        if vectors {
            args.extend(["--vectors", "--vector-prefix", "users"]);
        }
        store_items_py(&args)
    };

    // RedisStore's own writes of the same corpus, for what RedisJSON does to values.
    let own = new_prefix();
    store_items_py(&["generate", "--redis", &url, "--redis-prefix", &own]);
    let own_dump = dump(&own, false);

    // SqliteStore (38 items with their embeddings of 16 dimensions) → RedisStore.
    // What Redis cannot hold goes to the dead-letter file, named: an item whose TTL
    // ran out before the run (Redis deletes an expired key at once), an item with more
    // than one embedding (RedisStore keeps one per item).
    let mut source = fixture_dump();
    let now = chrono::Utc::now();
    let mut refused: Vec<String> = source["ttl"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["expires_at"]
                .as_str()
                .is_some_and(|e| chrono::DateTime::parse_from_rfc3339(e).unwrap() <= now)
        })
        .map(|t| t["key"].as_str().unwrap().to_owned())
        .collect();
    let vectors = source["vectors"].as_array().unwrap();
    for item in source["items"].as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        if vectors.iter().filter(|v| v["key"] == key).count() > 1 {
            refused.push(key.to_owned());
        }
    }
    refused.sort_unstable();
    assert!(refused.contains(&"multi-field".to_owned()), "{refused:?}");
    let from_sqlite = new_prefix();
    let run = migrate(
        dir.path(),
        ("sqlite", sqlite(&fixture_copy(dir.path()))),
        ("redis", redis(&from_sqlite)),
        &["--verify", "--batch-size", "10"],
    );
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains(&format!(
            "38 Store item(s) compared; {} missing, 0 different",
            refused.len()
        )),
        "{}",
        run.stdout()
    );
    let dead: Vec<Value> =
        std::fs::read_to_string(dir.path().join("redis-store.dead-letter.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut named: Vec<String> = dead
        .iter()
        .filter(|d| {
            let error = d["error"].as_str().unwrap_or_default();
            error.contains("expired at") || error.contains("RedisStore keeps one per item")
        })
        .map(|d| d["item_key"]["key"].as_str().unwrap().to_owned())
        .collect();
    named.sort_unstable();
    assert_eq!(named, refused, "{dead:?}");
    source["items"]
        .as_array_mut()
        .unwrap()
        .retain(|i| !refused.contains(&i["key"].as_str().unwrap().to_owned()));
    let copy = dump(&from_sqlite, true);
    let copied_items = copy["items"].as_array().unwrap();
    assert_eq!(
        copied_items.len(),
        source["items"].as_array().unwrap().len()
    );
    for (ours, theirs) in copied_items.iter().zip(source["items"].as_array().unwrap()) {
        if ours == theirs {
            continue;
        }
        // Only where RedisJSON changes the value for RedisStore's own writes too.
        let own_item = own_dump["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["namespace"] == theirs["namespace"] && i["key"] == theirs["key"])
            .unwrap_or_else(|| panic!("{ours} != {theirs}"));
        assert_eq!(ours["value"], own_item["value"], "{ours} != {theirs}");
        let mut times = ours.clone();
        times["value"] = theirs["value"].clone();
        assert_eq!(&times, theirs);
    }
    let hits = |dump: &Value| -> Vec<(Value, Value)> {
        dump["vector_search"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["namespace"].clone(), h["key"].clone()))
            .collect()
    };
    let sqlite_search = store_items_py(&[
        "dump",
        "--sqlite",
        fixture_copy(dir.path()).to_str().unwrap(),
        "--vectors",
        "--vector-prefix",
        "users",
    ]);
    assert_eq!(hits(&copy).len(), 5);
    assert_eq!(
        hits(&copy),
        hits(&sqlite_search),
        "RedisStore's vector search over the carried embeddings ranks as SqliteStore's"
    );
    let expiry = |label: &str, dump: &Value| dump["expires_at_s"][label].as_i64();
    let ttl = source["ttl"].as_array().unwrap();
    let source_expiry = |key: &str| {
        ttl.iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["expires_at"].as_str())
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
    };
    assert_eq!(
        expiry(r"ttl ten-years", &copy),
        source_expiry("ten-years"),
        "the TTL is the key's own expiry"
    );
    assert_eq!(expiry(r"ttl none", &copy), None);

    // A store RedisStore wrote itself → another prefix: read back exactly, expiries
    // included; a re-run keeps every item.
    let copied = new_prefix();
    let run = migrate(
        dir.path(),
        ("redis", redis(&own)),
        ("redis", redis(&copied)),
        &["--verify"],
    );
    assert_ok(&run);
    assert!(
        run.stdout()
            .contains("37 Store item(s) compared; 0 missing, 0 different"),
        "{}",
        run.stdout()
    );
    assert_eq!(dump(&copied, false), own_dump);
    let again = migrate(
        dir.path(),
        ("redis", redis(&own)),
        ("redis", redis(&copied)),
        &["--restart"],
    );
    assert_ok(&again);
    assert!(
        again.stderr().contains("37 item(s) already there and kept"),
        "{}",
        again.stderr()
    );

    // Our indexes are RedisStore's: FT.INFO lists the same attributes.
    let mut conn = crate::harness::redis_connection(&url);
    let mut attributes = |index: &str| {
        let info: Vec<redis::Value> = redis::cmd("FT.INFO").arg(index).query(&mut conn).unwrap();
        let at = info
            .iter()
            .position(|v| {
                redis::from_redis_value::<String>(v.clone()).is_ok_and(|s| s == "attributes")
            })
            .unwrap();
        format!("{:?}", info[at + 1])
    };
    let (ours, theirs) = (attributes(&copied), attributes(&own));
    assert_eq!(ours, theirs);
}
