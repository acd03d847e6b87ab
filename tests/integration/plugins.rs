//! WASM plugins built from source (plugins/): the reference transformers, filter
//! plugins, API version checks, the compile cache and `plugin check`. The sandbox
//! against hostile guests is in `sandbox.rs`.

use std::path::{Path, PathBuf};

use crate::harness::{cli, cli_env, cli_yaml, read_json_export, sqlite_fixture};

pub fn wasm(name: &str) -> PathBuf {
    Path::new(env!("CKPT_PLUGIN_WASM_DIR")).join(format!("{name}.wasm"))
}

pub fn yaml(extra: &str) -> String {
    format!(
        "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: json\ndestination_config: {{output_dir: out}}\nbatch_size: 50\n{extra}"
    )
}

#[test]
fn reference_plugins_in_the_seed_form_stamp_and_normalize() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    // Timestamps in several forms in one thread's metadata.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
        sqlx::query(
            "UPDATE checkpoints SET metadata = CAST(json_set(CAST(metadata AS TEXT), \
             '$.created_at', 1700000000123, '$.updated_at', '2025-01-02 03:04:05', \
             '$.seen_at', 'not a date', '$.timestamp', 1700000000) AS BLOB) WHERE thread_id = 'test-abc'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
    let run = cli_yaml(
        dir.path(),
        &yaml("transformers: [add_metadata, normalize_timestamps]\n"),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains("not a timestamp I can read"),
        "reported: {}",
        run.stderr()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/manifest.json")).unwrap())
            .unwrap();
    let started =
        chrono::DateTime::parse_from_rfc3339(manifest["started_at"].as_str().unwrap()).unwrap();
    let exported = read_json_export(&dir.path().join("out"));
    assert_eq!(exported.len(), 271);
    for object in &exported {
        let m = &object["metadata"];
        let migrated =
            chrono::DateTime::parse_from_rfc3339(m["migrated_at"].as_str().unwrap()).unwrap();
        assert_eq!(migrated, started, "migrated_at is the run's start");
        assert_eq!(m["migration_run_id"], manifest["run_id"]);
        assert_eq!(m["migration_source"], "sqlite");
        assert!(m["source"].is_string(), "existing keys are kept");
        // The raw metadata was rewritten too (the export keeps both).
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            object["raw"]["metadata"]["data"].as_str().unwrap(),
        )
        .unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(&raw, m);
        if object["thread_id"] == "test-abc" {
            assert_eq!(m["created_at"], "2023-11-14T22:13:20.123Z");
            assert_eq!(m["updated_at"], "2025-01-02T03:04:05Z");
            assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
            assert_eq!(
                m["seen_at"], "not a date",
                "unreadable values are left alone"
            );
        }
    }
}

#[test]
fn add_metadata_config_adds_static_fields_and_may_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let extra = "transformers:\n  - name: add_metadata\n    config: { fields: { team: support, tenant: replaced, nested: { a: [1, 2] } }, overwrite: true }\n";
    let run = cli_yaml(dir.path(), &yaml(extra), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for object in read_json_export(&dir.path().join("out")) {
        assert_eq!(object["metadata"]["team"], "support");
        assert_eq!(object["metadata"]["tenant"], "replaced");
        assert_eq!(
            object["metadata"]["nested"],
            serde_json::json!({"a": [1, 2]})
        );
    }
}

#[test]
fn filter_plugins_keep_drop_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let extra = format!(
        "filters:\n  exclude_threads: ['customer-0006']\n  plugins:\n    - path: {}\n      config: {{ prefix: customer-, reject: [customer-0002] }}\n",
        wasm("keep_prefix").display()
    );
    let run = cli_yaml(dir.path(), &yaml(&extra), &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let exported = read_json_export(&dir.path().join("out"));
    let oracle = crate::harness::oracle("sqlite");
    let count = |f: &dyn Fn(&str) -> bool| oracle.keys().filter(|(t, _, _)| f(t)).count();
    let kept =
        count(&|t| t.starts_with("customer-") && t != "customer-0002" && t != "customer-0006");
    let rejected = count(&|t| t == "customer-0002");
    assert_eq!(exported.len(), kept);
    assert!(
        exported
            .iter()
            .all(|o| o["thread_id"].as_str().unwrap().starts_with("customer-"))
    );
    // customer-0006 never leaves SQLite (pushed down); the plugin drops the others.
    let read = 271 - count(&|t| t == "customer-0006");
    let expected = format!(
        "read {read}  written {kept}  filtered {}  failed {rejected}",
        read - kept - rejected
    );
    assert!(
        run.stderr().contains(&expected),
        "{expected}: {}",
        run.stderr()
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), rejected);
    assert!(
        dead.contains("\"stage\":\"plugin\"")
            && dead.contains("plugin ")
            && dead.contains("reject list"),
        "{dead}"
    );
}

#[test]
fn a_granted_directory_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("label.txt"), "granted\n").unwrap();
    let spec = format!(
        "transformers:\n  - path: {}\n    config: {{ mode: read-file, path: /data/label.txt, batch: 0 }}\n    allow_dir: {}\n",
        wasm("hostile").display(),
        data.display()
    );
    let run = cli_yaml(dir.path(), &yaml(&spec), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let exported = read_json_export(&dir.path().join("out"));
    assert_eq!(
        exported
            .iter()
            .filter(|o| o["metadata"]["file"] == "granted")
            .count(),
        50
    );
}

#[test]
fn a_plugin_for_another_api_version_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let run = cli_yaml(
        dir.path(),
        &yaml(&format!(
            "transformers:\n  - path: {}\n",
            wasm("future_api").display()
        )),
        &[],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("implements plugin API 0.2.0")
            && run.stderr().contains("speaks API 0.1.0"),
        "{}",
        run.stderr()
    );
    assert!(!dir.path().join("out").exists());
    let run = cli_yaml(dir.path(), &yaml("transformers: [no_such_plugin]\n"), &[]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("transformers[0]") && run.stderr().contains("no_such_plugin"),
        "{}",
        run.stderr()
    );
    let run = cli_yaml(
        dir.path(),
        &yaml("transformers:\n  - path: x.wasm\n    timeout: 5\n"),
        &[],
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("transformers[0]") && run.stderr().contains("timeout"),
        "{}",
        run.stderr()
    );
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let cache = dir.path().join("cache");
    let env = [("CKPT_MIGRATE_CACHE_DIR", cache.to_str().unwrap())];
    let config = dir.path().join("m.yaml");
    std::fs::write(&config, yaml("transformers: [add_metadata]\n")).unwrap();
    let first = cli_env(dir.path(), &["--config", config.to_str().unwrap()], &env);
    assert_eq!(first.code(), 0, "{}", first.stderr());
    let snapshot = || {
        // Compiled artifacts only (wasmtime also keeps usage statistics next to them).
        let mut files: Vec<(String, std::time::SystemTime)> = crate::harness::files_under(&cache)
            .into_iter()
            .filter(|f| {
                !f.ends_with(".stats") && !f.rsplit('/').next().unwrap_or("").starts_with('.')
            })
            .map(|f| {
                let modified = std::fs::metadata(cache.join(&f))
                    .unwrap()
                    .modified()
                    .unwrap();
                (f, modified)
            })
            .collect();
        files.sort();
        files
    };
    let after_first = snapshot();
    assert!(!after_first.is_empty(), "the compiled component was stored");
    let second = cli_env(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--restart"],
        &env,
    );
    assert_eq!(second.code(), 0, "{}", second.stderr());
    assert_eq!(
        snapshot(),
        after_first,
        "the second run compiled nothing new"
    );
}

#[test]
fn plugin_check_shows_what_a_plugin_is_and_does() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["plugin", "check", "normalize_timestamps"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let out = run.stdout();
    assert!(
        out.contains("plugin:   normalize_timestamps 0.1.0"),
        "{out}"
    );
    assert!(
        out.contains("kind:     Transformer (plugin API 0.1.0)"),
        "{out}"
    );
    assert!(out.contains("reads:    metadata"), "{out}");
    assert!(
        out.contains("\"created_at\":\"2025-06-01T12:00:01.250Z\""),
        "{out}"
    );
    let run = cli(
        dir.path(),
        &[
            "plugin",
            "check",
            wasm("keep_prefix").to_str().unwrap(),
            "--config",
            r#"{"prefix": "test-"}"#,
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stdout().contains("kind:     Filter")
            && run
                .stdout()
                .contains("test-abc 1f000000-0000-6000-8000-000000000003: keep"),
        "{}",
        run.stdout()
    );
    let run = cli(
        dir.path(),
        &["plugin", "check", wasm("future_api").to_str().unwrap()],
    );
    assert_eq!(run.code(), 2);
}

/// `plugin test`: a plugin on the author's own records (a JSON export's lines). The
/// outcomes print one per record; `--json` prints them in the form `--expect` reads;
/// with `--expect` the command is a unit test: exit 0 when every outcome matches, 1
/// with the differences listed. A bad records file is a usage error naming the line.
#[test]
fn plugin_test_runs_a_plugin_on_exported_records_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let export = cli(
        dir.path(),
        &[
            "--source",
            "sqlite",
            "--source-config",
            &serde_json::json!({ "connection_string": db.display().to_string() }).to_string(),
            "--destination",
            "json",
            "--dest-config",
            r#"{"output_dir": "out", "single_file": true}"#,
        ],
    );
    assert_eq!(export.code(), 0, "{}", export.stderr());
    let hostile = wasm("hostile").display().to_string();
    let records = "out/checkpoints.jsonl";
    // `plugin test PLUGIN --records … EXTRA…` (the hostile guest rejecting odd records,
    // or a reference plugin by name).
    let test = |plugin: &str, extra: &[&str]| {
        let mut args = vec!["plugin", "test", plugin, "--records", records];
        if plugin == hostile {
            args.extend(["--config", r#"{"mode": "reject-odd"}"#]);
        }
        args.extend_from_slice(extra);
        cli(dir.path(), &args)
    };
    let text = test(&hostile, &[]);
    assert_eq!(text.code(), 0, "{}", text.stderr());
    let out = text.stdout();
    assert_eq!(out.lines().count(), 271, "{out}");
    // The guest acts on its batch 0 only: the first 100 records, as a run's batches.
    assert_eq!(out.matches(": reject: odd record").count(), 50, "{out}");
    assert_eq!(out.matches(": keep").count(), 221, "{out}");

    let json = test(&hostile, &["--json"]);
    std::fs::write(dir.path().join("expect.jsonl"), json.stdout()).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(json.stdout().lines().next().unwrap()).unwrap();
    assert_eq!(first["outcome"], "reject", "{first}");
    assert_eq!(first["reason"], "odd record", "{first}");
    let pass = test(&hostile, &["--expect", "expect.jsonl"]);
    assert_eq!(pass.code(), 0, "{}{}", pass.stdout(), pass.stderr());
    assert!(
        pass.stdout().contains("as expected: 271 outcome(s)"),
        "{}",
        pass.stdout()
    );
    let fail = test("add_metadata", &["--expect", "expect.jsonl"]);
    assert_eq!(fail.code(), 1, "{}{}", fail.stdout(), fail.stderr());
    assert!(
        fail.stdout().contains("271 difference(s)"),
        "{}",
        fail.stdout()
    );

    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"thread_id\": \"t\"}\nnot json\n",
    )
    .unwrap();
    let bad = cli(
        dir.path(),
        &["plugin", "test", "add_metadata", "--records", "bad.jsonl"],
    );
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(
        bad.stderr().contains("bad.jsonl line 1"),
        "{}",
        bad.stderr()
    );
}

/// `CKPT_MIGRATE_PLUGIN_PERF_MAP=1` leaves the map `perf` reads, naming the plugin's
/// compiled functions; without it, none is written.
#[test]
fn a_perf_map_names_the_plugins_functions_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    std::fs::write(
        dir.path().join("m.yaml"),
        yaml("transformers: [add_metadata]\n"),
    )
    .unwrap();
    let map_of = |pid: u32| PathBuf::from(format!("/tmp/perf-{pid}.map"));
    for (asked, env) in [(true, "1"), (false, "0")] {
        let child = crate::harness::spawn_cli(
            dir.path(),
            &["--config", "m.yaml", "--restart"],
            &[("CKPT_MIGRATE_PLUGIN_PERF_MAP", env)],
        );
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let map = std::fs::read_to_string(map_of(pid));
        let _ = std::fs::remove_file(map_of(pid));
        if asked {
            let map = map.expect("the perf map is written");
            assert!(
                map.lines().any(|l| l.contains("wasm[")),
                "no wasm function in the map: {}",
                &map[..map.len().min(500)]
            );
        } else {
            assert!(map.is_err(), "a perf map was written without being asked");
        }
    }
}
