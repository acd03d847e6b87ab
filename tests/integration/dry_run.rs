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

#[tokio::test]
async fn dry_run_says_when_date_filters_cut_a_delta_channel_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    std::fs::copy(
        crate::harness::fixtures().join("typezoo/sqlite/checkpoints.db"),
        &db,
    )
    .unwrap();
    // The zoo's DeltaChannel thread, cut after its third checkpoint.
    let mut delta: Vec<_> = crate::harness::read_sqlite(&db, 100)
        .await
        .into_iter()
        .filter(|r| r.key.thread_id == "zoo-delta")
        .collect();
    delta.sort_by(|a, b| a.key.checkpoint_id.cmp(&b.key.checkpoint_id));
    let cut = delta[2].view.as_ref().unwrap().ts.clone().unwrap();
    let base = "source_type: sqlite\nsource_config: {connection_string: 'sqlite:///checkpoints.db'}\ndestination_type: json\ndestination_config: {output_dir: out}\n";
    let run = cli_yaml(
        dir.path(),
        &format!("{base}filters: {{thread_id: zoo-delta, date_to: '{cut}'}}\n"),
        &["--dry-run"],
    );
    assert_eq!(run.code(), 1, "{}\n{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains(&format!(
            "thread \"zoo-delta\" uses a DeltaChannel, whose values need the thread's whole parent chain, but the date filters keep 3 of its {} checkpoints",
            delta.len()
        )),
        "{}",
        run.stdout()
    );
    // The whole thread: nothing to say.
    let run = cli_yaml(
        dir.path(),
        &format!("{base}filters: {{thread_id: zoo-delta}}\n"),
        &["--dry-run"],
    );
    assert!(
        !run.stdout().contains("DeltaChannel, whose"),
        "{}",
        run.stdout()
    );
}
