//! Crashes, signals, server restarts, bad records, secrets: a run survives them and
//! `verify` proves nothing was lost or duplicated. Bounded in time, loopback only.

use std::collections::BTreeSet;

use crate::harness::{
    self, cli_env, cli_yaml, files_under, key_of, kill_9_after_three_batches, pg_database,
    pg_url_for, read_json_export, resume_and_verify, spawn_cli, sqlite_fixture, state_of,
    wait_until,
};

fn sqlite_yaml(dest: &str) -> String {
    format!(
        "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: {dest}\nbatch_size: 20\n"
    )
}

const JSON_DEST: &str = "json\ndestination_config: {output_dir: out}";
const PARQUET_DEST: &str = "parquet\ndestination_config: {output_path: out/cp.parquet}";

fn write_yaml(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("migration.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

/// The SQLite fixture with every checkpoint of `thread` broken (not msgpack), and the
/// config of its JSON export in batches of 20.
fn json_export_of_a_broken_thread(dir: &std::path::Path, thread: &str) -> String {
    let db = sqlite_fixture(dir);
    let sql = format!("UPDATE checkpoints SET checkpoint = x'c1' WHERE thread_id = '{thread}'");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(harness::sqlite_execute(&db, &sql));
    write_yaml(dir, &sqlite_yaml(JSON_DEST))
}

/// Runs `config` with the fault `fault` injected, and checks that the process died.
fn crash_at(dir: &std::path::Path, config: &str, fault: &str) {
    let crashed = cli_env(dir, &["--config", config], &[("CKPT_MIGRATE_FAULT", fault)]);
    assert_eq!(
        crashed.output.status.code(),
        None,
        "{fault}: the process must have died: {}",
        crashed.stderr()
    );
}

/// Crashes at `fault`, checks nothing unfinished looks finished, resumes, verifies.
fn crash_resume_verify(dir: &std::path::Path, yaml: &str, fault: &str, expected: usize) {
    let config = write_yaml(dir, yaml);
    crash_at(dir, &config, fault);
    let files = files_under(&dir.join("out"));
    assert!(
        files
            .iter()
            .all(|f| f.ends_with(".partial") || f.ends_with("dead-letter.jsonl")),
        "{fault}: an unfinished export must not look complete: {files:?}"
    );
    // Without --resume the run refuses to guess.
    let refused = cli_env(dir, &["--config", &config], &[]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("--resume") && refused.stderr().contains("--restart"),
        "{}",
        refused.stderr()
    );
    resume_and_verify(dir, &config);
    let verify = cli_env(dir, &["verify", "--config", &config], &[]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
    assert!(
        verify
            .stdout()
            .contains(&format!("destination {expected} in")),
        "{}",
        verify.stdout()
    );
    let files = files_under(&dir.join("out"));
    assert!(files.iter().all(|f| !f.ends_with(".partial")), "{files:?}");
}

#[test]
fn sqlite_to_json_survives_crashes_at_several_points() {
    for fault in [
        "crash-after-write:1",
        "crash-after-write:6",
        "crash-after-commit:1",
        "crash-after-commit:13",
    ] {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        crash_resume_verify(dir.path(), &sqlite_yaml(JSON_DEST), fault, 271);
        let keys: Vec<_> = read_json_export(&dir.path().join("out"))
            .iter()
            .map(key_of)
            .collect();
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!(
            (keys.len(), unique.len()),
            (271, 271),
            "{fault}: no duplicates, nothing lost"
        );
    }
}

/// A SQLite database the run creates is loaded with a rollback journal: a crash in the
/// middle leaves it with what was committed (a hot journal of an unfinished batch is
/// rolled back when it is opened again), and the resumed run goes on in WAL mode.
#[test]
fn a_new_sqlite_database_survives_crashes_while_it_is_loaded() {
    let dest = "sqlite\ndestination_config: {connection_string: 'sqlite:///out/copy.db'}";
    for fault in ["crash-after-write:3", "crash-after-commit:5"] {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let config = write_yaml(dir.path(), &sqlite_yaml(dest));
        crash_at(dir.path(), &config, fault);
        resume_and_verify(dir.path(), &config);
        let copy = dir.path().join("out/copy.db");
        let check = std::process::Command::new(crate::store_destinations::python())
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
                 print(*[c.execute(q).fetchone()[0] for q in ('pragma journal_mode', 'pragma integrity_check', 'select count(*) from checkpoints')])",
            ])
            .arg(&copy)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            "wal ok 271",
            "{fault}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// Regression: a batch whose records all fail reaches no sink, so a sink that confirms
/// late (the JSON export syncs a batch while the next one is written) still holds the
/// batch before it unconfirmed. The engine confirmed that one anyway at the empty
/// batch, recording a position ahead of what was durable: a crash there lost the
/// records written just before.
#[test]
fn a_batch_with_nothing_to_write_confirms_nothing_early() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of 20: the first thread's last 4 checkpoints and customer-0001's first
    // 16 make batch 2, customer-0001 alone batch 3; all of customer-0001 fails.
    let config = json_export_of_a_broken_thread(dir.path(), "customer-0001");
    crash_at(dir.path(), &config, "crash-after-commit:3");
    let resumed = cli_env(dir.path(), &["--config", &config, "--resume"], &[]);
    assert_eq!(resumed.code(), 1, "{}", resumed.stderr());
    let keys: Vec<_> = read_json_export(&dir.path().join("out"))
        .iter()
        .map(key_of)
        .collect();
    let unique: BTreeSet<_> = keys.iter().cloned().collect();
    let expected: BTreeSet<_> = harness::oracle("sqlite")
        .into_keys()
        .filter(|(thread, _, _)| thread != "customer-0001")
        .collect();
    assert_eq!(keys.len(), unique.len(), "no duplicates");
    let missing: Vec<_> = expected.difference(&unique).collect();
    let extra: Vec<_> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "every good checkpoint, the ones before the empty batch too: missing {missing:?}, extra {extra:?}"
    );
}

/// The JSON export's resume state is the length of its files log; a state written by
/// an earlier version lists every file instead, and a run resumes from either.
#[test]
fn a_json_export_resumes_from_a_state_that_lists_its_files() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let config = write_yaml(dir.path(), &sqlite_yaml(JSON_DEST));
    crash_at(dir.path(), &config, "crash-after-commit:7");
    // The state as an earlier version wrote it: every file's entry, from the log.
    let states = dir.path().join(".ckpt-migrate");
    let state_path = std::fs::read_dir(&states)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let logged = state["sink"]["files_log"]
        .as_u64()
        .expect("the files log's length") as usize;
    let log_path = dir.path().join("out/manifest.json.files.partial");
    let log = std::fs::read(&log_path).unwrap();
    assert!(log.len() >= logged, "the log holds what the state counts");
    let mut files: Vec<serde_json::Value> = Vec::new();
    for line in log[..logged]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let entry: serde_json::Value = serde_json::from_slice(line).unwrap();
        match files.iter_mut().find(|f| f["group"] == entry["group"]) {
            Some(known) => *known = entry,
            None => files.push(entry),
        }
    }
    assert!(files.len() > 1, "{files:?}");
    state["sink"] = serde_json::json!({ "files": files });
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::remove_file(&log_path).unwrap();

    resume_and_verify(dir.path(), &config);
    let keys: Vec<_> = read_json_export(&dir.path().join("out"))
        .iter()
        .map(key_of)
        .collect();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (271, 271));
    assert!(
        files_under(&dir.path().join("out"))
            .iter()
            .all(|f| !f.ends_with(".partial")),
        "the files log is gone once the manifest is written"
    );
}

#[test]
fn sqlite_to_json_arrays_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let yaml = sqlite_yaml("json\ndestination_config: {output_dir: out, indent: 2}");
    crash_resume_verify(dir.path(), &yaml, "crash-after-write:4", 271);
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
}

#[test]
fn sqlite_to_parquet_survives_crashes() {
    for fault in ["crash-after-write:2", "crash-after-commit:7"] {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        crash_resume_verify(dir.path(), &sqlite_yaml(PARQUET_DEST), fault, 271);
    }
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let yaml =
        sqlite_yaml("parquet\ndestination_config: {output_path: ds, partition_by: [thread_id]}");
    let config = write_yaml(dir.path(), &yaml);
    crash_at(dir.path(), &config, "crash-after-write:5");
    resume_and_verify(dir.path(), &config);
}

#[tokio::test]
async fn postgres_to_json_survives_a_crash() {
    let db = pg_database(&["checkpoints.sql"]).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{}'}}\ndestination_type: {JSON_DEST}\nbatch_size: 25\n",
        pg_url_for(&db)
    );
    let dir_path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        crash_resume_verify(&dir_path, &yaml, "crash-after-commit:4", 271)
    })
    .await
    .unwrap();
}

/// The langgraph-redis reader reads the next SCAN page while it parses one: the
/// resume position saved with a batch is the cursor after that batch's own page, never
/// after the page read ahead (regression test: a crash between the two would have lost
/// the page read ahead).
#[tokio::test]
async fn langgraph_redis_to_json_survives_a_crash_after_its_read_ahead() {
    let url = harness::redis_db();
    harness::redis_load(&url, "redis-json/dump.jsonl").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: redis\nsource_config: {{redis_url: '{url}'}}\ndestination_type: {JSON_DEST}\nbatch_size: 10\n"
    );
    let dir_path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        crash_resume_verify(&dir_path, &yaml, "crash-after-commit:1", 271);
        let keys: Vec<_> = read_json_export(&dir_path.join("out"))
            .iter()
            .map(key_of)
            .collect();
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!((keys.len(), unique.len()), (271, 271));
    })
    .await
    .unwrap();
}

#[test]
fn kill_9_mid_run_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let config = write_yaml(dir.path(), &sqlite_yaml(JSON_DEST));
    kill_9_after_three_batches(dir.path(), &config);
    resume_and_verify(dir.path(), &config);
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
}

#[test]
fn sigterm_finishes_the_batch_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let config = write_yaml(dir.path(), &sqlite_yaml(JSON_DEST));
    let child = spawn_cli(
        dir.path(),
        &["--config", &config],
        &[("CKPT_MIGRATE_FAULT", "slow:60")],
    );
    wait_until("two confirmed batches", || {
        state_of(dir.path()).is_some_and(|s| s["counts"]["written"].as_u64().unwrap_or(0) >= 40)
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let state = state_of(dir.path()).unwrap();
    assert_eq!(state["status"], "interrupted");
    let written = state["counts"]["written"].as_u64().unwrap();
    assert!(
        written < 271 && written.is_multiple_of(20),
        "stopped on a batch boundary: {written}"
    );
    assert!(
        files_under(&dir.path().join("out"))
            .iter()
            .all(|f| f.ends_with(".partial"))
    );
    resume_and_verify(dir.path(), &config);
}

#[test]
fn restart_forgets_the_unfinished_run() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let config = write_yaml(dir.path(), &sqlite_yaml(JSON_DEST));
    crash_at(dir.path(), &config, "crash-after-commit:3");
    let run = cli_env(
        dir.path(),
        &["--config", &config, "--restart", "--verify"],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!run.stderr().contains("resumed"));
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
    // A changed configuration never picks up that state.
    let other = cli_yaml(
        dir.path(),
        &sqlite_yaml("json\ndestination_config: {output_dir: other}"),
        &[],
    );
    assert_eq!(other.code(), 0, "{}", other.stderr());
}

#[test]
fn postgres_restart_mid_run_completes_through_retries() {
    // A private server: restarting the shared one would disturb other tests.
    let servers = tempfile::tempdir().unwrap();
    let script = harness::fixtures().join("../../scripts/test-servers.sh");
    std::fs::set_permissions(
        servers.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = std::process::Command::new(&script)
        .args(["start", servers.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exports = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |name: &str| {
        exports
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("export {name}='"))?
                    .strip_suffix('\'')
                    .map(str::to_owned)
            })
            .unwrap()
    };
    let (url, data, bin) = (
        var("CKPT_TEST_PG_URL"),
        var("CKPT_TEST_PG_DATA"),
        var("CKPT_TEST_PG_BIN"),
    );
    let stop = scopeguard(servers.path().to_owned(), script.clone());
    let load = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
        .arg(harness::fixtures().join("postgres/checkpoints.sql"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(load.success());

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{url}'}}\ndestination_type: {JSON_DEST}\nbatch_size: 10\n"
    );
    let config = write_yaml(dir.path(), &yaml);
    let child = spawn_cli(
        dir.path(),
        &["--config", &config],
        &[("CKPT_MIGRATE_FAULT", "slow:100")],
    );
    wait_until("a few batches", || {
        state_of(dir.path()).is_some_and(|s| s["counts"]["written"].as_u64().unwrap_or(0) >= 30)
    });
    let as_pg = |args: &[&str]| {
        let mut c = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            std::process::Command::new(args[0])
        };
        if running_as_root() {
            c.args(args);
        } else {
            c.args(&args[1..]);
        }
        c.status().unwrap()
    };
    let pg_ctl = format!("{bin}/pg_ctl");
    let log = format!("{data}/../restart.log");
    assert!(
        as_pg(&[
            &pg_ctl, "-D", &data, "-l", &log, "-m", "fast", "-w", "restart"
        ])
        .success()
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying") || stderr.contains("reconnecting"),
        "the restart was noticed: {stderr}"
    );
    let verify = cli_env(dir.path(), &["verify", "--config", &config], &[]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
    assert_eq!(read_json_export(&dir.path().join("out")).len(), 271);
    drop(stop);
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Stops the private servers when dropped (also when the test fails).
fn scopeguard(dir: std::path::PathBuf, script: std::path::PathBuf) -> impl Drop {
    struct Stop(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.1)
                .args(["stop", self.0.to_str().unwrap()])
                .status();
        }
    }
    Stop(dir, script)
}

#[tokio::test]
async fn corrupt_blobs_and_invalid_utf8_go_to_the_dead_letter_file_exactly() {
    let db = pg_database(&["checkpoints.sql"]).await;
    // One blob truncated, one blob a msgpack string that is not UTF-8. Every
    // checkpoint that uses either blob fails; count them in SQL.
    harness::pg_execute(
        &db,
        &[
            "CREATE TABLE picked AS SELECT thread_id, checkpoint_ns, channel, version FROM checkpoint_blobs \
             WHERE type = 'msgpack' AND channel = 'messages' ORDER BY thread_id, version LIMIT 1",
            "INSERT INTO picked SELECT thread_id, checkpoint_ns, channel, version FROM checkpoint_blobs \
             WHERE type = 'msgpack' AND channel = 'context' ORDER BY thread_id DESC, version LIMIT 1",
            "UPDATE checkpoint_blobs b SET blob = substr(b.blob, 1, 10) FROM picked p WHERE p.channel = 'messages' \
             AND (b.thread_id, b.checkpoint_ns, b.channel, b.version) = (p.thread_id, p.checkpoint_ns, p.channel, p.version)",
            "UPDATE checkpoint_blobs b SET blob = '\\xa3fffefd'::bytea FROM picked p WHERE p.channel = 'context' \
             AND (b.thread_id, b.checkpoint_ns, b.channel, b.version) = (p.thread_id, p.checkpoint_ns, p.channel, p.version)",
        ],
    )
    .await;
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg_url_for(&db)).await.unwrap();
    let affected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkpoints c WHERE EXISTS (SELECT 1 FROM picked p, jsonb_each_text(c.checkpoint->'channel_versions') cv \
         WHERE p.thread_id = c.thread_id AND p.checkpoint_ns = c.checkpoint_ns AND cv.key = p.channel AND cv.value = p.version)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(affected >= 2);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{}'}}\ndestination_type: {JSON_DEST}\n",
        pg_url_for(&db)
    );
    let dir_path = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || cli_yaml(&dir_path, &yaml, &["--verify"]))
        .await
        .unwrap();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let written = 271 - affected as usize;
    assert!(
        run.stderr().contains(&format!(
            "read 271  written {written}  filtered 0  failed {affected}"
        )),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout().contains("equal"),
        "verify expects the failed records not to be there: {}",
        run.stdout()
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), affected as usize);
    assert!(dead.contains("not valid UTF-8"), "{dead}");
    assert!(dead.contains("truncated"), "{dead}");
}

#[test]
fn max_errors_stops_the_run_and_replay_reprocesses_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = json_export_of_a_broken_thread(dir.path(), "customer-0002");
    let run = cli_env(dir.path(), &["--config", &config, "--max-errors", "3"], &[]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("more than --max-errors 3"),
        "{}",
        run.stderr()
    );
    assert_eq!(state_of(dir.path()).unwrap()["status"], "failed");

    // Without a limit the run finishes; the bad thread is in the dead-letter file.
    let run = cli_env(
        dir.path(),
        &["--config", &config, "--restart", "--max-errors", "0"],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let dead_path = dir.path().join("out/dead-letter.jsonl");
    let dead = std::fs::read_to_string(&dead_path).unwrap();
    let failed = dead.lines().count();
    assert!(failed > 3);
    // A record that can now be written (here: one exported by this run) replays
    // fine; the broken ones fail again into a new file, never into the one replayed.
    let good = &read_json_export(&dir.path().join("out"))[0];
    let mut raw = good["raw"].clone();
    raw["parent_checkpoint_id"] = good["parent_checkpoint_id"].clone();
    let entry = serde_json::json!({
        "stage": "write", "error": "timeout", "origin": good["origin"],
        "key": {"thread_id": good["thread_id"], "checkpoint_ns": good["checkpoint_ns"], "checkpoint_id": good["checkpoint_id"]},
        "record": raw,
    });
    std::fs::write(&dead_path, format!("{dead}{entry}\n")).unwrap();
    let replay_yaml = write_yaml(
        dir.path(),
        "destination_type: json\ndestination_config: {output_dir: replayed}\n",
    );
    let run = cli_env(
        dir.path(),
        &[
            "--config",
            &replay_yaml,
            "--replay-dead-letter",
            "out/dead-letter.jsonl",
        ],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains(&format!("written 1  filtered 0  failed {failed}")),
        "{}",
        run.stderr()
    );
    assert_eq!(read_json_export(&dir.path().join("replayed")).len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("replayed/dead-letter.jsonl"))
            .unwrap()
            .lines()
            .count(),
        failed
    );
}

#[tokio::test]
async fn no_output_of_a_run_contains_the_password() {
    let db = pg_database(&["checkpoints.sql"]).await;
    harness::pg_execute(
        &db,
        &["UPDATE checkpoints SET metadata = '[1]' WHERE thread_id = 'test-abc'"],
    )
    .await;
    let password = std::env::var("CKPT_TEST_PG_PASSWORD").unwrap();
    let url = pg_url_for(&db).replace(&password, "${CKPT_TEST_SECRET_PW}");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "source_type: postgresql\nsource_config: {{connection_string: '{url}'}}\ndestination_type: {JSON_DEST}\nbatch_size: 50\n"
    );
    let dir_path = dir.path().to_owned();
    let pw = password.clone();
    let (dry, run, verify) = tokio::task::spawn_blocking(move || {
        let config = write_yaml(&dir_path, &yaml);
        let env = [("CKPT_TEST_SECRET_PW", pw.as_str())];
        let dry = cli_env(
            &dir_path,
            &["--config", &config, "--dry-run", "--verbose"],
            &env,
        );
        let crashed = cli_env(
            &dir_path,
            &["--config", &config, "--verbose"],
            &[
                ("CKPT_TEST_SECRET_PW", pw.as_str()),
                ("CKPT_MIGRATE_FAULT", "crash-after-commit:2"),
            ],
        );
        assert_eq!(crashed.output.status.code(), None);
        let run = cli_env(
            &dir_path,
            &["--config", &config, "--verbose", "--resume"],
            &env,
        );
        let verify = cli_env(
            &dir_path,
            &["verify", "--config", &config, "--verbose"],
            &env,
        );
        (dry, run, verify)
    })
    .await
    .unwrap();
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let mut everything = String::new();
    for r in [&dry, &run, &verify] {
        everything.push_str(&r.stdout());
        everything.push_str(&r.stderr());
    }
    for file in files_under(dir.path()) {
        everything.push_str(&String::from_utf8_lossy(
            &std::fs::read(dir.path().join(&file)).unwrap(),
        ));
    }
    assert!(
        everything.contains("dead-letter"),
        "the run had a failed record"
    );
    assert!(
        !everything.contains(&password),
        "the password appears in an output of the run"
    );
}
