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
/// `verify` without `--shard` says the union equals the source; the SQL sources select
/// the shard in their query (PostgreSQL runs the hash itself).
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
                // The SQL stores select the shard in their query: nothing of the
                // other shards is read.
                if ["sqlite", "postgresql"].contains(&source.kind) {
                    assert!(run.stderr().contains("filtered 0 "), "{}", run.stderr());
                }
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

/// `deploy/kubernetes/`: the Indexed Job's shape (one completion per shard, indexes
/// retried alone, non-root), its names agree with the ConfigMap and the Secret, and
/// its container command, run the way Kubernetes would run it (each index's pod at
/// once, the ConfigMap and volumes at their mount paths, the Secret's keys in the
/// environment), migrates a PostgresSaver database whole: `verify` says equal.
#[tokio::test]
async fn the_kubernetes_job_runs_every_shard_of_its_migration() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let read = |name: &str| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(deploy.join(name)).unwrap()).unwrap()
    };
    let (job, config_map, secret) = (
        read("job.yaml"),
        read("configmap.yaml"),
        read("secret.example.yaml"),
    );
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let shard = &args[args.iter().position(|a| a == "--shard").unwrap() + 1];
    let (index, count) = shard.split_once('/').unwrap();
    assert_eq!(index, "$JOB_COMPLETION_INDEX");
    let count: u64 = count.parse().unwrap();
    assert_eq!(spec["completions"].as_u64(), Some(count));
    assert_eq!(spec["parallelism"].as_u64(), Some(count));
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == config_map["metadata"]["name"]),
        "{volumes:?}"
    );
    // Every `${NAME}` of the migration is a key of the Secret.
    let migration = config_map["data"]["migration.yaml"].as_str().unwrap();
    let keys = secret["stringData"].as_object().unwrap();
    for part in migration.split("${").skip(1) {
        let name = part.split('}').next().unwrap();
        assert!(keys.contains_key(name), "{name} is not in the Secret");
    }

    // The pods: volumes at their mount paths (here, directories of a temp dir).
    let dir = tempfile::tempdir().unwrap();
    let mut mounted = migration.to_owned();
    let mut args = args.clone();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let at = mount["mountPath"].as_str().unwrap();
        let local = dir.path().join(mount["name"].as_str().unwrap());
        std::fs::create_dir_all(&local).unwrap();
        let local = local.display().to_string();
        mounted = mounted.replace(&format!("{at}/"), &format!("{local}/"));
        for arg in &mut args {
            *arg = arg.replace(&format!("{at}/"), &format!("{local}/"));
        }
    }
    std::fs::write(dir.path().join("config/migration.yaml"), &mounted).unwrap();
    let source = harness::pg_database(&["checkpoints.sql"]).await;
    let destination = empty_database().await;
    let (source_url, destination_url) = (
        harness::pg_url_for(&source),
        harness::pg_url_for(&destination),
    );
    let pods: Vec<_> = (0..count)
        .map(|i| {
            let index = i.to_string();
            let env = [
                ("JOB_COMPLETION_INDEX", index.as_str()),
                ("SOURCE_DATABASE_URL", source_url.as_str()),
                ("DESTINATION_DATABASE_URL", destination_url.as_str()),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_cli(dir.path(), &args, &env)
        })
        .collect();
    for pod in pods {
        let output = pod.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dead_letters = harness::files_under(&dir.path().join("state"));
    assert_eq!(
        dead_letters
            .iter()
            .filter(|f| f.starts_with("ckpt-migrate/"))
            .count(),
        count as usize,
        "one resume state per shard: {dead_letters:?}"
    );
    let config = dir.path().join("config/migration.yaml");
    let verify = cli_env(
        dir.path(),
        &["verify", "--config", config.to_str().unwrap()],
        &[
            ("SOURCE_DATABASE_URL", &source_url),
            ("DESTINATION_DATABASE_URL", &destination_url),
        ],
    );
    assert_eq!(verify.code(), 0, "{}{}", verify.stdout(), verify.stderr());
}

/// The Dockerfile builds with the README's release-build steps, unchanged.
#[test]
fn the_dockerfile_builds_as_the_readme_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for step in [
        "scripts/setup.sh --sample",
        "cargo build --profile dist --locked -p ckpt-migrate",
    ] {
        assert!(dockerfile.contains(step), "Dockerfile lacks {step}");
        assert!(readme.contains(step), "README lacks {step}");
    }
    assert!(dockerfile.contains("USER 10001"));
}
