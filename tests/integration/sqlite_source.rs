//! The SQLite source: key order across pages, bounded batches, clear errors, bad
//! values in the dead-letter file while the rest migrates.

use ckpt_migrate::filters::FilterConfig;
use ckpt_migrate::sources::{BatchLimits, Source};
use ckpt_migrate::stores::sqlite::SqliteSource;
use ckpt_migrate::stores::sqlite::config::SqliteSourceConfig;

use crate::harness::{
    self, cli_yaml, read_json_export, record_key, sqlite_execute, sqlite_fixture,
};

async fn open(path: &std::path::Path) -> Result<SqliteSource, String> {
    let filters = FilterConfig::default().compile().unwrap();
    let config = SqliteSourceConfig {
        connection_string: path.display().to_string(),
    };
    SqliteSource::open(&config, &filters)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn pages_of_any_size_read_every_record_once_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let reference: Vec<_> = harness::read_sqlite(&db, 1000)
        .await
        .iter()
        .map(record_key)
        .collect();
    assert_eq!(reference.len(), 271);
    let mut sorted = reference.clone();
    sorted.sort();
    assert_eq!(reference, sorted, "key order");
    for batch in [1, 7, 270, 271, 272] {
        let keys: Vec<_> = harness::read_sqlite(&db, batch)
            .await
            .iter()
            .map(record_key)
            .collect();
        assert_eq!(keys, reference, "batch size {batch}");
    }
    // A byte bound cuts batches below the count bound.
    let mut source = open(&db).await.unwrap();
    let limits = BatchLimits {
        max_records: 1000,
        max_bytes: 1,
    };
    let mut batches = 0;
    let mut records = 0;
    while let Some(b) = source.next_batch(limits).await.unwrap() {
        assert_eq!(b.records.len(), 1);
        batches += 1;
        records += b.records.len();
    }
    assert_eq!((batches, records), (271, 271));
}

/// A checkpoint's writes come as SqliteSaver returns them, by `(task_path, task_id,
/// idx)`, though the query reads them in the primary key's order `(task_id, idx)`.
#[tokio::test]
async fn pending_writes_come_by_task_path_then_task_id_and_idx() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let first = harness::read_sqlite(&db, 1000).await.remove(0);
    let key = &first.key;
    sqlite_execute(
        &db,
        &format!(
            "DELETE FROM writes WHERE thread_id = '{t}' AND checkpoint_ns = '{n}' AND checkpoint_id = '{c}'; \
             INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) VALUES \
             ('{t}', '{n}', '{c}', 'a', '~z', 1, 'a1', 'json', CAST('1' AS BLOB)), \
             ('{t}', '{n}', '{c}', 'a', '~z', 0, 'a0', 'json', CAST('1' AS BLOB)), \
             ('{t}', '{n}', '{c}', 'b', '~a', 0, 'b0', 'json', CAST('1' AS BLOB)), \
             ('{t}', '{n}', '{c}', 'c', '~a', 0, 'c0', 'json', CAST('1' AS BLOB)), \
             ('{t}', '{n}', '{c}', 'd', '', 5, 'd5', 'json', CAST('1' AS BLOB));",
            t = key.thread_id,
            n = key.checkpoint_ns,
            c = key.checkpoint_id
        ),
    )
    .await;
    for batch in [1, 1000] {
        let read = harness::read_sqlite(&db, batch).await;
        let record = read.iter().find(|r| r.key == *key).unwrap();
        let channels: Vec<&str> = record
            .pending_writes
            .iter()
            .map(|w| w.channel.as_str())
            .collect();
        assert_eq!(
            channels,
            ["d5", "b0", "c0", "a0", "a1"],
            "batch size {batch}"
        );
    }
}

#[tokio::test]
async fn a_database_without_checkpoint_tables_is_named_with_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("other.db");
    sqlite_execute(&db, "CREATE TABLE users (id INTEGER)").await;
    let err = open(&db).await.err().unwrap();
    assert!(
        err.contains("other.db") && err.contains("checkpoints") && err.contains("users"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let err = open(&garbage).await.err().unwrap();
    assert!(
        err.contains("garbage.db") && err.contains("not a database"),
        "{err}"
    );
}

#[tokio::test]
async fn corrupt_values_go_to_the_dead_letter_file_and_the_rest_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    // A truncated msgpack checkpoint, metadata that is not JSON, an invalid msgpack
    // write value, and a pickle value (passed through, not an error).
    sqlite_execute(&db, "UPDATE checkpoints SET checkpoint = substr(checkpoint, 1, 40) WHERE rowid = (SELECT rowid FROM checkpoints WHERE thread_id = 'customer-0001' ORDER BY checkpoint_id LIMIT 1 OFFSET 2)").await;
    sqlite_execute(&db, "UPDATE checkpoints SET metadata = CAST(x'7b226e6f74206a736f6e' AS BLOB) WHERE rowid = (SELECT rowid FROM checkpoints WHERE thread_id = 'customer-0002' ORDER BY checkpoint_id LIMIT 1)").await;
    sqlite_execute(&db, "UPDATE writes SET value = x'c1' WHERE rowid = (SELECT rowid FROM writes WHERE thread_id = 'test-abc' AND type = 'msgpack' ORDER BY checkpoint_id LIMIT 1)").await;
    sqlite_execute(&db, "UPDATE writes SET type = 'pickle', value = x'80049500' WHERE rowid = (SELECT rowid FROM writes WHERE thread_id = 'debug-xyz' AND type = 'msgpack' ORDER BY checkpoint_id LIMIT 1)").await;

    let yaml = "source_type: sqlite\nsource_config: {connection_string: 'sqlite:///checkpoints.db'}\ndestination_type: json\ndestination_config: {output_dir: out}\nbatch_size: 10\n";
    let run = cli_yaml(dir.path(), yaml, &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let stderr = run.stderr();
    assert!(
        stderr.contains("read 271  written 268  filtered 0  failed 3"),
        "{stderr}"
    );
    assert!(stderr.contains("passed through undecoded"), "{stderr}");
    assert!(stderr.contains("dead-letter.jsonl"), "{stderr}");
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 268);

    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3);
    let threads: Vec<&str> = entries
        .iter()
        .map(|e| e["key"]["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(threads, ["customer-0001", "customer-0002", "test-abc"]);
    for e in &entries {
        assert_eq!(e["stage"], "decode");
        assert!(
            e["origin"]["locator"]
                .as_str()
                .unwrap()
                .contains("checkpoints.db")
        );
        assert!(
            e["record"]["checkpoint"]["data"].is_string(),
            "raw record kept"
        );
    }
    assert!(
        entries[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("checkpoint: invalid msgpack"),
        "{}",
        entries[0]["error"]
    );
    assert!(
        entries[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("metadata: invalid JSON"),
        "{}",
        entries[1]["error"]
    );
    assert!(
        entries[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("pending write #"),
        "{}",
        entries[2]["error"]
    );
}
