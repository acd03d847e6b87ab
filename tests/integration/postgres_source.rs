//! The PostgreSQL source against a real server (started by scripts/test.sh): the
//! PostgresSaver fixture and a chat-history table, pushdown, old schemas, snapshots,
//! and clear errors that never show the password.

use std::collections::{BTreeMap, BTreeSet};

use ckpt_migrate::codec::msgpack::channel_value_ranges;
use ckpt_migrate::filters::FilterConfig;
use ckpt_migrate::record::Checkpoint;
use ckpt_migrate::sources::{BatchLimits, Pushdown, Source};
use ckpt_migrate::stores::postgres::PostgresSource;
use ckpt_migrate::stores::postgres::config::PostgresSourceConfig;

use crate::harness::{
    self, cli_yaml, diff, oracle, pg_database, pg_execute, pg_url, pg_url_for, read_json_export,
    read_postgres, record_key, view_line,
};

fn assert_matches_oracle(records: &[Checkpoint], name: &str) -> usize {
    harness::assert_text_views_match_trees(records);
    let expected = oracle(name);
    assert_eq!(records.len(), expected.len());
    let mut matched = 0;
    let mut report = Vec::new();
    for r in records {
        let mut diffs = Vec::new();
        diff(&view_line(r), &expected[&record_key(r)], "", &mut diffs, 5);
        if diffs.is_empty() {
            matched += 1;
        } else if report.len() < 10 {
            report.push(format!("{}: {diffs:?}", r.key));
        }
    }
    println!(
        "oracle/{name}.jsonl: {matched}/{} checkpoints match",
        expected.len()
    );
    assert_eq!(matched, expected.len(), "{}", report.join("\n"));
    matched
}

#[tokio::test]
async fn postgres_saver_fixture_matches_the_langgraph_oracle() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let records = read_postgres(&db, None, &FilterConfig::default(), Pushdown::On, 37).await;
    assert_matches_oracle(&records, "postgres");
    // Inline primitives and blob values end up in one record (on the text path too).
    let blobs: usize = records.iter().map(|r| r.channel_blobs.len()).sum();
    assert!(blobs > 0);
    assert!(harness::assert_text_views_match_trees(&records) > 0);
    let keys: Vec<_> = records.iter().map(record_key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "key order");
}

#[tokio::test]
async fn an_older_schema_without_task_path_or_migrations_still_reads() {
    let db = pg_database(&["checkpoints.sql"]).await;
    pg_execute(
        &db,
        &[
            "ALTER TABLE checkpoint_writes DROP COLUMN task_path",
            "DROP TABLE checkpoint_migrations",
            "DROP INDEX IF EXISTS checkpoints_thread_id_idx",
            "DROP INDEX IF EXISTS checkpoint_blobs_thread_id_idx",
            "DROP INDEX IF EXISTS checkpoint_writes_thread_id_idx",
        ],
    )
    .await;
    let records = read_postgres(&db, None, &FilterConfig::default(), Pushdown::On, 100).await;
    assert_matches_oracle(&records, "postgres");
}

#[tokio::test]
async fn raw_values_equal_those_sqlite_stored_for_the_same_state() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let pg = read_postgres(&db, None, &FilterConfig::default(), Pushdown::On, 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = harness::read_sqlite(&harness::sqlite_fixture(dir.path()), 1000).await;
    // Checkpoint ids come from the clock, so pair checkpoints by position in their
    // (thread, namespace) history; namespaces of subgraphs carry task ids, so compare
    // by their order too.
    fn position(records: &[Checkpoint]) -> BTreeMap<String, Vec<&Checkpoint>> {
        let mut by_thread: BTreeMap<String, Vec<&Checkpoint>> = BTreeMap::new();
        for r in records {
            by_thread
                .entry(r.key.thread_id.clone())
                .or_default()
                .push(r);
        }
        by_thread
    }
    let (pg_threads, sqlite_threads) = (position(&pg), position(&sqlite));
    let mut equal_values = 0;
    let mut compared = 0;
    for (thread, pg_list) in &pg_threads {
        let sqlite_list = &sqlite_threads[thread];
        assert_eq!(pg_list.len(), sqlite_list.len(), "{thread}");
        for (p, s) in pg_list.iter().zip(sqlite_list) {
            let ranges: BTreeMap<String, _> = channel_value_ranges(&s.checkpoint.bytes)
                .unwrap()
                .into_iter()
                .collect();
            let sv = s.view.as_ref().unwrap();
            let pv = p.view.as_ref().unwrap();
            for blob in p
                .channel_blobs
                .iter()
                .filter(|b| b.value.type_tag == "msgpack")
            {
                let Some(range) = ranges.get(&blob.channel) else {
                    continue;
                };
                compared += 1;
                let same_view = pv.checkpoint["channel_values"][&blob.channel]
                    == sv.checkpoint["channel_values"][&blob.channel];
                let same_bytes = blob.value.bytes == s.checkpoint.bytes[range.clone()];
                // Same bytes must read as the same value. (The same value may be stored
                // as different bytes: a Python set's order changes between processes.)
                assert!(
                    !same_bytes || same_view,
                    "{thread} {} channel {}",
                    p.key,
                    blob.channel
                );
                if same_bytes {
                    equal_values += 1;
                }
            }
            for (pw, sw) in p.pending_writes.iter().zip(&s.pending_writes) {
                if pw.channel == sw.channel && pw.value.type_tag == sw.value.type_tag {
                    compared += 1;
                    let i = p
                        .pending_writes
                        .iter()
                        .position(|w| std::ptr::eq(w, pw))
                        .unwrap();
                    let same_view = pv.pending_writes[i].value == sv.pending_writes[i].value;
                    let same_bytes = pw.value.bytes == sw.value.bytes;
                    assert!(!same_bytes || same_view, "{thread} write {}", pw.channel);
                    if same_bytes {
                        equal_values += 1;
                    }
                }
            }
        }
    }
    println!(
        "PostgreSQL vs SQLite: {equal_values}/{compared} raw values byte-identical (the rest differ in clock-derived ids or set order)"
    );
    assert!(
        compared > 300 && equal_values * 10 > compared * 8,
        "{equal_values}/{compared}"
    );
}

#[tokio::test]
async fn chat_history_sessions_match_the_oracle() {
    let db = pg_database(&["chat_message_history.sql"]).await;
    let records = read_postgres(
        &db,
        Some("chat_message_history"),
        &FilterConfig::default(),
        Pushdown::On,
        3,
    )
    .await;
    let expected = oracle_chat();
    assert_eq!(records.len(), expected.len());
    for r in &records {
        let theirs = &expected[&r.key.thread_id];
        let view = r.view.as_ref().unwrap();
        let mut diffs = Vec::new();
        diff(
            &view.checkpoint["channel_values"]["messages"],
            &theirs["messages"],
            "messages",
            &mut diffs,
            5,
        );
        assert!(diffs.is_empty(), "{}: {diffs:?}", r.key.thread_id);
        // Raw: the stored JSON of every message, in id order.
        let stored: serde_json::Value =
            serde_json::from_slice(&r.channel_blobs[0].value.bytes).unwrap();
        assert_eq!(stored, theirs["stored_message_json"]);
        assert_eq!(
            view.metadata["message_count"],
            theirs["messages"].as_array().unwrap().len()
        );
        assert!(view.ts_parsed.is_some());
    }
    println!(
        "oracle/chat_message_history.jsonl: {}/{} sessions match",
        records.len(),
        expected.len()
    );

    // langchain_community's message_store (no created_at) in another schema.
    pg_execute(
        &db,
        &[
            "CREATE SCHEMA app",
            "CREATE TABLE app.message_store (id SERIAL PRIMARY KEY, session_id TEXT NOT NULL, message JSONB NOT NULL)",
            "INSERT INTO app.message_store (session_id, message) SELECT session_id::text, message FROM chat_message_history ORDER BY id",
        ],
    )
    .await;
    let store = read_postgres(
        &db,
        Some("app.message_store"),
        &FilterConfig::default(),
        Pushdown::On,
        2,
    )
    .await;
    assert_eq!(store.len(), records.len());
    for (a, b) in store.iter().zip(&records) {
        assert_eq!(
            a.view.as_ref().unwrap().checkpoint["channel_values"],
            b.view.as_ref().unwrap().checkpoint["channel_values"]
        );
    }
}

fn oracle_chat() -> BTreeMap<String, serde_json::Value> {
    let text =
        std::fs::read_to_string(harness::fixtures().join("oracle/chat_message_history.jsonl"))
            .unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["session_id"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[tokio::test]
async fn pushed_down_filters_give_the_engine_result() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let all = oracle("postgres");
    let mut stamps: Vec<String> = all
        .values()
        .map(|v| v["checkpoint"]["ts"].as_str().unwrap().to_owned())
        .collect();
    stamps.sort();
    let filters = FilterConfig {
        thread_pattern: Some("customer-*".into()),
        exclude_threads: vec!["*-0003".into(), "test_*".into()],
        date_from: Some(stamps[stamps.len() / 3].clone()),
        date_to: Some(stamps[stamps.len() * 2 / 3].clone()),
        ..FilterConfig::default()
    };
    let compiled = filters.compile().unwrap();
    let engine = |records: Vec<Checkpoint>| -> BTreeSet<_> {
        records
            .into_iter()
            .filter(|r| {
                compiled.accepts_thread(&r.key.thread_id)
                    && compiled.accepts_time(r.view.as_ref().unwrap().ts_parsed)
            })
            .map(|r| record_key(&r))
            .collect()
    };
    let pushed_raw = read_postgres(&db, None, &filters, Pushdown::On, 25).await;
    let unpushed_raw = read_postgres(&db, None, &filters, Pushdown::Off, 25).await;
    assert!(pushed_raw.len() < unpushed_raw.len(), "the store filtered");
    assert_eq!(unpushed_raw.len(), all.len());
    let pushed = engine(pushed_raw);
    let in_engine = engine(unpushed_raw);
    assert_eq!(pushed, in_engine);
    assert!(!pushed.is_empty());
    println!("pushdown: {} checkpoints selected both ways", pushed.len());
}

/// The test database's PostgresSaver tables as a source, no filters.
/// A blob is read once per batch however many checkpoints name it, and each
/// checkpoint still gets every blob its `channel_versions` names: the same records
/// as the oracle at a batch size where one blob serves many checkpoints. A
/// `channel_versions` that is no object (the server's join failed the whole batch on
/// it) sends that checkpoint alone to the dead-letter file, with the reason.
#[tokio::test]
async fn blobs_are_named_from_the_page_and_a_bad_channel_versions_fails_one_checkpoint() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let records = read_postgres(&db, None, &FilterConfig::default(), Pushdown::On, 500).await;
    assert_matches_oracle(&records, "postgres");
    let named: usize = records.iter().map(|r| r.channel_blobs.len()).sum();
    let mut distinct = BTreeSet::new();
    for r in &records {
        for b in &r.channel_blobs {
            distinct.insert((
                &r.key.thread_id,
                &r.key.checkpoint_ns,
                &b.channel,
                &b.version,
            ));
        }
    }
    assert!(
        named > distinct.len(),
        "{named} blobs in records, {} distinct",
        distinct.len()
    );

    let bad = &records[records.len() / 2].key;
    pg_execute(
        &db,
        &[&format!(
            "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{{channel_versions}}', '\"7\"') \
             WHERE thread_id = '{}' AND checkpoint_ns = '{}' AND checkpoint_id = '{}'",
            bad.thread_id, bad.checkpoint_ns, bad.checkpoint_id
        )],
    )
    .await;
    let mut source = open_checkpoints(&db).await;
    let limits = BatchLimits {
        max_records: 50,
        max_bytes: usize::MAX,
    };
    let (mut read, mut failed) = (Vec::new(), Vec::new());
    while let Some(b) = source.next_batch(limits).await.unwrap() {
        read.extend(b.records);
        failed.extend(b.failed);
    }
    assert_eq!(read.len(), records.len() - 1);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].key.as_ref(), Some(bad));
    assert!(
        failed[0]
            .error
            .contains("channel_versions is not an object"),
        "{}",
        failed[0].error
    );
    let before: BTreeMap<_, _> = records.iter().map(|r| (&r.key, &r.channel_blobs)).collect();
    for r in &read {
        assert_eq!(&r.channel_blobs, before[&r.key], "{}", r.key);
    }
}

async fn open_checkpoints(db: &str) -> PostgresSource {
    open_with_connections(db, None).await.unwrap()
}

async fn open_with_connections(
    db: &str,
    connections: Option<u8>,
) -> Result<PostgresSource, ckpt_migrate::error::StoreError> {
    open_url(pg_url_for(db), connections).await
}

/// The checkpoint source at `url`, reading on `connections`.
async fn open_url(
    url: String,
    connections: Option<u8>,
) -> Result<PostgresSource, ckpt_migrate::error::StoreError> {
    let config = PostgresSourceConfig {
        connection_string: url,
        table_name: None,
        upgrade: Default::default(),
        thread_id_template: None,
        connections,
    };
    let filters = FilterConfig::default().compile().unwrap();
    PostgresSource::open(&config, &filters, Pushdown::On).await
}

/// Every stored part of each record (not its origin or view), in read order.
async fn read_raw(source: &mut PostgresSource, limits: BatchLimits) -> Vec<String> {
    let mut records = Vec::new();
    while let Some(batch) = source.next_batch(limits).await.unwrap() {
        assert!(batch.failed.is_empty(), "{:?}", batch.failed);
        records.extend(batch.records.iter().map(|r| {
            format!(
                "{:?}",
                (
                    &r.key,
                    &r.parent_checkpoint_id,
                    &r.checkpoint,
                    &r.metadata,
                    &r.channel_blobs,
                    &r.pending_writes,
                )
            )
        }));
    }
    records
}

/// A fresh database of the PostgresSaver fixture, batches of `max_records`, and every
/// record of it as [`read_raw`] reads them.
async fn fixture_read_whole(max_records: usize) -> (String, BatchLimits, Vec<String>) {
    let db = pg_database(&["checkpoints.sql"]).await;
    let limits = BatchLimits {
        max_records,
        max_bytes: usize::MAX,
    };
    let whole = read_raw(&mut open_checkpoints(&db).await, limits).await;
    (db, limits, whole)
}

/// How many connections to `db` are open in a transaction (the source's snapshot).
async fn connections_in_transaction(db: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg_url_for(db)).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(db)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// A role allowed one connection (as a server with few slots left) still reads
/// everything, on one connection.
#[tokio::test]
async fn a_server_that_refuses_the_second_connection_is_read_on_one() {
    let (db, limits, before) = fixture_read_whole(40).await;
    let role = format!("r_{db}");
    pg_execute(
        &db,
        &[
            &format!("CREATE ROLE {role} LOGIN PASSWORD 'one-slot' CONNECTION LIMIT 1"),
            &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
        ],
    )
    .await;
    let url = pg_url_for(&db);
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest.rsplit_once('@').unwrap();
    let mut source = open_url(format!("{scheme}://{role}:one-slot@{host}"), None)
        .await
        .unwrap();
    assert_eq!(connections_in_transaction(&db).await, 1);
    let read = read_raw(&mut source, limits).await;
    drop(source);
    pg_execute(
        &db,
        &[
            &format!("DROP OWNED BY {role}"),
            &format!("DROP ROLE {role}"),
        ],
    )
    .await;
    assert_eq!(read, before);
}

/// A checkpoint read reads each batch's writes on a second connection in the same
/// snapshot (`connections`, default 2), or on one: the records are the same.
#[tokio::test]
async fn one_or_two_connections_read_the_same_records() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let limits = BatchLimits {
        max_records: 40,
        max_bytes: usize::MAX,
    };
    let mut by_count = Vec::new();
    for (connections, open) in [(Some(1), 1), (None, 2), (Some(2), 2)] {
        let mut source = open_with_connections(&db, connections).await.unwrap();
        assert_eq!(
            connections_in_transaction(&db).await,
            open,
            "connections: {connections:?}"
        );
        let records = read_raw(&mut source, limits).await;
        assert_eq!(records.len(), 271);
        assert_eq!(
            connections_in_transaction(&db).await,
            0,
            "the snapshot ended"
        );
        by_count.push(records);
    }
    assert_eq!(by_count[0], by_count[1]);
    assert_eq!(by_count[1], by_count[2]);
    let err = open_with_connections(&db, Some(3)).await.err().unwrap();
    assert!(
        err.message.contains("source_config.connections: 3"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn one_snapshot_for_the_whole_read() {
    let (db, limits, before) = fixture_read_whole(50).await;
    let mut source = open_checkpoints(&db).await;
    // A writer deletes every blob and pending write once the source is open, before
    // it reads: its second connection (the writes) is in the snapshot of the first.
    pg_execute(
        &db,
        &[
            "DELETE FROM checkpoint_blobs",
            "DELETE FROM checkpoint_writes",
        ],
    )
    .await;
    let first = source.next_batch(limits).await.unwrap().unwrap();
    assert_eq!(first.records.len(), 50);
    // It adds a checkpoint (sorting last) and deletes one not read yet.
    pg_execute(
        &db,
        &[
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata) \
             VALUES ('zzz-new', '', 'x', '{\"v\": 4, \"ts\": \"2026-01-01T00:00:00+00:00\"}', '{}')",
            "DELETE FROM checkpoints WHERE thread_id = 'test-abc'",
        ],
    )
    .await;
    let rest = read_raw(&mut source, limits).await;
    let first_writes = first
        .records
        .iter()
        .map(|r| r.pending_writes.len())
        .sum::<usize>();
    assert!(first_writes > 0, "the first batch's writes were read");
    assert_eq!(
        rest,
        before[50..],
        "the read saw the tables as they were when it started"
    );
    assert!(before.len() == 271 && rest.iter().any(|r| r.contains("PendingWrite")));
}

#[test]
fn errors_are_one_clear_line_and_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let password = std::env::var("CKPT_TEST_PG_PASSWORD").expect("set by scripts/test.sh");
    let run_with = |url: &str, table: Option<&str>| {
        let mut config = serde_json::json!({ "connection_string": url });
        if let Some(t) = table {
            config["table_name"] = t.into();
        }
        harness::migrate_to_json(dir.path(), "postgresql", &config)
    };
    let check = |run: &harness::Run, expect: &str, secret: &str| {
        harness::assert_failed_naming(run, expect, secret);
        assert!(!dir.path().join("out").exists());
    };
    let url = pg_url();
    // Wrong password.
    let wrong = url.replace(&password, "not-the-password-42");
    check(
        &run_with(&wrong, None),
        "authentication failed",
        "not-the-password-42",
    );
    // Refused connection.
    let port = url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let refused = url.replace(&format!(":{port}/"), ":1/");
    check(&run_with(&refused, None), "cannot connect", &password);
    // Not a URL at all.
    check(
        &run_with("postgresql://ckpt:sekr1t@[bad/db", None),
        "not valid",
        "sekr1t",
    );
    // A database that does not exist.
    check(
        &run_with(&pg_url_for("no_such_db_here"), None),
        "does not exist",
        &password,
    );
    // No LangGraph tables.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let empty = rt.block_on(pg_database(&[]));
    check(
        &run_with(&pg_url_for(&empty), None),
        "table checkpoints does not exist",
        &password,
    );
    // A table that is neither: its columns are listed.
    rt.block_on(pg_execute(
        &empty,
        &["CREATE TABLE users (id int, email text)"],
    ));
    check(
        &run_with(&pg_url_for(&empty), Some("users")),
        "its columns are: id, email",
        &password,
    );
    // A table name that is not an identifier is refused, never spliced into SQL.
    check(
        &run_with(&pg_url_for(&empty), Some("users; DROP TABLE users")),
        "is not a table name",
        &password,
    );
    // Permission denied.
    let db = rt.block_on(pg_database(&["checkpoints.sql"]));
    // Roles belong to the cluster: a unique name per run.
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    rt.block_on(pg_execute(
        &db,
        &[&format!("CREATE ROLE {role} LOGIN PASSWORD 'reader-pw-77'")],
    ));
    let reader = pg_url_for(&db).replacen(
        &format!("ckpt:{password}"),
        &format!("{role}:reader-pw-77"),
        1,
    );
    check(
        &run_with(&reader, None),
        "permission denied",
        "reader-pw-77",
    );
}

#[test]
fn postgres_to_json_and_dry_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(pg_database(&[
        "checkpoints.sql",
        "chat_message_history.sql",
    ]));
    let yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{}'}}\ndestination_type: json\ndestination_config: {{output_dir: out}}\nfilters: {{exclude_threads: ['test-*']}}\n",
        pg_url_for(&db)
    );
    let run = cli_yaml(dir.path(), &yaml, &["--dry-run"]);
    assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("271 in the source"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("in 9 thread(s)"), "{}", run.stdout());
    assert!(
        run.stdout().contains("LIKE"),
        "pushdown shown: {}",
        run.stdout()
    );
    assert!(!dir.path().join("out").exists());

    let run = cli_yaml(dir.path(), &yaml, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let exported = read_json_export(&dir.path().join("out"));
    let expected = oracle("postgres");
    assert_eq!(
        exported.len(),
        expected
            .values()
            .filter(|v| v["thread_id"] != "test-abc")
            .count()
    );
    for object in &exported {
        let mut diffs = Vec::new();
        diff(
            &harness::oracle_view_of(object),
            &expected[&harness::key_of(object)],
            "",
            &mut diffs,
            3,
        );
        assert!(diffs.is_empty(), "{diffs:?}");
    }

    let chat_yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{}', table_name: chat_message_history}}\ndestination_type: json\ndestination_config: {{output_dir: chat}}\n",
        pg_url_for(&db)
    );
    let run = cli_yaml(dir.path(), &chat_yaml, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(read_json_export(&dir.path().join("chat")).len(), 4);
}

/// Regression: each batch's blobs were read with the batch's key range as a row
/// comparison only, which PostgreSQL cannot estimate: it planned some batches as a
/// scan of the whole `checkpoints` table (15 of 200 at 100 000 checkpoints, 60 ms a
/// batch against 17 ms, and more as the table grows; here 3 of 110). Read through the
/// source, batch after batch, the three tables are never scanned whole.
#[tokio::test]
async fn each_batch_reads_its_rows_through_indexes_not_whole_tables() {
    let db = pg_database(&["checkpoints.sql"]).await;
    // 80 copies of the fixture's threads: a table large enough for the planner to
    // weigh an index against a scan.
    pg_execute(
        &db,
        &[
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, \
             parent_checkpoint_id, type, checkpoint, metadata) \
             SELECT 'copy' || g || '-' || thread_id, checkpoint_ns, checkpoint_id, \
             parent_checkpoint_id, type, checkpoint, metadata \
             FROM checkpoints, generate_series(1, 80) g",
            "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) \
             SELECT 'copy' || g || '-' || thread_id, checkpoint_ns, channel, version, type, blob \
             FROM checkpoint_blobs, generate_series(1, 80) g",
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, \
             task_path, idx, channel, type, blob) \
             SELECT 'copy' || g || '-' || thread_id, checkpoint_ns, checkpoint_id, task_id, \
             task_path, idx, channel, type, blob \
             FROM checkpoint_writes, generate_series(1, 80) g",
            "ANALYZE",
        ],
    )
    .await;
    let scans = || async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&pg_url_for(&db)).await.unwrap();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_user_tables \
             WHERE relname IN ('checkpoints', 'checkpoint_blobs', 'checkpoint_writes') \
             ORDER BY relname",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(table, seq, idx)| (table, (seq, idx)))
            .collect::<BTreeMap<String, (i64, i64)>>()
    };
    let before = scans().await;

    let mut source = open_checkpoints(&db).await;
    let limits = BatchLimits {
        max_records: 200,
        max_bytes: usize::MAX,
    };
    let (mut read, mut batches) = (0, 0i64);
    while let Some(b) = source.next_batch(limits).await.unwrap() {
        assert!(b.failed.is_empty(), "{:?}", b.failed);
        read += b.records.len();
        batches += 1;
    }
    assert_eq!(read, 271 * 81);
    // Its connection's statistics reach the server's views when it ends.
    drop(source);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let now = scans().await;
        let batch_queries = now["checkpoints"].1 - before["checkpoints"].1;
        if batch_queries >= batches || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        after["checkpoints"].1 - before["checkpoints"].1 >= batches,
        "the read's statistics never arrived: {before:?} → {after:?}"
    );
    for table in ["checkpoints", "checkpoint_blobs", "checkpoint_writes"] {
        assert_eq!(
            after[table].0 - before[table].0,
            0,
            "{table} was scanned whole during a read of {batches} batches: {before:?} → {after:?}"
        );
    }
}
