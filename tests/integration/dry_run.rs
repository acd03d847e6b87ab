//! `--dry-run` counts, samples, estimates and writes nothing.

use crate::harness::{cli_yaml, sqlite_fixture};

#[test]
fn dry_run_counts_samples_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let yaml = "source_type: sqlite\nsource_config: {connection_string: 'sqlite:///checkpoints.db'}\ndestination_type: parquet\ndestination_config: {output_path: out/cp.parquet}\nfilters: {exclude_threads: ['test-*', 'debug-*']}\n";
    let run = cli_yaml(dir.path(), yaml, &["--dry-run"]);
    assert_eq!(run.code(), 0, "{}\n{}", run.stdout(), run.stderr());
    let out = run.stdout();
    assert!(out.contains("271 in the source"), "{out}");
    assert!(out.contains("in 8 thread(s)"), "{out}");
    assert!(out.contains("\"customer-0001\": "), "{out}");
    assert!(out.contains("0 problem(s)"), "{out}");
    assert!(out.contains("checkpoints/s"), "{out}");
    assert!(out.contains("writable"), "{out}");
    assert!(!dir.path().join("out").exists(), "a dry run must not write");
    // Only the database (with SQLite's own WAL side files) and the YAML.
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("checkpoints.db"))
        .collect();
    assert_eq!(entries, ["migration.yaml"]);
}

#[test]
fn dry_run_reports_an_unwritable_destination() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    std::fs::write(dir.path().join("blocker"), b"a file").unwrap();
    let yaml = "source_type: sqlite\nsource_config: {connection_string: 'sqlite:///checkpoints.db'}\ndestination_type: json\ndestination_config: {output_dir: blocker/out}\n";
    let run = cli_yaml(dir.path(), yaml, &["--dry-run"]);
    assert_eq!(run.code(), 3, "{}", run.stdout());
    assert!(run.stdout().contains("NOT writable"), "{}", run.stdout());
}
