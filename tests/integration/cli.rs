//! The command line: the seed's flags, config errors, exit codes.

use crate::harness::{cli, cli_yaml, sqlite_fixture};

#[test]
fn help_shows_the_seed_flags_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(dir.path(), &["--help"]);
    assert_eq!(run.code(), 0);
    let help = run.stdout();
    for flag in [
        "--source",
        "--source-config",
        "--destination",
        "--dest-config",
        "--config",
        "--dry-run",
        "--batch-size",
        "--verbose",
        "Examples:",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn seed_flags_run_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let source = serde_json::json!({"connection_string": format!("sqlite:///{}", db.display())});
    let run = cli(
        dir.path(),
        &[
            "--source",
            "sqlite",
            "--source-config",
            &source.to_string(),
            "--destination",
            "json",
            "--dest-config",
            r#"{"output_dir": "out"}"#,
            "--batch-size",
            "50",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("read 271  written 271  filtered 0  failed 0"),
        "{}",
        run.stderr()
    );
    assert!(dir.path().join("out/manifest.json").exists());
}

#[test]
fn unknown_keys_are_usage_errors_that_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli_yaml(
        dir.path(),
        "source_type: sqlite\nsource_config: {connection_strng: x.db}\ndestination_type: json\ndestination_config: {output_dir: out}\n",
        &[],
    );
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("source_config"), "{}", run.stderr());
    assert!(
        run.stderr().contains("connection_strng"),
        "{}",
        run.stderr()
    );

    let run = cli_yaml(dir.path(), "source_type: sqlite\nbatch_sise: 10\n", &[]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("batch_sise"), "{}", run.stderr());
}

#[test]
fn wrong_types_are_usage_errors_that_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli_yaml(
        dir.path(),
        "source_type: sqlite\nsource_config: {connection_string: x.db}\ndestination_type: parquet\ndestination_config: {output_path: x.parquet, compression: brotli}\n",
        &[],
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("destination_config.compression"),
        "{}",
        run.stderr()
    );

    let run = cli_yaml(dir.path(), "source_type: sqlite\nbatch_size: lots\n", &[]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("batch_size"), "{}", run.stderr());

    let run = cli(
        dir.path(),
        &[
            "--source",
            "sqlite",
            "--source-config",
            "{not json",
            "--destination",
            "json",
        ],
    );
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("--source-config"), "{}", run.stderr());
}

#[test]
fn an_unreachable_store_is_a_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli(
        dir.path(),
        &[
            "--source",
            "unified",
            "--source-config",
            r#"{"qdrant_url": "http://127.0.0.1:1", "collection": "c"}"#,
            "--destination",
            "json",
            "--dest-config",
            r#"{"output_dir": "out"}"#,
        ],
    );
    assert_eq!(run.code(), 3, "{}", run.stderr());
    assert!(
        run.stderr().contains("Qdrant http://127.0.0.1:1"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_missing_database_is_a_failure_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = cli_yaml(
        dir.path(),
        "source_type: sqlite\nsource_config: {connection_string: 'sqlite:///nowhere/missing.db'}\ndestination_type: json\ndestination_config: {output_dir: out}\n",
        &[],
    );
    assert_eq!(run.code(), 3);
    assert!(
        run.stderr().contains("nowhere/missing.db"),
        "{}",
        run.stderr()
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn the_seed_yaml_form_with_filters_works_alone() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let run = cli_yaml(
        dir.path(),
        r#"
source_type: sqlite
source_config: { connection_string: "sqlite:///checkpoints.db" }
destination_type: parquet
destination_config: { output_path: ./out/checkpoints.parquet, compression: zstd, partition_by: [thread_id] }
filters:
  thread_pattern: "customer-*"
  exclude_threads: ["test-*", "debug-*"]
  date_from: "2025-01-01"
  date_to: "2030-12-31"
batch_size: 1000
dry_run: false
"#,
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        dir.path()
            .join("out/checkpoints.parquet/thread_id=customer-0001/part-00000.parquet")
            .exists()
    );
}
