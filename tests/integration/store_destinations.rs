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

/// Fields that hold a Python `set` inside a pydantic model: LangGraph gives them back in
/// the reading process's hash order, which differs between processes, so they are
/// compared as multisets.
const SET_FIELDS: &[&str] = &["labels"];

/// The Python of the test venv, where `scripts/setup.sh` installs the pinned
/// LangGraph savers.
fn python() -> PathBuf {
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

fn same(a: &Value, b: &Value, field: &str) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, k)))
        }
        (Value::Array(x), Value::Array(y)) if SET_FIELDS.contains(&field) => {
            let sorted = |v: &[Value]| {
                let mut s: Vec<String> = v.iter().map(Value::to_string).collect();
                s.sort();
                s
            };
            sorted(x) == sorted(y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w, field))
        }
        _ => a == b,
    }
}

/// Compares LangGraph's read-back of the destination with its read-back of the
/// source: every checkpoint the destination holds must equal the source's, and the
/// only ones missing are `refused` (in the dead-letter file).
fn assert_reads_back(label: &str, got: &[Value], oracle: &BTreeMap<Key, Value>, refused: &[Key]) {
    let mut matched = 0;
    let mut differ = Vec::new();
    for line in got {
        let key = key_of(line);
        match oracle.get(&key) {
            Some(expected) if same(line, expected, "") => matched += 1,
            Some(expected) => {
                let mut out = Vec::new();
                harness::diff(line, expected, "", &mut out, 5);
                differ.push(format!("{key:?}: {out:?}"));
            }
            None => differ.push(format!("{key:?}: not in the source")),
        }
    }
    let expected = oracle.len() - refused.len();
    println!("LangGraph read-back {label}: {matched}/{expected} match");
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

fn migrate(
    dir: &Path,
    source: &str,
    source_config: &Value,
    dest: &str,
    dest_config: &Value,
) -> harness::Run {
    cli_env(
        dir,
        &[
            "--source",
            source,
            "--source-config",
            &source_config.to_string(),
            "--destination",
            dest,
            "--dest-config",
            &dest_config.to_string(),
            "--batch-size",
            "40",
        ],
        &[],
    )
}

fn sqlite_source(path: &Path) -> Value {
    serde_json::json!({ "connection_string": path.display().to_string() })
}

fn pg_config(db: &str) -> Value {
    serde_json::json!({ "connection_string": pg_url_for(db) })
}

fn assert_ok(run: &harness::Run) {
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
}

/// An empty database on the test server.
async fn empty_database() -> String {
    pg_database(&[]).await
}

#[tokio::test]
async fn sqlite_to_postgres_is_read_by_postgres_saver_like_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(dir.path());
    let db = empty_database().await;
    let run = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "postgresql",
        &pg_config(&db),
    );
    assert_ok(&run);
    let got = langgraph_read("postgres", &pg_url_for(&db), &["--setup"]);
    assert_reads_back("sqlite → postgresql", &got, &harness::oracle("sqlite"), &[]);
    // PostgresSaver.setup() found every migration recorded: nothing ran.
    let versions = migration_versions(&db).await;
    assert_eq!(versions, (0..=9).collect::<Vec<i32>>());
}

#[tokio::test]
async fn postgres_to_sqlite_is_read_by_sqlite_saver_like_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = pg_database(&["checkpoints.sql"]).await;
    let out = dir.path().join("new/out.db");
    let run = migrate(
        dir.path(),
        "postgresql",
        &pg_config(&db),
        "sqlite",
        &serde_json::json!({ "connection_string": format!("sqlite:///{}", out.display()) }),
    );
    assert_ok(&run);
    let got = langgraph_read("sqlite", &out.display().to_string(), &[]);
    assert_reads_back(
        "postgresql → sqlite",
        &got,
        &harness::oracle("postgres"),
        &[],
    );
    let mode = Command::new(python())
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma journal_mode').fetchone()[0])"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "wal");
}

#[tokio::test]
async fn postgres_to_postgres_schema_and_sqlite_to_sqlite() {
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

    let source = sqlite_fixture(dir.path());
    let out = dir.path().join("copy.db");
    let run = migrate(
        dir.path(),
        "sqlite",
        &sqlite_source(&source),
        "sqlite",
        &serde_json::json!({ "connection_string": out.display().to_string() }),
    );
    assert_ok(&run);
    let got = langgraph_read("sqlite", &out.display().to_string(), &[]);
    assert_reads_back("sqlite → sqlite", &got, &harness::oracle("sqlite"), &[]);
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
        let dir_path = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut child = harness::spawn_cli(
                &dir_path,
                &["--config", &config],
                &[("CKPT_MIGRATE_FAULT", "slow:40")],
            );
            harness::wait_until("three confirmed batches", || {
                harness::state_of(&dir_path)
                    .is_some_and(|s| s["counts"]["written"].as_u64().unwrap_or(0) >= 60)
            });
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let resumed = cli_env(
                &dir_path,
                &["--config", &config, "--resume", "--verify"],
                &[],
            );
            assert_eq!(
                resumed.code(),
                0,
                "{}{}",
                resumed.stdout(),
                resumed.stderr()
            );
            assert!(
                resumed.stdout().contains("equal: same records, each once"),
                "{}",
                resumed.stdout()
            );
        })
        .await
        .unwrap();
    }
    let got = langgraph_read("postgres", &pg_url_for(&db), &[]);
    assert_reads_back(
        "sqlite → postgresql after kill -9 and resume",
        &got,
        &harness::oracle("sqlite"),
        &[],
    );
}
