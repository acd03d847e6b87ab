//! Shared helpers: fixture paths, the LangGraph oracle, running the CLI in a temp dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ckpt_migrate::codec;
use ckpt_migrate::filters::FilterConfig;
use ckpt_migrate::record::Checkpoint;
use ckpt_migrate::sources::{BatchLimits, Source};
use ckpt_migrate::stores::sqlite::SqliteSource;
use ckpt_migrate::stores::sqlite::config::SqliteSourceConfig;
use serde_json::Value;

pub type Key = (String, String, String);

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A private copy of the SqliteSaver fixture (opening a WAL database may create
/// files next to it).
pub fn sqlite_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("checkpoints.db");
    std::fs::copy(fixtures().join("sqlite/checkpoints.db"), &path).expect("copy fixture");
    path
}

/// Runs one SQL statement on a SQLite file (created when missing): a test's own change
/// to a fixture.
pub async fn sqlite_execute(path: &Path, sql: &str) {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

/// LangGraph's own read-back of a fixture, by key.
pub fn oracle(name: &str) -> BTreeMap<Key, Value> {
    let text = std::fs::read_to_string(fixtures().join(format!("oracle/{name}.jsonl")))
        .expect("oracle file");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("oracle line");
            (key_of(&v), v)
        })
        .collect()
}

pub fn key_of(v: &Value) -> Key {
    let s = |k: &str| v[k].as_str().expect(k).to_owned();
    (s("thread_id"), s("checkpoint_ns"), s("checkpoint_id"))
}

pub fn record_key(r: &Checkpoint) -> Key {
    (
        r.key.thread_id.clone(),
        r.key.checkpoint_ns.clone(),
        r.key.checkpoint_id.clone(),
    )
}

/// A record in the form of an oracle line.
pub fn view_line(r: &Checkpoint) -> Value {
    let view = r.view.as_ref().expect("decoded");
    serde_json::json!({
        "thread_id": r.key.thread_id,
        "checkpoint_ns": r.key.checkpoint_ns,
        "checkpoint_id": r.key.checkpoint_id,
        "parent_checkpoint_id": r.parent_checkpoint_id,
        "checkpoint": view.checkpoint,
        "metadata": view.metadata,
        "pending_writes": view.pending_writes_json(),
    })
}

/// Every record a source gives, decoded (a failed read fails the test), and the
/// number of vanished keys.
pub async fn drain(source: &mut dyn Source, batch: usize) -> (Vec<Checkpoint>, u64) {
    let (out, vanished, failed) = drain_all(source, batch).await;
    assert!(failed.is_empty(), "{failed:?}");
    (out, vanished)
}

/// Every record a source gives, decoded, the number of vanished keys, and the reads
/// that failed.
pub async fn drain_all(
    source: &mut dyn Source,
    batch: usize,
) -> (Vec<Checkpoint>, u64, Vec<ckpt_migrate::sources::FailedRead>) {
    let limits = BatchLimits {
        max_records: batch,
        max_bytes: usize::MAX,
    };
    let mut out = Vec::new();
    let mut vanished = 0;
    let mut failed = Vec::new();
    while let Some(b) = source.next_batch(limits).await.expect("batch") {
        failed.extend(b.failed);
        vanished += b.vanished;
        for mut r in b.records {
            codec::decode_record(&mut r).expect("decode");
            out.push(r);
        }
    }
    (out, vanished, failed)
}

/// Reads every record of a SQLite database through the library, decoded.
pub async fn read_sqlite(path: &Path, batch: usize) -> Vec<Checkpoint> {
    let filters = FilterConfig::default().compile().unwrap();
    let config = SqliteSourceConfig {
        connection_string: format!("sqlite://{}", path.display()),
    };
    let mut source = SqliteSource::open(&config, &filters).await.expect("open");
    drain(&mut source, batch).await.0
}

/// The differences between two JSON values, as paths (at most `limit`).
pub fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, &format!("{path}.{k}"), out, limit),
                    None => out.push(format!("{path}.{k}: only on the left")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: only on the right: {}", y[k]));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out, limit);
            }
        }
        (Value::Number(x), Value::Number(y)) if same_number(x, y) => {}
        _ if a == b => {}
        _ => out.push(format!("{path}: {} != {}", short(a), short(b))),
    }
}

/// Numbers are equal when they are the same number, however written (Python writes
/// `1e+308` and `1e-05`, we write `1e308` and `1e-5`). Integers compare by value, so
/// one beyond 64 bits equals only the same digits.
pub fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let (x, y) = (a.to_string(), b.to_string());
    if x == y {
        return true;
    }
    let integer = |s: &str| !s.contains(['.', 'e', 'E']);
    if integer(&x) || integer(&y) {
        return match (x.parse::<i128>(), y.parse::<i128>()) {
            (Ok(p), Ok(q)) => p == q,
            _ => false,
        };
    }
    match (x.parse::<f64>(), y.parse::<f64>()) {
        (Ok(p), Ok(q)) => p.to_bits() == q.to_bits(),
        _ => false,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// Runs the CLI in `dir`.
pub fn cli(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt-migrate"))
        .args(args)
        .current_dir(dir)
        .env_remove("CKPT_MIGRATE_LOG")
        .output()
        .expect("run ckpt-migrate");
    Run { output }
}

/// Runs the CLI in `dir` from (`kind`, `source` config) to (`dest_kind`, `dest`
/// config), plus `extra` flags.
pub fn cli_between(
    dir: &Path,
    (kind, source): (&str, &Value),
    (dest_kind, dest): (&str, &Value),
    extra: &[&str],
) -> Run {
    let (source, dest) = (source.to_string(), dest.to_string());
    let mut args = vec![
        "--source",
        kind,
        "--source-config",
        &source,
        "--destination",
        dest_kind,
        "--dest-config",
        &dest,
    ];
    args.extend_from_slice(extra);
    cli(dir, &args)
}

/// Writes a YAML config and runs `--config` with it (plus `extra` flags).
pub fn cli_yaml(dir: &Path, yaml: &str, extra: &[&str]) -> Run {
    let path = dir.join("migration.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli(dir, &args)
}

/// Reads every exported object from a JSON export directory (either encoding).
pub fn read_json_export(dir: &Path) -> Vec<Value> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .unwrap();
    let mut out = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let text = std::fs::read_to_string(dir.join(file["file"].as_str().unwrap())).unwrap();
        if manifest["encoding"] == "json-array" {
            let items: Vec<Value> = serde_json::from_str(&text).unwrap();
            out.extend(items);
        } else {
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    out
}

/// The oracle's part of an exported object (pending writes reduced to the oracle's keys).
pub fn oracle_view_of(export: &Value) -> Value {
    let writes: Vec<Value> = export["pending_writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| serde_json::json!({"task_id": w["task_id"], "channel": w["channel"], "value": w["value"]}))
        .collect();
    serde_json::json!({
        "thread_id": export["thread_id"],
        "checkpoint_ns": export["checkpoint_ns"],
        "checkpoint_id": export["checkpoint_id"],
        "parent_checkpoint_id": export["parent_checkpoint_id"],
        "checkpoint": export["checkpoint"],
        "metadata": export["metadata"],
        "pending_writes": writes,
    })
}

/// The private PostgreSQL server started by `scripts/test.sh`.
pub fn pg_url() -> String {
    std::env::var("CKPT_TEST_PG_URL").expect(
        "CKPT_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts a \
         PostgreSQL server on loopback (or point CKPT_TEST_PG_URL at a superuser URL)",
    )
}

/// `url` with its database replaced.
pub fn pg_url_for(db: &str) -> String {
    let url = pg_url();
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{db}")
}

/// A fresh database on the test server with the given fixture dumps loaded (by
/// `psql`, as pg_dump files need). Returns its name.
pub async fn pg_database(dumps: &[&str]) -> String {
    use sqlx::Connection as _;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&pg_url())
        .await
        .expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    for dump in dumps {
        let status = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &pg_url_for(&name),
                "-f",
            ])
            .arg(fixtures().join("postgres").join(dump))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("psql");
        assert!(status.success(), "loading {dump}");
    }
    name
}

/// Runs SQL statements in a database of the test server.
pub async fn pg_execute(db: &str, statements: &[&str]) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg_url_for(db)).await.unwrap();
    for s in statements {
        sqlx::query(s)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Reads every record of a PostgreSQL source through the library, decoded.
pub async fn read_postgres(
    db: &str,
    table_name: Option<&str>,
    filters: &FilterConfig,
    pushdown: ckpt_migrate::sources::Pushdown,
    batch: usize,
) -> Vec<Checkpoint> {
    use ckpt_migrate::stores::postgres::PostgresSource;
    let compiled = filters.compile().unwrap();
    let config = ckpt_migrate::stores::postgres::config::PostgresSourceConfig {
        connection_string: pg_url_for(db),
        table_name: table_name.map(str::to_owned),
        upgrade: Default::default(),
        thread_id_template: None,
        connections: None,
    };
    let mut source = PostgresSource::open(&config, &compiled, pushdown)
        .await
        .expect("open");
    let limits = BatchLimits {
        max_records: batch,
        max_bytes: usize::MAX,
    };
    let mut out = Vec::new();
    while let Some(b) = source.next_batch(limits).await.expect("batch") {
        assert!(b.failed.is_empty(), "{:?}", b.failed);
        for mut r in b.records {
            codec::decode_record(&mut r).expect("decode");
            out.push(r);
        }
    }
    out
}

/// Runs the CLI in `dir` with extra environment variables.
pub fn cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ckpt-migrate"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CKPT_MIGRATE_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    Run {
        output: command.output().expect("run ckpt-migrate"),
    }
}

/// Starts the CLI in the background (for kill and signal tests).
pub fn spawn_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ckpt-migrate"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CKPT_MIGRATE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().expect("spawn ckpt-migrate")
}

/// The resume state file of the single run configuration used in `dir`.
/// Runs a migration slowed down (`CKPT_MIGRATE_FAULT=slow:100`) and kills it with
/// SIGKILL once three batches of 20 are confirmed in the state file, which must then
/// still say `running`.
pub fn kill_9_after_three_batches(dir: &Path, config: &str) {
    let mut child = spawn_cli(
        dir,
        &["--config", config],
        &[("CKPT_MIGRATE_FAULT", "slow:100")],
    );
    wait_until("three confirmed batches", || {
        state_of(dir).is_some_and(|s| s["counts"]["written"].as_u64().unwrap_or(0) >= 60)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(state_of(dir).unwrap()["status"], "running");
}

/// `--resume --verify` finishes the run (continuing an interrupted one) and proves the
/// destination equals the source.
pub fn resume_and_verify(dir: &Path, config: &str) {
    let resumed = finish_and_verify(dir, config);
    assert!(
        resumed.stderr().contains("resumed after"),
        "{}",
        resumed.stderr()
    );
}

/// `--resume --verify` runs to the end, from wherever an earlier run stopped (or from
/// the start), and `verify` says equal.
pub fn finish_and_verify(dir: &Path, config: &str) -> Run {
    let resumed = cli_env(dir, &["--config", config, "--resume", "--verify"], &[]);
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
    resumed
}

pub fn state_of(dir: &Path) -> Option<Value> {
    let states = dir.join(".ckpt-migrate");
    let entry = std::fs::read_dir(states).ok()?.find_map(|e| {
        let p = e.ok()?.path();
        (p.extension()? == "json").then_some(p)
    })?;
    serde_json::from_slice(&std::fs::read(entry).ok()?).ok()
}

/// Waits (bounded) until `done` holds.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The private Redis server (with RedisJSON) started by `scripts/test.sh`.
pub fn redis_url() -> String {
    std::env::var("CKPT_TEST_REDIS_URL").expect(
        "CKPT_TEST_REDIS_URL is not set: run the tests with scripts/test.sh, which starts \
         Redis with the RedisJSON module on loopback",
    )
}

/// An empty database of its own on the test server for each caller (the server has 1024).
pub fn redis_db() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(n < 1024, "out of Redis databases");
    let url = format!("{}/{n}", redis_url());
    // Empty, even when an earlier run of the tests used the same server.
    let mut conn = redis_connection(&url);
    let () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
    url
}

/// A blocking connection to the test server that gives up instead of waiting for
/// ever: a server that crashed or hangs fails the test that asked, not the whole run.
/// (The async connections have the client's own timeouts.)
pub fn redis_connection(url: &str) -> redis::Connection {
    let timeout = std::time::Duration::from_secs(30);
    let conn = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to the test Redis server: {e}"));
    conn.set_read_timeout(Some(timeout)).unwrap();
    conn.set_write_timeout(Some(timeout)).unwrap();
    conn
}

/// The fixture's chat sessions (`oracle/chat_message_history.jsonl`) pushed into `url`
/// as RedisChatMessageHistory stores them (`message_store:<session>`, LPUSH: newest
/// first). Returns the sessions.
pub async fn redis_load_chat_lists(url: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixtures().join("oracle/chat_message_history.jsonl")).unwrap();
    let sessions: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for s in &sessions {
        let key = format!("message_store:{}", s["session_id"].as_str().unwrap());
        for m in s["stored_message_json"].as_array().unwrap() {
            let () = redis::cmd("LPUSH")
                .arg(&key)
                .arg(m.to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    sessions
}

/// Loads a fixture dump (`dump.jsonl`: one key per line, exact bytes) into `url`.
pub async fn redis_load(url: &str, dump: &str) {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let text = std::fs::read_to_string(fixtures().join(dump)).unwrap();
    let mut pipe = redis::pipe();
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let key = b64(&entry["key"]);
        let value = &entry["value"];
        match entry["type"].as_str().unwrap() {
            "string" => {
                pipe.cmd("SET").arg(&key).arg(b64(value)).ignore();
            }
            "hash" => {
                for pair in value.as_array().unwrap() {
                    pipe.cmd("HSET")
                        .arg(&key)
                        .arg(b64(&pair[0]))
                        .arg(b64(&pair[1]))
                        .ignore();
                }
            }
            "zset" => {
                for pair in value.as_array().unwrap() {
                    let score: f64 = pair[1].as_str().unwrap().parse().unwrap();
                    pipe.cmd("ZADD")
                        .arg(&key)
                        .arg(score)
                        .arg(b64(&pair[0]))
                        .ignore();
                }
            }
            "list" => {
                for item in value.as_array().unwrap() {
                    pipe.cmd("RPUSH").arg(&key).arg(b64(item)).ignore();
                }
            }
            "ReJSON-RL" => {
                let doc: Value = serde_json::from_str(value.as_str().unwrap()).unwrap();
                pipe.cmd("JSON.SET")
                    .arg(&key)
                    .arg("$")
                    .arg(doc[0].to_string())
                    .ignore();
            }
            other => panic!("dump type {other}"),
        }
        if let Some(ms) = entry["pttl_ms"].as_i64().filter(|ms| *ms > 0) {
            pipe.cmd("PEXPIRE").arg(&key).arg(ms).ignore();
        }
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
}

/// Runs Redis commands against `url`.
pub async fn redis_exec(url: &str, commands: &[&[&str]]) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for c in commands {
        let mut cmd = redis::cmd(c[0]);
        for a in &c[1..] {
            cmd.arg(*a);
        }
        let _: redis::Value = cmd
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

/// Reads every record of a Redis source through the library, decoded.
pub async fn read_redis(
    url: &str,
    prefix: &str,
    filters: &FilterConfig,
    batch: usize,
) -> (Vec<Checkpoint>, u64) {
    let (out, vanished, failed) = read_redis_all(url, prefix, filters, batch).await;
    assert!(failed.is_empty(), "{failed:?}");
    (out, vanished)
}

/// The Redis source's settings for the keys under `prefix` at `url`, the rest default.
pub fn redis_source_config(
    url: &str,
    prefix: &str,
) -> ckpt_migrate::stores::redis::config::RedisSourceConfig {
    ckpt_migrate::stores::redis::config::RedisSourceConfig {
        redis_url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        decode_responses: None,
        upgrade: Default::default(),
        thread_id_template: None,
    }
}

/// [`read_redis`], also giving the reads that failed.
pub async fn read_redis_all(
    url: &str,
    prefix: &str,
    filters: &FilterConfig,
    batch: usize,
) -> (Vec<Checkpoint>, u64, Vec<ckpt_migrate::sources::FailedRead>) {
    use ckpt_migrate::stores::redis::RedisSource;
    let compiled = filters.compile().unwrap();
    let config = redis_source_config(url, prefix);
    let mut source = RedisSource::open(&config, &compiled).await.expect("open");
    let (mut out, vanished, failed) = drain_all(&mut source, batch).await;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    (out, vanished, failed)
}

/// Runs `--source KIND --source-config CONFIG` into a JSON export in `dir/out`.
pub fn migrate_to_json(dir: &Path, kind: &str, config: &Value) -> Run {
    cli(
        dir,
        &[
            "--source",
            kind,
            "--source-config",
            &config.to_string(),
            "--destination",
            "json",
            "--dest-config",
            r#"{"output_dir": "out"}"#,
        ],
    )
}

/// A run that failed (exit 3) with an error containing `expect` and not `secret`.
pub fn assert_failed_naming(run: &Run, expect: &str, secret: &str) {
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert_eq!(run.code(), 3, "{all}");
    assert!(all.contains(expect), "expected {expect:?} in:\n{all}");
    assert!(!all.contains(secret), "a secret leaked:\n{all}");
}

/// The view decoded straight to text ([`codec::decode_record_text`], what the
/// exports get) is, for every record, the view decoded to trees then written as
/// text; a record whose values do not decode fails the same way on both paths.
/// Returns how many records hold channel values stored apart (blobs).
pub fn assert_text_views_match_trees(records: &[Checkpoint]) -> usize {
    for record in records {
        let mut trees = record.clone();
        trees.view = None;
        let mut text = trees.clone();
        match codec::decode_record(&mut trees) {
            Ok(()) => {
                trees.view.as_mut().expect("decoded").to_text();
                codec::decode_record_text(&mut text)
                    .unwrap_or_else(|e| panic!("{}: {e}", record.key));
                assert_eq!(text.view, trees.view, "{}", record.key);
            }
            Err(e) => assert_eq!(
                codec::decode_record_text(&mut text).unwrap_err(),
                e,
                "{}",
                record.key
            ),
        }
    }
    records
        .iter()
        .filter(|r| !r.channel_blobs.is_empty())
        .count()
}
