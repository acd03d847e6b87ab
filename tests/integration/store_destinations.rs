//! LangGraph's own stores as destinations, proven by LangGraph itself: each
//! destination is read back with LangGraph's saver (`tests/readback/readback.py` in
//! the test venv, pinned versions) and compared with what LangGraph read from the
//! source (the fixtures' oracles).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{
    self, Key, cli_env, fixtures, key_of, pg_database, pg_url_for, sqlite_fixture,
};

/// The Python of the test venv, where `scripts/setup.sh` installs the pinned
/// LangGraph savers.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run the tests with scripts/test.sh, which installs LangGraph's savers into the test venv",
        venv.display()
    );
    venv
}

/// LangGraph's read-back of a store, one oracle-shaped line per checkpoint.
fn langgraph_read(kind: &str, target: &str, extra: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/readback/readback.py");
    let out = Command::new(python())
        .arg(&script)
        .args([kind, target])
        .args(extra)
        .output()
        .expect("run readback.py");
    assert!(
        out.status.success(),
        "LangGraph could not read {kind} back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("read-back line"))
        .collect()
}

/// What PostgreSQL's JSONB cannot keep in metadata, by design of JSONB (documented in
/// docs/stores.md, warned about in the run's log): `-0.0` is stored as `0.0`.
const JSONB_LOSSES: &[(&str, &str, &str)] = &[("metadata.md_negzero", "-0.0", "0.0")];

/// Whether the read-back differs from the source only by [`JSONB_LOSSES`], on a
/// PostgreSQL destination.
fn only_jsonb_losses(label: &str, got: &Value, expected: &Value) -> bool {
    if !label.contains("→ postgresql") {
        return false;
    }
    let mut out = Vec::new();
    harness::diff(got, expected, "", &mut out, 100);
    !out.is_empty()
        && out.iter().all(|d| {
            JSONB_LOSSES.iter().any(|(path, stored, read)| {
                d.contains(path) && d.contains(&format!("{read} != {stored}"))
            })
        })
}

/// How a read-back is compared with the source's oracle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteOrder {
    /// The same saver family: pending writes in the same order.
    Same,
    /// Another saver (RedisSaver → SqliteSaver): each saver returns a checkpoint's
    /// pending writes in its own key order, so they are compared as a multiset.
    AnyOrder,
}

fn sorted_writes(line: &Value) -> Value {
    let mut line = line.clone();
    if let Some(Value::Array(writes)) = line.get_mut("pending_writes") {
        writes.sort_by_cached_key(|w| w.to_string());
    }
    line
}

/// Compares LangGraph's read-back of the destination with its read-back of the
/// source: every checkpoint the destination holds must equal the source's, and the
/// only ones missing are `refused` (in the dead-letter file).
fn assert_reads_back(label: &str, got: &[Value], oracle: &BTreeMap<Key, Value>, refused: &[Key]) {
    assert_reads_back_with(label, got, oracle, refused, WriteOrder::Same)
}

fn assert_reads_back_with(
    label: &str,
    got: &[Value],
    oracle: &BTreeMap<Key, Value>,
    refused: &[Key],
    order: WriteOrder,
) {
    let mut matched = 0;
    let mut differ = Vec::new();
    for line in got {
        let key = key_of(line);
        match oracle.get(&key) {
            Some(expected) => {
                let (line, expected) = match order {
                    WriteOrder::Same => (line.clone(), expected.clone()),
                    WriteOrder::AnyOrder => (sorted_writes(line), sorted_writes(expected)),
                };
                if line == expected || only_jsonb_losses(label, &line, &expected) {
                    matched += 1;
                } else {
                    let mut out = Vec::new();
                    harness::diff(&line, &expected, "", &mut out, 5);
                    differ.push(format!("{key:?}: {out:?}"));
                }
            }
            None => differ.push(format!("{key:?}: not in the source")),
        }
    }
    let expected = oracle.len() - refused.len();
    let refused_note = match refused.len() {
        0 => String::new(),
        n => format!(" ({n} refused into the dead-letter file, with the reason)"),
    };
    println!("LangGraph read-back {label}: {matched}/{expected} match{refused_note}");
    assert!(
        differ.is_empty(),
        "{label}: {} differ: {differ:#?}",
        differ.len()
    );
    assert_eq!(matched, expected, "{label}: checkpoints missing");
    for key in refused {
        assert!(
            !got.iter().any(|l| &key_of(l) == key),
            "{label}: {key:?} should have been refused"
        );
    }
}

pub(crate) fn migrate(
    dir: &Path,
    source: &str,
    source_config: &Value,
    dest: &str,
    dest_config: &Value,
) -> harness::Run {
    migrate_with(dir, source, source_config, dest, dest_config, &[])
}

/// A migration by the command line, batches of 40, plus `extra` flags.
pub(crate) fn migrate_with(
    dir: &Path,
    source: &str,
    source_config: &Value,
    dest: &str,
    dest_config: &Value,
    extra: &[&str],
) -> harness::Run {
    let (source_config, dest_config) = (source_config.to_string(), dest_config.to_string());
    let mut args = vec![
        "--source",
        source,
        "--source-config",
        &source_config,
        "--destination",
        dest,
        "--dest-config",
        &dest_config,
        "--batch-size",
        "40",
    ];
    args.extend_from_slice(extra);
    cli_env(dir, &args, &[])
}

pub(crate) fn sqlite_source(path: &Path) -> Value {
    serde_json::json!({ "connection_string": path.display().to_string() })
}

pub(crate) fn pg_config(db: &str) -> Value {
    serde_json::json!({ "connection_string": pg_url_for(db) })
}

pub(crate) fn assert_ok(run: &harness::Run) {
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
}

/// An empty database on the test server.
pub(crate) async fn empty_database() -> String {
    pg_database(&[]).await
}

/// A source of the pair tests: its kind, config, and LangGraph's read-back of it.
pub(crate) struct PairSource {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) config: Value,
    oracle: &'static str,
    order: WriteOrder,
}

/// Every source kind over the same 271 checkpoints, as LangGraph's savers wrote them.
pub(crate) async fn pair_sources(dir: &Path) -> Vec<PairSource> {
    let sqlite = sqlite_fixture(dir);
    let pg = pg_database(&["checkpoints.sql"]).await;
    let redis_json = harness::redis_db();
    harness::redis_load(&redis_json, "redis-json/dump.jsonl").await;
    let plainredis = harness::redis_db();
    harness::redis_load(&plainredis, "redis/dump.jsonl").await;
    // Our own exports of the SQLite fixture, restored.
    let export = |dest: &str, config: Value| {
        assert_ok(&migrate(
            dir,
            "sqlite",
            &sqlite_source(&sqlite),
            dest,
            &config,
        ));
    };
    export(
        "json",
        serde_json::json!({ "output_dir": dir.join("export-json").display().to_string() }),
    );
    export(
        "parquet",
        serde_json::json!({ "output_path": dir.join("export-parquet").display().to_string(), "partition_by": ["thread_id"] }),
    );
    // Raw mode: nothing decoded, only keys and raw values written; restores the same.
    export(
        "json",
        serde_json::json!({ "output_dir": dir.join("export-json-raw").display().to_string(), "view": false }),
    );
    export(
        "parquet",
        serde_json::json!({ "output_path": dir.join("export-raw.parquet").display().to_string(), "view": false }),
    );
    assert_raw_exports_hold_no_view(dir);
    let source = |name, kind, config, oracle, order| PairSource {
        name,
        kind,
        config,
        oracle,
        order,
    };
    vec![
        source(
            "sqlite",
            "sqlite",
            sqlite_source(&sqlite),
            "sqlite",
            WriteOrder::Same,
        ),
        source(
            "postgresql",
            "postgresql",
            pg_config(&pg),
            "postgres",
            WriteOrder::Same,
        ),
        source(
            "langgraph-redis",
            "redis",
            serde_json::json!({ "redis_url": redis_json }),
            "redis_json",
            WriteOrder::AnyOrder,
        ),
        source(
            "plainredis",
            "redis",
            serde_json::json!({ "redis_url": plainredis, "key_prefix": "lg:" }),
            "redis",
            WriteOrder::AnyOrder,
        ),
        source(
            "json export",
            "json",
            serde_json::json!({ "path": dir.join("export-json").display().to_string() }),
            "sqlite",
            WriteOrder::Same,
        ),
        source(
            "parquet export",
            "parquet",
            serde_json::json!({ "path": dir.join("export-parquet").display().to_string() }),
            "sqlite",
            WriteOrder::Same,
        ),
        source(
            "json export (raw mode)",
            "json",
            serde_json::json!({ "path": dir.join("export-json-raw").display().to_string() }),
            "sqlite",
            WriteOrder::Same,
        ),
        source(
            "parquet export (raw mode)",
            "parquet",
            serde_json::json!({ "path": dir.join("export-raw.parquet").display().to_string() }),
            "sqlite",
            WriteOrder::Same,
        ),
    ]
}

/// The raw-mode exports of [`pair_sources`] hold keys and raw values, and no view.
fn assert_raw_exports_hold_no_view(dir: &Path) {
    let mut objects = 0;
    let root = dir.join("export-json-raw");
    for file in harness::files_under(&root) {
        if !file.ends_with(".jsonl") {
            continue;
        }
        let path = root.join(file);
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let object: Value = serde_json::from_str(line).unwrap();
            for view_key in ["checkpoint", "metadata", "ts"] {
                assert!(object.get(view_key).is_none(), "{line:.300}");
            }
            assert!(
                object["raw"]["checkpoint"]["data"].is_string(),
                "{line:.300}"
            );
            objects += 1;
        }
    }
    assert_eq!(objects, 271);
    let file = std::fs::File::open(dir.join("export-raw.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader as _;
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns: Vec<&str> = schema
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    assert!(columns.contains(&"checkpoint_raw"), "{columns:?}");
    for view_column in [
        "ts",
        "checkpoint_json",
        "metadata_json",
        "pending_writes_json",
    ] {
        assert!(!columns.contains(&view_column), "{columns:?}");
    }
    assert_eq!(reader.metadata().file_metadata().num_rows(), 271);
}

/// The classes the fixture's RedisSaver app allows its serializer to revive.
fn fixture_allowlist() -> Value {
    serde_json::json!([
        "fixture_models.Address",
        "fixture_models.CustomerProfile",
        "fixture_models.OrderRef"
    ])
}

/// Every source × {SQLite, PostgreSQL}: LangGraph's own saver reads the destination as
/// it read the source, `--verify` agrees, and PostgresSaver's `setup()` finds nothing
/// to do.
#[tokio::test]
async fn every_source_into_sqlite_and_postgres_reads_back_like_the_source() {
    let dir = tempfile::tempdir().unwrap();
    for source in pair_sources(dir.path()).await {
        let oracle = harness::oracle(source.oracle);
        // SQLite.
        let out = dir
            .path()
            .join(format!("{}.db", source.name.replace(' ', "-")));
        let dest = serde_json::json!({ "connection_string": out.display().to_string(), "allowed_json_modules": fixture_allowlist() });
        let run = migrate_verified(dir.path(), source.kind, &source.config, "sqlite", &dest);
        assert_ok(&run);
        let got = langgraph_read("sqlite", &out.display().to_string(), &[]);
        assert_reads_back_with(
            &format!("{} → sqlite", source.name),
            &got,
            &oracle,
            &[],
            source.order,
        );
        // PostgreSQL.
        let db = empty_database().await;
        let dest = serde_json::json!({ "connection_string": pg_url_for(&db), "allowed_json_modules": fixture_allowlist() });
        let run = migrate_verified(dir.path(), source.kind, &source.config, "postgresql", &dest);
        assert_ok(&run);
        let got = langgraph_read("postgres", &pg_url_for(&db), &["--setup"]);
        assert_reads_back_with(
            &format!("{} → postgresql", source.name),
            &got,
            &oracle,
            &[],
            source.order,
        );
        assert_eq!(
            migration_versions(&db).await,
            (0..=9).collect::<Vec<i32>>(),
            "setup() must have had nothing to do"
        );
    }
}

/// Runs a migration with `--verify` and checks the verify said equal.
fn migrate_verified(
    dir: &Path,
    source: &str,
    source_config: &Value,
    dest: &str,
    dest_config: &Value,
) -> harness::Run {
    let run = migrate_with(dir, source, source_config, dest, dest_config, &["--verify"]);
    assert!(
        run.stdout().contains("equal: same records, each once"),
        "{source} → {dest}: {}{}",
        run.stdout(),
        run.stderr()
    );
    run
}

#[tokio::test]
async fn postgres_to_postgres_in_another_schema_and_sqlite_file_details() {
    let dir = tempfile::tempdir().unwrap();
    let source_db = pg_database(&["checkpoints.sql"]).await;
    let db = empty_database().await;
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&source_db),
        "postgresql",
        &serde_json::json!({ "connection_string": pg_url_for(&db), "schema": "agents" }),
    );
    assert_ok(&run);
    let url = format!("{}?options=-csearch_path%3Dagents", pg_url_for(&db));
    let got = langgraph_read("postgres", &url, &[]);
    assert_reads_back(
        "postgresql → postgresql (schema agents)",
        &got,
        &harness::oracle("postgres"),
        &[],
    );

    // A SQLite destination in a directory that does not exist yet, in WAL mode.
    let out = dir.path().join("new/dir/out.db");
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&source_db),
        "sqlite",
        &serde_json::json!({ "connection_string": format!("sqlite:///{}", out.display()) }),
    );
    assert_ok(&run);
    // Closed whole and in WAL mode, as SqliteSaver leaves a database: this run created
    // it, so it was loaded with a rollback journal and switched to WAL at the end.
    let wal = dir.path().join("new/dir/out.db-wal");
    assert!(!wal.exists(), "{} is left", wal.display());
    let mode = Command::new(python())
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma journal_mode').fetchone()[0])"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "wal");
    let pragma = |db: &Path, name: &str| {
        let out = Command::new(python())
            .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma ' + sys.argv[2]).fetchone()[0])"])
            .arg(db)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(pragma(&out, "integrity_check"), "ok");
    // A database the run creates gets large pages; one that exists keeps its own.
    assert_eq!(pragma(&out, "page_size"), "32768");
    let existing = harness::sqlite_fixture(dir.path());
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&source_db),
        "sqlite",
        &serde_json::json!({ "connection_string": existing.display().to_string(), "page_size": 65536 }),
    );
    assert_ok(&run);
    assert_eq!(pragma(&existing, "page_size"), "4096");
    // A database that exists is written in WAL mode, its WAL checkpointed on a thread
    // of its own during the run and all in the file once the writer closes.
    let wal = PathBuf::from(format!("{}-wal", existing.display()));
    assert!(!wal.exists(), "{} is left", wal.display());
    assert_eq!(pragma(&existing, "journal_mode"), "wal");
    assert_eq!(pragma(&existing, "integrity_check"), "ok");
    // A page size SQLite cannot have is refused before anything is written.
    let refused = dir.path().join("refused.db");
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&source_db),
        "sqlite",
        &serde_json::json!({ "connection_string": refused.display().to_string(), "page_size": 1000 }),
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("page_size 1000 is not a power of two from 512 to 65536"),
        "{}",
        run.stderr()
    );
    assert!(!refused.exists());
}

fn zoo_oracle(store: &str) -> BTreeMap<Key, Value> {
    std::fs::read_to_string(fixtures().join(format!("typezoo/oracle/{store}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (key_of(&v), v)
        })
        .collect()
}

/// The dead-letter file's keys and reasons.
fn dead_letters(path: &Path) -> Vec<(Key, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let k = &v["key"];
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (
                (s("thread_id"), s("checkpoint_ns"), s("checkpoint_id")),
                v["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn type_zoo_crosses_between_sqlite_and_postgres_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path().join("zoo.db");
    std::fs::copy(fixtures().join("typezoo/sqlite/checkpoints.db"), &zoo).unwrap();

    // SQLite → PostgreSQL: one checkpoint is pickled as a whole, which PostgresSaver's
    // JSON document cannot hold: refused, with the reason, into the dead-letter file.
    let db = empty_database().await;
    let run = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&zoo),
        "postgresql",
        &pg_config(&db),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let refused = dead_letters(&dir.path().join("postgresql-public.dead-letter.jsonl"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("stored as \"pickle\""), "{refused:?}");
    let got = langgraph_read("postgres", &pg_url_for(&db), &["--typezoo"]);
    let keys: Vec<Key> = refused.into_iter().map(|r| r.0).collect();
    assert_reads_back(
        "type zoo sqlite → postgresql",
        &got,
        &zoo_oracle("sqlite"),
        &keys,
    );

    // PostgreSQL → SQLite: one channel blob is a pickle, which cannot be joined into a
    // msgpack checkpoint without decoding it; integers beyond 64 bits, floats at their
    // edges, bytearrays and DeltaChannel snapshots all arrive exactly.
    let source_db = pg_database(&["../typezoo/postgres/checkpoints.sql"]).await;
    let out = dir.path().join("zoo-out.db");
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&source_db),
        "sqlite",
        &serde_json::json!({ "connection_string": out.display().to_string() }),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let refused = dead_letters(&dir.path().join("zoo-out.db.dead-letter.jsonl"));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].1.contains("is stored as \"pickle\""),
        "{refused:?}"
    );
    let got = langgraph_read("sqlite", &out.display().to_string(), &["--typezoo"]);
    let keys: Vec<Key> = refused.into_iter().map(|r| r.0).collect();
    assert_reads_back(
        "type zoo postgresql → sqlite",
        &got,
        &zoo_oracle("postgres"),
        &keys,
    );
}

/// The type zoo as plainredis stores it, into PostgreSQL: the writes plainredis pickled
/// as whole `(task, channel, value)` tuples arrive as the value's own pickle, and
/// PostgresSaver reads every checkpoint as plainredis' saver read it.
#[tokio::test]
async fn type_zoo_from_plainredis_into_postgres_keeps_pickled_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = harness::redis_db();
    harness::redis_load(&url, "typezoo/redis/dump.jsonl").await;
    let db = empty_database().await;
    assert_ok(&migrate(
        dir.path(),
        "redis",
        &serde_json::json!({ "redis_url": url, "key_prefix": "lg:" }),
        "postgresql",
        &pg_config(&db),
    ));
    let got = langgraph_read("postgres", &pg_url_for(&db), &["--typezoo"]);
    let pickled = got
        .iter()
        .filter(|l| l["thread_id"] == "zoo-pickle")
        .flat_map(|l| l["pending_writes"].as_array().cloned().unwrap_or_default())
        .count();
    assert!(pickled >= 4, "the zoo-pickle thread's writes: {pickled}");
    assert_reads_back_with(
        "type zoo plainredis → postgresql",
        &got,
        &zoo_oracle("redis"),
        &[],
        WriteOrder::AnyOrder,
    );
}

/// Where LangGraph's read-back of a RedisSaver source differs from any store written in
/// LangGraph's msgpack by design of the two readers: RedisSaver gives `None` for a model
/// whose constructor rejects its own fields (the zoo's `Profile`: an alias without
/// `populate_by_name`) and for an exception (the `__error__` write's `ZooError`, whose
/// envelope holds only its `__notes__`); LangGraph's msgpack reader keeps the data.
fn only_redis_revival_losses(got: &Value, expected: &Value) -> bool {
    let mut out = Vec::new();
    harness::diff(got, expected, "", &mut out, 100);
    let by_design = |d: &String| {
        d.ends_with(" != null")
            && (d.contains("\"display_name\":\"Zoë") || d.contains("{\"__notes__\":"))
    };
    !out.is_empty() && out.iter().all(by_design)
}

/// The type zoo as langgraph-redis stores it, into SQLite and PostgreSQL: LangGraph
/// reads what RedisSaver read, apart from [`only_redis_revival_losses`].
#[tokio::test]
async fn type_zoo_from_langgraph_redis_into_sql_stores() {
    let dir = tempfile::tempdir().unwrap();
    let url = harness::redis_db();
    harness::redis_load(&url, "typezoo/redis-json/dump.jsonl").await;
    let allowed = Command::new(python())
        .current_dir(fixtures().join("typezoo"))
        .args([
            "-c",
            "import inspect, json, zoo_models as M; print(json.dumps(sorted(f'zoo_models.{n}' for n, o in vars(M).items() if inspect.isclass(o) and o.__module__ == 'zoo_models')))",
        ])
        .output()
        .unwrap();
    let allowed: Value = serde_json::from_slice(&allowed.stdout).expect("the zoo's classes");
    let oracle: BTreeMap<Key, Value> = zoo_oracle("redis_json")
        .into_iter()
        .map(|(k, v)| (k, sorted_writes(&v)))
        .collect();
    let source = serde_json::json!({ "redis_url": url });
    let out = dir.path().join("zoo.db");
    let sqlite = serde_json::json!({ "connection_string": out.display().to_string(), "allowed_json_modules": allowed });
    assert_ok(&migrate_verified(
        dir.path(),
        "redis",
        &source,
        "sqlite",
        &sqlite,
    ));
    let db = empty_database().await;
    let pg = serde_json::json!({ "connection_string": pg_url_for(&db), "allowed_json_modules": allowed });
    // Not --verify: LangGraph re-serializes some zoo values it read back into later
    // checkpoints of the same channel version, and PostgresSaver keeps one blob per
    // version (docs/stores.md); verify reports those threads, LangGraph reads the same.
    assert_ok(&migrate(dir.path(), "redis", &source, "postgresql", &pg));
    for (label, got) in [
        (
            "type zoo langgraph-redis → sqlite",
            langgraph_read("sqlite", &out.display().to_string(), &["--typezoo"]),
        ),
        (
            "type zoo langgraph-redis → postgresql",
            langgraph_read("postgres", &pg_url_for(&db), &["--typezoo"]),
        ),
    ] {
        let mut exact = 0;
        let mut by_design = 0;
        for line in &got {
            let line = sorted_writes(line);
            let expected = &oracle[&key_of(&line)];
            if &line == expected {
                exact += 1;
            } else {
                let mut out = Vec::new();
                harness::diff(&line, expected, "", &mut out, 10);
                assert!(
                    only_redis_revival_losses(&line, expected),
                    "{label}: {:?}: {out:#?}",
                    key_of(&line)
                );
                by_design += 1;
            }
        }
        println!(
            "LangGraph read-back {label}: {exact}/{} match, {by_design} differ only where RedisSaver's reader gives None (a model it cannot construct, an exception)",
            oracle.len()
        );
        assert_eq!(exact + by_design, oracle.len());
    }
}

async fn migration_versions(db: &str) -> Vec<i32> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg_url_for(db)).await.unwrap();
    sqlx::query_scalar("SELECT v FROM checkpoint_migrations ORDER BY v")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn pg_scalar(db: &str, sql: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg_url_for(db)).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// Migrates the SQLite fixture into `dest` (batches of 20, slowed down) while `cut`
/// ends the destination's connections three times (a failover, an idle timeout): each
/// batch whose send was lost is sent again after the retry, and the run ends with
/// every record exactly once (`--verify`).
async fn cut_connections_lose_and_duplicate_nothing(
    dir: &Path,
    dest: &str,
    dest_config: &Value,
    cut: impl AsyncFn(),
) {
    let source = sqlite_fixture(dir);
    let (source_config, dest_config) =
        (sqlite_source(&source).to_string(), dest_config.to_string());
    let args = [
        "--source",
        "sqlite",
        "--source-config",
        &source_config,
        "--destination",
        dest,
        "--dest-config",
        &dest_config,
        "--batch-size",
        "20",
        "--verify",
    ];
    let child = harness::spawn_cli(dir, &args, &[("CKPT_MIGRATE_FAULT", "slow:100")]);
    for tick in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        if tick % 2 == 1 && tick < 6 {
            cut().await;
        }
    }
    let run = harness::Run {
        output: child.wait_with_output().unwrap(),
    };
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    // A lost send shows as a failed batch write that was retried.
    assert!(run.stderr().contains("retrying in"), "{}", run.stderr());
    assert!(
        run.stdout().contains("equal: same records, each once"),
        "{}",
        run.stdout()
    );
}

#[tokio::test]
async fn cut_connections_to_postgres_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = empty_database().await;
    let dest = serde_json::json!({ "connection_string": pg_url_for(&db) });
    let cut = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    );
    cut_connections_lose_and_duplicate_nothing(dir.path(), "postgresql", &dest, async || {
        pg_scalar(&db, &cut).await;
    })
    .await;
}

#[tokio::test]
// The lock orders test threads (each test has its own runtime), not tasks.
#[allow(clippy::await_holding_lock)]
async fn cut_connections_to_redis_lose_and_duplicate_nothing() {
    let _server = SEARCH_REDIS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let url = search_redis();
    flush(&url);
    let dest = serde_json::json!({ "redis_url": url });
    cut_connections_lose_and_duplicate_nothing(dir.path(), "redis", &dest, async || {
        harness::redis_exec(&url, &[&["CLIENT", "KILL", "TYPE", "normal"]]).await;
    })
    .await;
}

/// Into langgraph-redis with `on_conflict: fail`: a re-run over identical documents
/// passes, and a checkpoint document edited since is named and stops the run.
#[tokio::test]
// The lock orders test threads (each test has its own runtime), not tasks.
#[allow(clippy::await_holding_lock)]
async fn redis_fail_mode_refuses_only_other_content() {
    let _server = SEARCH_REDIS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let url = search_redis();
    flush(&url);
    let dest = serde_json::json!({ "redis_url": url, "on_conflict": "fail" });
    for _ in 0..2 {
        assert_ok(&migrate_with(
            dir.path(),
            "sqlite",
            &sqlite_source(&source),
            "redis",
            &dest,
            &["--restart"],
        ));
    }
    let mut conn = crate::harness::redis_connection(&url);
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("checkpoint:*")
        .query(&mut conn)
        .unwrap();
    keys.sort();
    let () = redis::cmd("JSON.SET")
        .arg(&keys[0])
        .arg("$.step")
        .arg("999")
        .query(&mut conn)
        .unwrap();
    let failed = migrate_with(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "redis",
        &dest,
        &["--restart"],
    );
    assert_eq!(failed.code(), 3, "{}", failed.stderr());
    assert!(
        failed
            .stderr()
            .contains("already exists with other content (on_conflict: fail)")
            && failed.stderr().contains("checkpoint_id="),
        "{}",
        failed.stderr()
    );
}

#[tokio::test]
async fn reruns_never_duplicate_and_conflict_modes_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let db = empty_database().await;
    let dest = |mode: &str| serde_json::json!({ "connection_string": pg_url_for(&db), "on_conflict": mode });
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("skip"),
    ));
    let counts = "SELECT (SELECT count(*) FROM checkpoints) * 1000000 + (SELECT count(*) FROM checkpoint_writes) * 1000 + (SELECT count(*) FROM checkpoint_migrations)";
    let first = pg_scalar(&db, counts).await;

    // Again, and with `fail`: identical rows are not conflicts.
    for mode in ["skip", "fail"] {
        let again = migrate(
            dir.path(),
            "sqlite",
            &sqlite_source(&source),
            "postgresql",
            &dest(mode),
        );
        assert_ok(&again);
        assert!(
            again
                .stderr()
                .contains("0 checkpoint(s) written, 271 already there and kept"),
            "{}",
            again.stderr()
        );
        assert_eq!(pg_scalar(&db, counts).await, first);
    }

    // A row the destination holds with other content: `skip` keeps it, `fail` stops
    // naming it and writes nothing of the batch, `overwrite` replaces it.
    harness::pg_execute(
        &db,
        &["UPDATE checkpoints SET metadata = '{\"edited\": true}' WHERE checkpoint_id = (SELECT min(checkpoint_id) FROM checkpoints)"],
    )
    .await;
    let edited = "SELECT count(*) FROM checkpoints WHERE metadata = '{\"edited\": true}'";
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("skip"),
    ));
    assert_eq!(pg_scalar(&db, edited).await, 1);
    let failed = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("fail"),
    );
    assert_eq!(failed.code(), 3, "{}", failed.stderr());
    assert!(
        failed
            .stderr()
            .contains("already exists with other content (on_conflict: fail)")
            && failed.stderr().contains("checkpoint_id="),
        "{}",
        failed.stderr()
    );
    assert_eq!(pg_scalar(&db, edited).await, 1);
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("overwrite"),
    ));
    assert_eq!(pg_scalar(&db, edited).await, 0);
    assert_eq!(pg_scalar(&db, counts).await, first);

    // Only a pending write differs, and its checkpoint is not there: `fail` looks at
    // the keys of both tables before it compares, and still names the write.
    harness::pg_execute(
        &db,
        &[
            "UPDATE checkpoint_writes SET blob = '\\x00' WHERE (checkpoint_id, task_id, idx) = (SELECT checkpoint_id, task_id, idx FROM checkpoint_writes ORDER BY checkpoint_id, task_id, idx LIMIT 1)",
            "DELETE FROM checkpoints WHERE checkpoint_id = (SELECT min(checkpoint_id) FROM checkpoint_writes)",
        ],
    )
    .await;
    // (The failed run before left its state: this one starts over.)
    let failed = migrate_with(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("fail"),
        &["--restart"],
    );
    assert_eq!(failed.code(), 3, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("pending write") && failed.stderr().contains("task_id="),
        "{}",
        failed.stderr()
    );
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &dest("overwrite"),
    ));
    assert_eq!(pg_scalar(&db, counts).await, first);

    // A live database: a checkpoint of a migrated thread that the source does not have
    // (the app went on) is merged with, never dropped, whatever the mode.
    harness::pg_execute(
        &db,
        &["INSERT INTO checkpoints SELECT thread_id, checkpoint_ns, 'ffff-newer-than-the-source', checkpoint_id, type, checkpoint, metadata FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1"],
    )
    .await;
    for mode in ["skip", "overwrite"] {
        assert_ok(&migrate(
            dir.path(),
            "sqlite",
            &sqlite_source(&source),
            "postgresql",
            &dest(mode),
        ));
    }
    assert_eq!(
        pg_scalar(
            &db,
            "SELECT count(*) FROM checkpoints WHERE checkpoint_id = 'ffff-newer-than-the-source'"
        )
        .await,
        1
    );

    // The same for SQLite.
    let out = dir.path().join("out.db");
    let sqlite_dest = |mode: &str| serde_json::json!({ "connection_string": out.display().to_string(), "on_conflict": mode });
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "sqlite",
        &sqlite_dest("skip"),
    ));
    let again = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "sqlite",
        &sqlite_dest("fail"),
    );
    assert_ok(&again);
    assert!(
        again
            .stderr()
            .contains("0 checkpoint(s) written, 271 already there and kept"),
        "{}",
        again.stderr()
    );
    let edit = Command::new(python())
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update checkpoints set metadata='{}' where rowid=1\"); c.commit()"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(edit.success());
    let failed = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "sqlite",
        &sqlite_dest("fail"),
    );
    assert_eq!(failed.code(), 3, "{}", failed.stderr());
    assert!(
        failed
            .stderr()
            .contains("already exists with a different checkpoint (on_conflict: fail)"),
        "{}",
        failed.stderr()
    );
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "sqlite",
        &sqlite_dest("overwrite"),
    ));
    let got = langgraph_read("sqlite", &out.display().to_string(), &[]);
    assert_reads_back(
        "sqlite → sqlite after overwrite",
        &got,
        &harness::oracle("sqlite"),
        &[],
    );
}

#[tokio::test]
async fn a_newer_postgres_saver_schema_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let db = empty_database().await;
    harness::pg_execute(
        &db,
        &[
            "CREATE TABLE checkpoint_migrations (v INTEGER PRIMARY KEY)",
            "INSERT INTO checkpoint_migrations SELECT generate_series(0, 12)",
        ],
    )
    .await;
    let run = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &pg_config(&db),
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("migration version 12 is newer than the newest this ckpt-migrate knows (9"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        pg_scalar(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'checkpoints'"
        )
        .await,
        0
    );
    // And `create_tables: false` on an empty database says so.
    let db = empty_database().await;
    let run = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &serde_json::json!({ "connection_string": pg_url_for(&db), "create_tables": false }),
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("has no PostgresSaver tables and create_tables is false"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn store_destinations_verify_and_resume_after_kill_9() {
    let db = empty_database().await;
    for dest in [
        format!(
            "postgresql\ndestination_config: {{connection_string: '{}'}}",
            pg_url_for(&db)
        ),
        "sqlite\ndestination_config: {connection_string: out.db}".to_owned(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let yaml = format!(
            "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: {dest}\nbatch_size: 20\n"
        );
        let config = dir.path().join("migration.yaml");
        std::fs::write(&config, yaml).unwrap();
        let config = config.display().to_string();
        kill_9_then_resume(dir.path(), config).await;
    }
    let got = langgraph_read("postgres", &pg_url_for(&db), &[]);
    assert_reads_back(
        "sqlite → postgresql after kill -9 and resume",
        &got,
        &harness::oracle("sqlite"),
        &[],
    );
}

/// Runs `tests/readback/resume.py`: resumes the fixture's interrupted thread with the
/// fixture's own graph on a store and returns the outcome (final state, next nodes,
/// history length).
fn resume_thread(kind: &str, target: &str, thread: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/readback/resume.py");
    let out = Command::new(python())
        .arg(&script)
        .args([kind, target, thread])
        .output()
        .expect("run resume.py");
    assert!(
        out.status.success(),
        "resuming {thread} on {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("resume.py prints one JSON object")
}

/// A graph carries on from a migrated store: the thread that waits on a human
/// (`interrupt`) resumes with `Command(resume=…)` on the destination and reaches the
/// same final state, with the same history length, as on the source.
#[tokio::test]
async fn an_interrupted_thread_resumes_on_the_migrated_store_like_on_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let db = empty_database().await;
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &pg_config(&db),
    ));
    let copy = dir.path().join("back.db");
    assert_ok(&migrate(
        dir.path(),
        "postgresql",
        &pg_config(&db),
        "sqlite",
        &serde_json::json!({ "connection_string": copy.display().to_string() }),
    ));
    let on_source = resume_thread("sqlite", &source.display().to_string(), "customer-0004");
    assert_eq!(
        on_source["next"],
        serde_json::json!([]),
        "the run finished: {on_source}"
    );
    let on_postgres = resume_thread("postgres", &pg_url_for(&db), "customer-0004");
    assert_eq!(on_postgres, on_source, "sqlite → postgresql");
    let on_sqlite = resume_thread("sqlite", &copy.display().to_string(), "customer-0004");
    assert_eq!(on_sqlite, on_source, "sqlite → postgresql → sqlite");
}

/// The dry run says what a run would do to a store destination and writes nothing.
#[tokio::test]
async fn dry_run_shows_the_plan_for_a_store_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let db = empty_database().await;
    let dry = |dest: &str, config: &Value| {
        migrate_with(
            dir.path(),
            "sqlite",
            &sqlite_source(&source),
            dest,
            config,
            &["--dry-run"],
        )
    };
    let run = dry("postgresql", &pg_config(&db));
    assert_ok(&run);
    assert!(
        run.stdout()
            .contains("would: create PostgresSaver's tables in schema public (migrations 0..=9"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        pg_scalar(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0
    );
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &pg_config(&db),
    ));
    let run = dry("postgresql", &pg_config(&db));
    assert!(
        run.stdout().contains("would: find 271 checkpoint(s) of these threads already in the destination (on_conflict: skip)"),
        "{}",
        run.stdout()
    );

    let out = dir.path().join("plan.db");
    let run = dry(
        "sqlite",
        &serde_json::json!({ "connection_string": out.display().to_string() }),
    );
    assert!(
        run.stdout()
            .contains("with SqliteSaver's tables, in WAL mode"),
        "{}",
        run.stdout()
    );
    assert!(!out.exists(), "the dry run created the file");
}

/// The Redis with RedisJSON and RediSearch that `scripts/test-servers.sh` starts for
/// langgraph-redis destinations and RedisStore. Its search indexes live in database 0
/// only, so the tests that use it take [`SEARCH_REDIS`] first (one at a time: one of
/// them empties it before each step).
pub(crate) fn search_redis() -> String {
    std::env::var("CKPT_TEST_REDIS_SEARCH_URL").expect(
        "CKPT_TEST_REDIS_SEARCH_URL is not set: run the tests with scripts/test.sh, which starts \
         valkey-server with RedisJSON and RediSearch on loopback",
    )
}

/// Held by every test that uses [`search_redis`].
pub(crate) static SEARCH_REDIS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flush(url: &str) {
    let mut conn = crate::harness::redis_connection(url);
    let () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
}

/// A RedisSaver read-back without the two keys RedisSaver adds to every checkpoint it
/// reads (`type`, `pending_sends`: its document's own fields), so it compares with
/// another saver's.
fn without_redis_fields(lines: Vec<Value>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|mut l| {
            if let Some(cp) = l["checkpoint"].as_object_mut() {
                cp.remove("type");
                cp.remove("pending_sends");
            }
            l
        })
        .collect()
}

fn oracle_without_redis_fields(name: &str, zoo: bool) -> BTreeMap<Key, Value> {
    let oracle = if zoo {
        zoo_oracle(name)
    } else {
        harness::oracle(name)
    };
    oracle
        .into_iter()
        .map(|(k, v)| (k, without_redis_fields(vec![v]).remove(0)))
        .collect()
}

/// Every source into langgraph-redis's layout, read back by LangGraph's `RedisSaver`;
/// re-runs write nothing twice; values its JSON form cannot hold are refused with the
/// reason (or written in the nearest form with `allow_lossy`); kill -9 and resume.
#[tokio::test]
// The lock orders test threads (each test has its own runtime), not tasks.
#[allow(clippy::await_holding_lock)]
async fn every_source_into_langgraph_redis_reads_back_like_the_source() {
    let _server = SEARCH_REDIS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let url = search_redis();
    let allow = [
        "--allow",
        "fixture_models.Address,fixture_models.CustomerProfile,fixture_models.OrderRef",
    ];
    let dest = serde_json::json!({ "redis_url": url });
    for source in pair_sources(dir.path()).await {
        flush(&url);
        let run = migrate_verified(dir.path(), source.kind, &source.config, "redis", &dest);
        assert_ok(&run);
        let got = without_redis_fields(langgraph_read("redis", &url, &allow));
        let oracle = oracle_without_redis_fields(source.oracle, false);
        assert_reads_back_with(
            &format!("{} → redis", source.name),
            &got,
            &oracle,
            &[],
            WriteOrder::AnyOrder,
        );
    }
    // Again: nothing is written twice.
    let sqlite = sqlite_fixture(dir.path());
    let again = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&sqlite),
        "redis",
        &dest,
    );
    assert_ok(&again);
    assert!(
        again
            .stderr()
            .contains("0 checkpoint(s) written, 271 already there and kept"),
        "{}",
        again.stderr()
    );

    // The type zoo: what RedisSaver's JSON form cannot hold exactly is refused, named.
    flush(&url);
    let zoo = dir.path().join("zoo.db");
    std::fs::copy(fixtures().join("typezoo/sqlite/checkpoints.db"), &zoo).unwrap();
    let run = migrate(dir.path(), "sqlite", &sqlite_source(&zoo), "redis", &dest);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let refused = dead_letters(&dir.path().join("redis-checkpoint.dead-letter.jsonl"));
    assert_eq!(refused.len(), 13, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r.1.contains("an integer above 2^63")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|r| r.1.contains("stored as \"pickle\"")),
        "{refused:?}"
    );
    let got = without_redis_fields(langgraph_read("redis", &url, &["--typezoo"]));
    let keys: Vec<Key> = refused.into_iter().map(|r| r.0).collect();
    assert_reads_back_with(
        "type zoo sqlite → redis",
        &got,
        &oracle_without_redis_fields("sqlite", true),
        &keys,
        WriteOrder::AnyOrder,
    );
    // With allow_lossy the nearest form is written and the losses are listed.
    flush(&url);
    std::fs::remove_file(dir.path().join("redis-checkpoint.dead-letter.jsonl")).unwrap();
    let lossy = serde_json::json!({ "redis_url": url, "allow_lossy": true, "ttl_minutes": 60 });
    let run = migrate(dir.path(), "sqlite", &sqlite_source(&zoo), "redis", &lossy);
    assert!(
        run.stderr()
            .contains("written in the nearest form (allow_lossy)"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("read 30  written 29"),
        "{}",
        run.stderr()
    );
    // ttl_minutes: every key written expires, as with RedisSaver's default_ttl.
    let mut conn = crate::harness::redis_connection(&url);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(!keys.is_empty());
    for key in keys.iter().filter(|k| !k.starts_with("idx:")) {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
        assert!((3500..=3600).contains(&ttl), "{key}: TTL {ttl}");
    }

    // kill -9 mid-run, then --resume --verify (in a directory of its own: the state
    // files of the runs above are in this one).
    flush(&url);
    let run_dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: sqlite\nsource_config: {{connection_string: '{}'}}\ndestination_type: redis\ndestination_config: {{redis_url: '{url}'}}\nbatch_size: 20\n",
        sqlite.display()
    );
    let config = run_dir.path().join("redis.yaml");
    std::fs::write(&config, yaml).unwrap();
    let config = config.display().to_string();
    kill_9_then_resume(run_dir.path(), config).await;
    let got = without_redis_fields(langgraph_read("redis", &url, &allow));
    assert_reads_back_with(
        "sqlite → redis after kill -9 and resume",
        &got,
        &oracle_without_redis_fields("sqlite", false),
        &[],
        WriteOrder::AnyOrder,
    );
}

/// Kills a run of `config` in `dir` mid-way with SIGKILL, then `--resume --verify`.
async fn kill_9_then_resume(dir: &Path, config: String) {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        harness::kill_9_after_three_batches(&dir, &config);
        harness::resume_and_verify(&dir, &config);
    })
    .await
    .unwrap();
}

/// A SQLite destination that another process holds locked: the run waits
/// `busy_timeout_seconds`, retries, and then stops naming the lock; nothing is lost
/// and the same command with `--resume` finishes once the lock is gone.
#[test]
fn a_locked_sqlite_destination_is_waited_for_then_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let out = dir.path().join("locked.db");
    let dest = serde_json::json!({ "connection_string": out.display().to_string(), "busy_timeout_seconds": 1 });
    // Another process holds the database's lock.
    let mut holder = Command::new(python())
        .args([
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); \
             c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let config = dir.path().join("locked.yaml");
    std::fs::write(
        &config,
        format!(
            "source_type: sqlite\nsource_config: {{connection_string: '{}'}}\ndestination_type: sqlite\ndestination_config: {dest}\nmax_retries: 1\nretry_budget_seconds: 2\n",
            source.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let run = cli_env(dir.path(), &["--config", &config], &[]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("database is locked")
            && run.stderr().contains(
                "another process held the write lock longer than busy_timeout_seconds = 1"
            ),
        "{}",
        run.stderr()
    );
    // It failed before its first batch: the next run starts over and finishes.
    harness::finish_and_verify(dir.path(), &config);
}

/// A JSON export restored into PostgreSQL survives kill -9: `--resume` continues at the
/// file and item after the last confirmed batch.
#[tokio::test]
async fn restoring_an_export_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let export = dir.path().join("backup");
    assert_ok(&migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "json",
        &serde_json::json!({ "output_dir": export.display().to_string() }),
    ));
    let db = empty_database().await;
    let run_dir = tempfile::tempdir().unwrap();
    let config = run_dir.path().join("restore.yaml");
    std::fs::write(
        &config,
        format!(
            "source_type: json\nsource_config: {{path: '{}'}}\ndestination_type: postgresql\ndestination_config: {{connection_string: '{}'}}\nbatch_size: 20\n",
            export.display(),
            pg_url_for(&db)
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    kill_9_then_resume(run_dir.path(), config).await;
    let got = langgraph_read("postgres", &pg_url_for(&db), &[]);
    assert_reads_back(
        "json export → postgresql after kill -9 and resume",
        &got,
        &harness::oracle("sqlite"),
        &[],
    );
}
