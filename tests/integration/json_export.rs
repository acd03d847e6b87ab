//! JSON export: oracle keys, raw values, layout, safe file names.

use std::collections::BTreeSet;

use base64::Engine as _;
use sqlx::ConnectOptions;

use crate::harness::{
    self, cli_yaml, diff, key_of, oracle, oracle_view_of, read_json_export, sqlite_fixture,
};

fn yaml(dest: &str) -> String {
    format!(
        "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: json\ndestination_config: {dest}\n"
    )
}

#[tokio::test]
async fn export_is_a_superset_of_the_oracle_and_keeps_raw_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let run = cli_yaml(dir.path(), &yaml("{output_dir: out}"), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());

    let exported = read_json_export(&dir.path().join("out"));
    let expected = oracle("sqlite");
    assert_eq!(exported.len(), expected.len());
    let raw: std::collections::BTreeMap<_, _> = harness::read_sqlite(&db, 1000)
        .await
        .into_iter()
        .map(|r| (harness::record_key(&r), r))
        .collect();
    let mut matched = 0;
    for object in &exported {
        let key = key_of(object);
        let mut diffs = Vec::new();
        diff(&oracle_view_of(object), &expected[&key], "", &mut diffs, 5);
        assert!(diffs.is_empty(), "{key:?}: {diffs:?}");
        assert!(object["ts"].is_string());
        // The raw values decode back to the exact stored bytes.
        let record = &raw[&key];
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        assert_eq!(object["raw"]["checkpoint"]["type"], "msgpack");
        assert_eq!(
            b64(&object["raw"]["checkpoint"]["data"]),
            record.checkpoint.bytes
        );
        assert_eq!(
            b64(&object["raw"]["metadata"]["data"]),
            record.metadata.bytes
        );
        let writes = object["raw"]["pending_writes"].as_array().unwrap();
        assert_eq!(writes.len(), record.pending_writes.len());
        for (w, r) in writes.iter().zip(&record.pending_writes) {
            assert_eq!(w["value"]["type"], r.value.type_tag.as_str());
            assert_eq!(b64(&w["value"]["data"]), r.value.bytes);
            assert_eq!(w["task_path"], r.task_path.as_str());
        }
        matched += 1;
    }
    println!(
        "JSON export: {matched}/{} checkpoints match the oracle",
        expected.len()
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["stats"]["written"], 271);
    assert_eq!(manifest["stats"]["read"], 271);
    assert_eq!(manifest["layout"], "per-thread");
    assert_eq!(manifest["files"].as_array().unwrap().len(), 10);
    assert_eq!(manifest["source"]["kind"], "sqlite");
}

#[test]
fn indent_writes_json_arrays_and_single_file_one_file() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let run = cli_yaml(dir.path(), &yaml("{output_dir: pretty, indent: 2}"), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let text =
        std::fs::read_to_string(dir.path().join("pretty/threads/customer-0001.json")).unwrap();
    assert!(text.starts_with("[\n{\n  \"thread_id\""), "{}", &text[..60]);
    assert_eq!(read_json_export(&dir.path().join("pretty")).len(), 271);

    let run = cli_yaml(
        dir.path(),
        &yaml("{output_dir: single, single_file: true}"),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let files: Vec<_> = std::fs::read_dir(dir.path().join("single"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let text = std::fs::read_to_string(dir.path().join("single/checkpoints.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 271);
}

#[tokio::test]
async fn hostile_thread_ids_get_safe_distinct_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let hostile = [
        ("test-abc", "../x".to_owned()),
        ("debug-xyz", "/".to_owned()),
        ("customer-0005", "a\0b".to_owned()),
        ("customer-0006", "t".repeat(300)),
    ];
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    for (from, to) in &hostile {
        for table in ["checkpoints", "writes"] {
            sqlx::query(&format!(
                "UPDATE {table} SET thread_id = ? WHERE thread_id = ?"
            ))
            .bind(to)
            .bind(from)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    drop(conn);
    let run = cli_yaml(dir.path(), &yaml("{output_dir: out}"), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());

    let out = dir.path().join("out");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 10);
    let names: BTreeSet<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 10, "file names must be distinct: {names:?}");
    for name in &names {
        let rel = name.strip_prefix("threads/").expect("inside threads/");
        assert!(
            !rel.contains('/') && !rel.contains('\0') && !rel.starts_with('.'),
            "{rel:?}"
        );
        assert!(rel.len() <= 130, "{rel:?}");
        assert!(out.join(name).is_file());
    }
    // Nothing escaped the output directory.
    assert!(!dir.path().join("x.jsonl").exists());
    let threads: BTreeSet<String> = read_json_export(&out)
        .iter()
        .map(|o| o["thread_id"].as_str().unwrap().to_owned())
        .collect();
    for (_, id) in &hostile {
        assert!(threads.contains(id), "{id:?} lost");
    }
}

/// Every record of the SQLite type zoo (every type LangGraph writes) and of the
/// sample conversations (messages, pending writes, notices), decoded.
async fn zoo_and_sample_records() -> Vec<ckpt_migrate::record::Checkpoint> {
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path().join("zoo.db");
    std::fs::copy(
        harness::fixtures().join("typezoo/sqlite/checkpoints.db"),
        &zoo,
    )
    .unwrap();
    let mut records = harness::read_sqlite(&zoo, 50).await;
    records.extend(harness::read_sqlite(&sqlite_fixture(dir.path()), 50).await);
    assert!(records.len() > 100, "{} records", records.len());
    records
}

/// The view decoded straight from msgpack to text is the view decoded to trees and
/// then written as text, for every record of the SQLite type zoo and the sample (every
/// type LangGraph writes, messages, pending writes, notices), also with their channel
/// values moved out of the document into blobs as PostgreSQL and Redis keep them
/// (some, all, one kept in both places); a record cut short fails the same way on
/// both paths. (The PostgreSQL, Redis and type-zoo oracle tests check their stores'
/// own records the same way.)
#[tokio::test]
async fn views_decoded_straight_to_text_are_the_trees_written_as_text() {
    use ckpt_migrate::codec::msgpack;
    use ckpt_migrate::record::{ChannelBlob, TypedValue};
    let mut records = zoo_and_sample_records().await;
    let mut variants = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let bytes = &record.checkpoint.bytes;
        let Ok(channels) = msgpack::channel_value_ranges(bytes) else {
            continue;
        };
        let mut doc = msgpack::parse(bytes).unwrap();
        let rmpv::Value::Map(top) = &mut doc else {
            continue;
        };
        // Even channels stay in the document, odd ones move to blobs; every third
        // record loses its `channel_values` map; every fifth keeps channel 0 in both.
        let mut moved = record.clone();
        for (j, (channel, range)) in channels.iter().enumerate() {
            if j % 2 == 1 || i % 3 == 0 || (i % 5 == 0 && j == 0) {
                moved.channel_blobs.push(ChannelBlob {
                    channel: channel.clone(),
                    version: format!("{j}"),
                    value: TypedValue::new("msgpack", bytes[range.clone()].to_vec()),
                });
            }
        }
        moved.channel_blobs.push(ChannelBlob {
            channel: "never written".into(),
            version: "1".into(),
            value: TypedValue::new("empty", Vec::new()),
        });
        for (key, value) in top.iter_mut() {
            if key.as_str() != Some("channel_values") {
                continue;
            }
            if let rmpv::Value::Map(values) = value {
                let kept = std::mem::take(values).into_iter().enumerate();
                *values = kept
                    .filter(|(j, _)| j % 2 == 0 && !(i % 5 == 0 && *j == 0 && i % 3 != 0))
                    .map(|(_, entry)| entry)
                    .collect();
                if i % 5 == 0 && i % 3 != 0 {
                    values.insert(0, (channels[0].0.as_str().into(), rmpv::Value::Nil));
                }
            }
        }
        if i % 3 == 0 {
            top.retain(|(key, _)| key.as_str() != Some("channel_values"));
        }
        moved.checkpoint = TypedValue::new("msgpack", msgpack::encode(&doc));
        variants.push(moved);
    }
    assert!(variants.len() > 100, "{} with blobs", variants.len());
    assert_eq!(
        harness::assert_text_views_match_trees(&variants),
        variants.len()
    );
    assert_eq!(harness::assert_text_views_match_trees(&records), 0);
    // Cut short, a record fails the same way on both paths.
    for record in &mut records {
        let bytes = &record.checkpoint.bytes;
        record.checkpoint = TypedValue::new("msgpack", bytes[..bytes.len() - 1].to_vec());
    }
    harness::assert_text_views_match_trees(&records);
}

/// The export's compact writer and the views made text where records are decoded
/// write exactly what serde_json writes from the trees, for every type LangGraph
/// stores (the type zoo) and for the sample conversations, with channel blobs,
/// pending writes, notices and raw mode.
#[tokio::test]
async fn text_views_export_byte_for_byte_as_serde_json_writes_the_trees() {
    use ckpt_migrate::record::{ChannelBlob, TypedValue};
    use ckpt_migrate::stores::json::{export_compact, export_object};
    let mut records = zoo_and_sample_records().await;
    // SQLite keeps no channel blobs: give some records raw blobs (with a
    // hostile channel name) so their layout is compared too.
    for (i, r) in records.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
        r.channel_blobs.push(ChannelBlob {
            channel: format!("chan\"\\\n\u{1}{i}"),
            version: "00000000000000000000000000000002.0.5".into(),
            value: TypedValue::new("bytes", vec![0u8, 255, 10, i as u8]),
        });
    }
    let (mut with_writes, mut with_notices) = (0, 0);
    for record in &records {
        with_writes += usize::from(!record.pending_writes.is_empty());
        with_notices += usize::from(record.view.as_ref().is_some_and(|v| !v.notices.is_empty()));
        let mut as_text = record.clone();
        as_text.view.as_mut().unwrap().to_text();
        let tree_view = record.view.as_ref().unwrap();
        let text_view = as_text.view.as_ref().unwrap();
        for with_view in [true, false] {
            let expected = serde_json::to_vec(&export_object(record, with_view)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&export_compact(record, with_view)),
                String::from_utf8_lossy(&expected),
                "{} (trees, view {with_view})",
                record.key
            );
            assert_eq!(
                String::from_utf8_lossy(&export_compact(&as_text, with_view)),
                String::from_utf8_lossy(&expected),
                "{} (text, view {with_view})",
                record.key
            );
        }
        // Parquet's view columns, from the text and from the trees.
        let writes = serde_json::to_string(&tree_view.pending_writes_json()).unwrap();
        assert_eq!(tree_view.pending_writes_text(), writes, "{}", record.key);
        assert_eq!(text_view.pending_writes_text(), writes, "{}", record.key);
        assert_eq!(
            text_view.checkpoint_text(),
            serde_json::to_string(&tree_view.checkpoint).unwrap()
        );
        assert_eq!(
            text_view.metadata_text(),
            serde_json::to_string(&tree_view.metadata).unwrap()
        );
    }
    assert!(
        with_writes > 10 && with_notices > 0,
        "{with_writes} {with_notices}"
    );
}
