//! The Redis source against a real server (with RedisJSON) started by scripts/test.sh:
//! the four layouts, pushdown into SCAN MATCH, vanished keys, clear errors.

use std::collections::BTreeMap;

use ckpt_migrate::codec::python::canonical_json;
use ckpt_migrate::filters::FilterConfig;
use serde_json::Value;

use crate::harness::{
    self, cli_yaml, diff, oracle, read_json_export, read_redis, record_key, redis_db, redis_exec,
    redis_load, sqlite_fixture, view_line,
};

#[tokio::test]
async fn plainredis_fixture_matches_the_langgraph_oracle() {
    let url = redis_db();
    redis_load(&url, "redis/dump.jsonl").await;
    let (records, vanished) = read_redis(&url, "lg:", &FilterConfig::default(), 40).await;
    assert_eq!(vanished, 0);
    harness::assert_text_views_match_trees(&records);
    let expected = oracle("redis");
    assert_eq!(records.len(), expected.len());
    let mut matched = 0;
    for r in &records {
        let mut diffs = Vec::new();
        diff(&view_line(r), &expected[&record_key(r)], "", &mut diffs, 5);
        assert!(diffs.is_empty(), "{}: {diffs:?}", r.key);
        matched += 1;
    }
    println!(
        "oracle/redis.jsonl: {matched}/{} checkpoints match",
        expected.len()
    );
}

/// What langgraph-redis' JSON cannot tell apart is normalized on both sides: pydantic
/// models stored as plain `lc: 2` envelopes carry no `__type__` (the saver keeps
/// `__dict__`, not the model kind), the `__error__` value is an exception the saver
/// stored without its message, and pending writes come back as a multiset.
fn normalize(mut line: Value) -> Value {
    fn strip_type(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("__type__");
                m.values_mut().for_each(strip_type);
            }
            Value::Array(a) => a.iter_mut().for_each(strip_type),
            _ => {}
        }
    }
    strip_type(&mut line);
    if let Some(Value::Array(writes)) = line.get_mut("pending_writes") {
        for w in writes.iter_mut() {
            if w["channel"] == "__error__" {
                w["value"] = Value::Null;
            }
        }
        writes.sort_by_key(canonical_json);
    }
    line
}

#[tokio::test]
async fn langgraph_redis_json_documents_match_the_oracle() {
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    let (records, _) = read_redis(&url, "checkpoint:", &FilterConfig::default(), 50).await;
    harness::assert_text_views_match_trees(&records);
    let expected = oracle("redis_json");
    assert_eq!(records.len(), expected.len());
    let mut matched = 0;
    for r in &records {
        let mut diffs = Vec::new();
        diff(
            &normalize(view_line(r)),
            &normalize(expected[&record_key(r)].clone()),
            "",
            &mut diffs,
            5,
        );
        assert!(diffs.is_empty(), "{}: {diffs:?}", r.key);
        matched += 1;
    }
    let writes: usize = records.iter().map(|r| r.pending_writes.len()).sum();
    assert_eq!(writes, 571);
    println!(
        "oracle/redis_json.jsonl: {matched}/{} checkpoints match (pydantic __type__ and the __error__ value aside)",
        expected.len()
    );
}

/// The reader fetches a checkpoint's writes under the zset named from its key while
/// it parses the documents; a document under a key not named that way gets the writes
/// of the zset its own fields name (regression test for that guess).
#[tokio::test]
async fn writes_come_from_the_documents_own_zset_whatever_its_key() {
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    let (before, _) = read_redis(&url, "checkpoint:", &FilterConfig::default(), 50).await;
    let writes_of =
        |records: &[ckpt_migrate::record::Checkpoint]| -> BTreeMap<String, Vec<String>> {
            records
                .iter()
                .map(|r| {
                    let writes = r
                        .pending_writes
                        .iter()
                        .map(|w| {
                            format!("{} {} {} {:?}", w.task_id, w.channel, w.idx, w.value.bytes)
                        })
                        .collect();
                    (r.key.to_string(), writes)
                })
                .collect()
        };
    let moved: Vec<_> = before
        .iter()
        .filter(|r| !r.pending_writes.is_empty())
        .take(5)
        .map(|r| {
            let ns = if r.key.checkpoint_ns.is_empty() {
                "__empty__"
            } else {
                &r.key.checkpoint_ns
            };
            format!(
                "checkpoint:{}:{ns}:{}",
                r.key.thread_id, r.key.checkpoint_id
            )
        })
        .collect();
    assert_eq!(moved.len(), 5);
    for key in &moved {
        redis_exec(&url, &[&["RENAME", key, &format!("{key}:moved")]]).await;
    }
    let (after, _) = read_redis(&url, "checkpoint:", &FilterConfig::default(), 50).await;
    assert_eq!(writes_of(&after), writes_of(&before));
}

#[tokio::test]
async fn the_docs_example_layout_reads_back_the_same_raw_values() {
    // LangGraph's docs example writes checkpoint$… / writes$… hashes; build them from
    // the SQLite fixture (the same serializer output) and read them back.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = harness::read_sqlite(&sqlite_fixture(dir.path()), 1000).await;
    let url = redis_db();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for r in &sqlite {
        let key = format!(
            "checkpoint${}${}${}",
            r.key.thread_id, r.key.checkpoint_ns, r.key.checkpoint_id
        );
        pipe.cmd("HSET")
            .arg(&key)
            .arg("checkpoint")
            .arg(&r.checkpoint.bytes)
            .arg("type")
            .arg(&r.checkpoint.type_tag)
            .arg("metadata")
            .arg(&r.metadata.bytes)
            .arg("parent_checkpoint_id")
            .arg(r.parent_checkpoint_id.clone().unwrap_or_default())
            .ignore();
        for w in &r.pending_writes {
            let wkey = format!(
                "writes${}${}${}${}${}",
                r.key.thread_id, r.key.checkpoint_ns, r.key.checkpoint_id, w.task_id, w.idx
            );
            pipe.cmd("HSET")
                .arg(&wkey)
                .arg("channel")
                .arg(&w.channel)
                .arg("type")
                .arg(&w.value.type_tag)
                .arg("value")
                .arg(&w.value.bytes)
                .ignore();
        }
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    let (records, _) = read_redis(&url, "checkpoint:", &FilterConfig::default(), 64).await;
    assert_eq!(records.len(), sqlite.len());
    let by_key: BTreeMap<_, _> = sqlite.iter().map(|r| (record_key(r), r)).collect();
    for r in &records {
        let s = by_key[&record_key(r)];
        assert_eq!(r.checkpoint, s.checkpoint);
        assert_eq!(r.metadata, s.metadata);
        assert_eq!(r.parent_checkpoint_id, s.parent_checkpoint_id);
        let ours: Vec<_> = r
            .pending_writes
            .iter()
            .map(|w| (&w.task_id, w.idx, &w.channel, &w.value))
            .collect();
        let mut theirs: Vec<_> = s
            .pending_writes
            .iter()
            .map(|w| (&w.task_id, w.idx, &w.channel, &w.value))
            .collect();
        theirs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        assert_eq!(ours, theirs);
        assert_eq!(
            r.view.as_ref().unwrap().checkpoint,
            s.view.as_ref().unwrap().checkpoint
        );
    }
}

#[tokio::test]
async fn chat_message_lists_are_read_oldest_first() {
    let url = redis_db();
    // RedisChatMessageHistory LPUSHes: the newest message is first.
    let sessions = harness::redis_load_chat_lists(&url).await;
    let (records, _) = read_redis(&url, "message_store:", &FilterConfig::default(), 3).await;
    assert_eq!(records.len(), sessions.len());
    for s in &sessions {
        let r = records
            .iter()
            .find(|r| r.key.thread_id == s["session_id"].as_str().unwrap())
            .unwrap();
        let mut diffs = Vec::new();
        diff(
            &r.view.as_ref().unwrap().checkpoint["channel_values"]["messages"],
            &s["messages"],
            "",
            &mut diffs,
            5,
        );
        assert!(diffs.is_empty(), "{diffs:?}");
    }
}

#[tokio::test]
async fn thread_filters_go_into_scan_match_with_the_engine_result() {
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let export = move |out: &str, filters: &str| {
        let yaml = format!(
            "source_type: redis\nsource_config: {{redis_url: '{url}'}}\ndestination_type: json\ndestination_config: {{output_dir: {out}}}\nbatch_size: 30\nfilters: {filters}\n"
        );
        let run = cli_yaml(&dir_path, &yaml, &[]);
        assert_eq!(run.code(), 0, "{}", run.stderr());
        let mut keys: Vec<_> = read_json_export(&dir_path.join(out))
            .iter()
            .map(harness::key_of)
            .collect();
        keys.sort();
        keys
    };
    let (pushed, engine) = tokio::task::spawn_blocking(move || {
        (export("pushed", "{thread_pattern: 'customer-*', exclude_threads: ['*-0003']}"),
         export("engine", "{thread_pattern: 'customer-{0001,0002,0003,0004,0005,0006}', exclude_threads: ['customer-000[3]']}"))
    })
    .await
    .unwrap();
    let expected: Vec<_> = oracle("redis_json")
        .into_keys()
        .filter(|(t, _, _)| t.starts_with("customer-") && t != "customer-0003")
        .collect();
    assert_eq!(pushed, expected);
    assert_eq!(engine, expected);
}

/// Exports the Redis database `url` (with the source settings `more`, each after a
/// comma) to JSON under `dir/out`, off the test's runtime.
async fn export_to_json(dir: &std::path::Path, url: &str, more: &str) -> harness::Run {
    let yaml = format!(
        "source_type: redis\nsource_config: {{redis_url: '{url}'{more}}}\ndestination_type: json\ndestination_config: {{output_dir: out}}\n"
    );
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || cli_yaml(&dir, &yaml, &[]))
        .await
        .unwrap()
}

/// The langgraph-redis reader holds the next page, read ahead, when its connection is
/// cut: the batch of that page fails (retriable), the retry reconnects and reads that
/// page again, and every checkpoint comes once (the engine's retry, done by hand).
#[tokio::test]
async fn a_batch_that_fails_after_the_read_ahead_is_read_again_whole() {
    use ckpt_migrate::sources::{BatchLimits, Source};
    use ckpt_migrate::stores::redis::RedisSource;
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    let (all, _) = read_redis(&url, "checkpoint:", &FilterConfig::default(), 10).await;
    let config = harness::redis_source_config(&url, "checkpoint:");
    let filters = FilterConfig::default().compile().unwrap();
    let mut source = RedisSource::open(&config, &filters).await.unwrap();
    let limits = BatchLimits {
        max_records: 10,
        max_bytes: usize::MAX,
    };
    let first = source.next_batch(limits).await.unwrap().unwrap();
    assert!(first.records.len() < all.len(), "more than one page");
    let mut keys: Vec<String> = first.records.iter().map(|r| r.key.to_string()).collect();
    // The reader's connection cut (the clients on this test's database but this
    // one; other tests use other databases), with the page read ahead held.
    let db = url.rsplit('/').next().unwrap().to_owned();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut cut = 0;
    for line in clients.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_default()
                .to_owned()
        };
        if field("db=") == db && field("id=") != me.to_string() {
            let () = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(field("id="))
                .query_async(&mut conn)
                .await
                .unwrap();
            cut += 1;
        }
    }
    assert!(cut >= 1, "{clients}");
    let mut failures = 0;
    loop {
        match source.next_batch(limits).await {
            Ok(Some(batch)) => keys.extend(batch.records.iter().map(|r| r.key.to_string())),
            Ok(None) => break,
            Err(e) => {
                assert!(e.retriable, "{}", e.message);
                failures += 1;
                assert!(failures < 5, "{}", e.message);
            }
        }
    }
    assert!(failures >= 1, "the cut connection was noticed");
    keys.sort();
    let expected: Vec<String> = all.iter().map(|r| r.key.to_string()).collect();
    let missing = expected.iter().filter(|k| !keys.contains(k)).count();
    assert!(
        keys == expected,
        "every checkpoint once: {} read, {} expected, {missing} missing",
        keys.len(),
        expected.len()
    );
}

#[tokio::test]
async fn vanished_keys_are_skipped_and_counted_and_bad_values_dead_lettered() {
    let url = redis_db();
    redis_load(&url, "redis/dump.jsonl").await;
    // Two checkpoints listed in the registry are gone (as if expired), one blob is
    // garbage: the first are skipped and counted, the other fails into the dead letter.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg("lg:idx:customer-0001:")
        .arg(0)
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    for id in &ids {
        let () = redis::cmd("DEL")
            .arg(format!("lg:cp:customer-0001::{id}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let blobs: Vec<String> = redis::cmd("KEYS")
        .arg("lg:blob:customer-0002::messages:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut blobs = blobs;
    blobs.sort();
    let () = redis::cmd("SET")
        .arg(&blobs[0])
        .arg("not packed")
        .query_async(&mut conn)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = export_to_json(dir.path(), &url, ", key_prefix: 'lg:'").await;
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let stderr = run.stderr();
    assert!(stderr.contains("2 key(s) vanished"), "{stderr}");
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    let failed = dead.lines().count();
    assert!(failed >= 1, "{dead}");
    assert!(
        dead.contains(&blobs[0]),
        "the dead letter names the key: {dead}"
    );
    assert!(
        stderr.contains(&format!("read {}  written {}", 269, 269 - failed)),
        "{stderr}"
    );
}

#[test]
fn errors_are_clear_and_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let password = std::env::var("CKPT_TEST_REDIS_PASSWORD").unwrap();
    let url = harness::redis_url();
    let run_with = |url: &str| {
        harness::migrate_to_json(
            dir.path(),
            "redis",
            &serde_json::json!({ "redis_url": url }),
        )
    };
    let check = harness::assert_failed_naming;
    check(
        &run_with(&url.replace(&password, "wrong-pass-4242")),
        "authentication failed",
        "wrong-pass-4242",
    );
    let port = url.rsplit(':').next().unwrap().to_owned();
    check(
        &run_with(&url.replace(&format!(":{port}"), ":1")),
        "cannot connect",
        &password,
    );
    check(
        &run_with(&format!("{url}/900")),
        "no checkpoint data under key_prefix",
        &password,
    );
    check(&run_with("http://not-redis"), "not valid", &password);
}

#[tokio::test]
async fn a_wrong_typed_key_goes_to_the_dead_letter_file() {
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    redis_exec(
        &url,
        &[&["SET", "checkpoint:intruder:__empty__:x", "a string"]],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: redis\nsource_config: {{redis_url: '{url}'}}\ndestination_type: json\ndestination_config: {{output_dir: out}}\n"
    );
    let run = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            cli_yaml(&dir, &yaml, &["--dry-run"]).stdout() + &cli_yaml(&dir, &yaml, &[]).stderr()
        }
    })
    .await
    .unwrap();
    assert!(
        run.contains("langgraph-redis (RedisJSON documents)"),
        "dry run names the layout: {run}"
    );
    assert!(
        run.contains("read 272  written 271  filtered 0  failed 1"),
        "{run}"
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains("checkpoint:intruder") && dead.contains("type string"),
        "{dead}"
    );
}

/// A write document of another type fails its checkpoint into the dead-letter file,
/// named; the other checkpoints of its page are written (regression test: the
/// server's refusal failed the whole page's request, and the run with it).
#[tokio::test]
async fn a_wrong_typed_write_fails_its_checkpoint_only() {
    let url = redis_db();
    redis_load(&url, "redis-json/dump.jsonl").await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut writes: Vec<String> = redis::cmd("KEYS")
        .arg("checkpoint_write:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    writes.sort();
    redis_exec(
        &url,
        &[&["DEL", &writes[0]], &["SET", &writes[0], "a string"]],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = export_to_json(dir.path(), &url, "").await;
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("read 271  written 270  filtered 0  failed 1"),
        "{}",
        run.stderr()
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains(&writes[0]) && dead.contains("JSON.GET writes refused it"),
        "{dead}"
    );
}

#[test]
fn redis_cluster_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    harness::wait_until("the cluster node", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let run = harness::migrate_to_json(
        dir.path(),
        "redis",
        &serde_json::json!({ "redis_url": url }),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("Redis Cluster is not supported"),
        "{}",
        run.stderr()
    );
}

#[test]
fn redis_restart_mid_run_completes_through_retries() {
    // A private server loading the plainredis RDB, restarted (it reloads the RDB).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(
        harness::fixtures().join("redis/dump.rdb"),
        data.join("dump.rdb"),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = || {
        std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
                "--dir",
            ])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let ready = || {
        harness::wait_until("redis", || {
            std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        })
    };
    let mut server = start();
    ready();
    let yaml = format!(
        "source_type: redis\nsource_config: {{redis_url: 'redis://127.0.0.1:{port}/0', key_prefix: 'lg:'}}\ndestination_type: json\ndestination_config: {{output_dir: out}}\nbatch_size: 10\n"
    );
    let config = dir.path().join("m.yaml");
    std::fs::write(&config, yaml).unwrap();
    let child = harness::spawn_cli(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("CKPT_MIGRATE_FAULT", "slow:100")],
    );
    harness::wait_until("a few batches", || {
        harness::state_of(dir.path())
            .is_some_and(|s| s["counts"]["written"].as_u64().unwrap_or(0) >= 30)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut server = start();
    ready();
    let output = child.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
}
