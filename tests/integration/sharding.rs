//! Sharded runs (`--shard I/N`): the shards of every source together are exactly the
//! unsharded run, shards write side by side into one destination, and each keeps its
//! own files and resume state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::harness::{self, cli, cli_env, spawn_cli, sqlite_fixture};
use crate::store_destinations::{
    assert_ok, empty_database, migrate_with, pair_sources, pg_config, sqlite_source,
};

/// Threads and their checkpoint counts in a JSON export directory, from every
/// manifest in it (one per shard).
fn exported_threads(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("manifest") && name.ends_with(".json")) {
            continue;
        }
        let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for file in manifest["files"].as_array().unwrap() {
            out.push((
                file["thread_id"].as_str().unwrap().to_owned(),
                file["checkpoints"].as_u64().unwrap(),
            ));
        }
    }
    out
}

/// For every source kind and N = 1, 3, 7: the N shards, each run on its own, export
/// disjoint thread sets whose union is the unsharded export, checkpoint for checkpoint;
/// `verify` without `--shard` says the union equals the source; a PostgreSQL source
/// runs the shard's hash in its query.
#[tokio::test]
async fn the_shards_of_every_source_together_are_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let sources = pair_sources(dir.path()).await;
    for source in &sources {
        let whole = dir.path().join(format!("whole-{}", source.kind));
        let json = |out: &Path| serde_json::json!({ "output_dir": out.display().to_string() });
        assert_ok(&migrate_with(
            dir.path(),
            source.kind,
            &source.config,
            "json",
            &json(&whole),
            &[],
        ));
        let expected: BTreeMap<String, u64> = exported_threads(&whole).into_iter().collect();
        assert!(expected.len() >= 10, "{}: {expected:?}", source.name);
        for count in [1u32, 3, 7] {
            let out = dir
                .path()
                .join(format!("{}-{count}", source.name.replace(' ', "-")));
            for index in 0..count {
                let shard = format!("{index}/{count}");
                let run = migrate_with(
                    dir.path(),
                    source.kind,
                    &source.config,
                    "json",
                    &json(&out),
                    &["--shard", &shard],
                );
                assert_ok(&run);
                assert!(
                    run.stderr().contains(&format!("shard {shard}")),
                    "{}",
                    run.stderr()
                );
            }
            let shards = exported_threads(&out);
            let union: BTreeMap<String, u64> = shards.iter().cloned().collect();
            assert_eq!(
                shards.len(),
                union.len(),
                "{} N={count}: a thread is in two shards",
                source.name
            );
            assert_eq!(union, expected, "{} N={count}", source.name);
            let manifests = harness::files_under(&out)
                .into_iter()
                .filter(|f| f.starts_with("manifest"))
                .count();
            assert_eq!(manifests, count as usize, "{} N={count}", source.name);
            let verify = cli(
                dir.path(),
                &[
                    "verify",
                    "--source",
                    source.kind,
                    "--source-config",
                    &source.config.to_string(),
                    "--destination",
                    "json",
                    "--dest-config",
                    &json(&out).to_string(),
                ],
            );
            assert_eq!(
                verify.code(),
                0,
                "{} N={count}: {}{}",
                source.name,
                verify.stdout(),
                verify.stderr()
            );
        }
    }
    let postgres = sources.iter().find(|s| s.kind == "postgresql").unwrap();
    let dry = cli(
        dir.path(),
        &[
            "--source",
            "postgresql",
            "--source-config",
            &postgres.config.to_string(),
            "--destination",
            "json",
            "--dest-config",
            r#"{"output_dir": "dry"}"#,
            "--shard",
            "2/3",
            "--dry-run",
        ],
    );
    assert_eq!(dry.code(), 0, "{}{}", dry.stdout(), dry.stderr());
    assert!(dry.stdout().contains("sha256"), "{}", dry.stdout());
}

/// Three shards at once into one PostgreSQL database that has no tables yet (they race
/// to create them) and into one SQLite file (they take turns for its write lock):
/// `verify` of the whole run says equal, and LangGraph's PostgresSaver reads every
/// thread.
#[tokio::test]
async fn three_shards_write_into_one_store_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_fixture(dir.path());
    let db = empty_database().await;
    let destinations = [
        ("postgresql", pg_config(&db)),
        (
            "sqlite",
            serde_json::json!({ "connection_string": dir.path().join("all.db").display().to_string() }),
        ),
    ];
    for (kind, config) in &destinations {
        let (source, dest) = (sqlite_source(&sqlite).to_string(), config.to_string());
        let children: Vec<_> = (0..3)
            .map(|i| {
                let shard = format!("{i}/3");
                let args = [
                    "--source",
                    "sqlite",
                    "--source-config",
                    &source,
                    "--destination",
                    kind,
                    "--dest-config",
                    &dest,
                    "--batch-size",
                    "10",
                    "--shard",
                    &shard,
                ];
                spawn_cli(dir.path(), &args, &[])
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{kind}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let verify = cli(
            dir.path(),
            &[
                "verify",
                "--source",
                "sqlite",
                "--source-config",
                &source,
                "--destination",
                kind,
                "--dest-config",
                &dest,
            ],
        );
        assert_eq!(
            verify.code(),
            0,
            "{kind}: {}{}",
            verify.stdout(),
            verify.stderr()
        );
        assert!(verify.stdout().contains("equal"), "{}", verify.stdout());
    }
}

/// Sharded file outputs are named by shard (`part-00001-of-00003`), so shards never
/// overwrite each other: a Parquet export becomes a directory of one file per shard,
/// the dead-letter file and the resume state are per shard, and `verify` reads all the
/// parts back.
#[test]
fn sharded_outputs_and_state_are_per_shard() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_fixture(dir.path());
    let yaml = |index: &str| {
        format!(
            "source_type: sqlite\nsource_config: {{connection_string: '{}'}}\n\
             destination_type: parquet\ndestination_config: {{output_path: out.parquet}}\n\
             batch_size: 20\nshard: {{index: {index}, count: 3}}\n",
            sqlite.display()
        )
    };
    for i in 0..3 {
        // The index comes from the environment, as in a Kubernetes Indexed Job.
        std::fs::write(
            dir.path().join("job.yaml"),
            yaml("'${JOB_COMPLETION_INDEX}'"),
        )
        .unwrap();
        let run = cli_env(
            dir.path(),
            &["--config", "job.yaml"],
            &[("JOB_COMPLETION_INDEX", &i.to_string())],
        );
        assert_eq!(run.code(), 0, "{}", run.stderr());
    }
    let files: BTreeSet<String> = harness::files_under(&dir.path().join("out.parquet"))
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = (0..3)
        .map(|i| format!("part-{i:05}-of-00003.parquet"))
        .collect();
    assert_eq!(files, expected);
    let states = harness::files_under(&dir.path().join(".ckpt-migrate"));
    assert_eq!(states.len(), 3, "{states:?}");
    let verify = cli(dir.path(), &["verify", "--config", "job.yaml"]);
    // `job.yaml` names shard ${JOB_COMPLETION_INDEX}: without it, the index is missing.
    assert_eq!(verify.code(), 2, "{}", verify.stderr());
    assert!(
        verify.stderr().contains("JOB_COMPLETION_INDEX"),
        "{}",
        verify.stderr()
    );
    std::fs::write(
        dir.path().join("all.yaml"),
        yaml("0").replace("shard: {index: 0, count: 3}\n", ""),
    )
    .unwrap();
    let verify = cli(dir.path(), &["verify", "--config", "all.yaml"]);
    assert_eq!(verify.code(), 0, "{}{}", verify.stdout(), verify.stderr());
    // One shard checked alone: only its threads, on both sides.
    let one = cli(
        dir.path(),
        &["verify", "--config", "all.yaml", "--shard", "1/3"],
    );
    assert_eq!(one.code(), 0, "{}{}", one.stdout(), one.stderr());

    // A bad shard is a usage error naming it.
    let bad = cli(dir.path(), &["--config", "all.yaml", "--shard", "3/3"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("not below"), "{}", bad.stderr());
}

/// A shard killed mid-run resumes on its own, from its own state, after the other
/// shard has run to the end; the whole run then verifies.
#[test]
fn a_killed_shard_resumes_from_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_fixture(dir.path());
    let config = |i: u32| {
        let path = dir.path().join(format!("shard-{i}.yaml"));
        std::fs::write(
            &path,
            format!(
                "source_type: sqlite\nsource_config: {{connection_string: '{}'}}\n\
                 destination_type: sqlite\ndestination_config: {{connection_string: '{}'}}\n\
                 batch_size: 20\nshard: {{index: {i}, count: 2}}\n",
                sqlite.display(),
                dir.path().join("copy.db").display()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let (first, second) = (config(0), config(1));
    harness::kill_9_after_three_batches(dir.path(), &first);
    assert_ok(&cli(dir.path(), &["--config", &second]));
    let resumed = cli(dir.path(), &["--config", &first, "--resume"]);
    assert_ok(&resumed);
    assert!(
        resumed.stderr().contains("resumed after"),
        "{}",
        resumed.stderr()
    );
    let all = dir.path().join("all.yaml");
    std::fs::write(
        &all,
        std::fs::read_to_string(&first)
            .unwrap()
            .replace("shard: {index: 0, count: 2}\n", ""),
    )
    .unwrap();
    let verify = cli(dir.path(), &["verify", "--config", all.to_str().unwrap()]);
    assert_eq!(verify.code(), 0, "{}{}", verify.stdout(), verify.stderr());
}
