//! Declarative filters: pushed down or applied in the engine, same result.

use std::collections::BTreeSet;

use crate::harness::{cli_yaml, oracle, read_json_export, sqlite_fixture};

fn export(dir: &std::path::Path, out: &str, filters: &str) -> BTreeSet<(String, String, String)> {
    let yaml = format!(
        "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: json\ndestination_config: {{output_dir: {out}}}\nbatch_size: 17\nfilters: {filters}\n"
    );
    let run = cli_yaml(dir, &yaml, &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    read_json_export(&dir.join(out))
        .iter()
        .map(crate::harness::key_of)
        .collect()
}

#[test]
fn thread_filters_pushed_down_equal_the_engine_filter_and_the_expectation() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let all = oracle("sqlite");
    let expected: BTreeSet<_> = all
        .keys()
        .filter(|(t, _, _)| t.starts_with("customer-") && t != "customer-0003")
        .cloned()
        .collect();
    // `*` globs go into SQL; brace globs can only run in the engine.
    let pushed = export(
        dir.path(),
        "pushed",
        "{thread_pattern: 'customer-*', exclude_threads: ['*-0003']}",
    );
    let engine = export(
        dir.path(),
        "engine",
        "{thread_pattern: 'customer-{0001,0002,0003,0004,0005,0006}', exclude_threads: ['customer-000[3]']}",
    );
    assert_eq!(pushed, expected);
    assert_eq!(engine, expected);

    let one = export(dir.path(), "one", "{thread_id: test-abc}");
    assert!(!one.is_empty());
    assert!(one.iter().all(|(t, _, _)| t == "test-abc"));
    assert_eq!(
        one.len(),
        all.keys().filter(|(t, _, _)| t == "test-abc").count()
    );
}

#[test]
fn date_filters_compare_parsed_instants() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let all = oracle("sqlite");
    let mut stamps: Vec<chrono::DateTime<chrono::Utc>> = all
        .values()
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v["checkpoint"]["ts"].as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    stamps.sort();
    let mid = stamps[stamps.len() / 2];
    let from = mid.to_rfc3339();
    let expected: BTreeSet<_> = all
        .iter()
        .filter(|(_, v)| {
            chrono::DateTime::parse_from_rfc3339(v["checkpoint"]["ts"].as_str().unwrap()).unwrap()
                >= mid
        })
        .map(|(k, _)| k.clone())
        .collect();
    let got = export(dir.path(), "from", &format!("{{date_from: '{from}'}}"));
    assert_eq!(got, expected);
    assert!(!got.is_empty() && got.len() < all.len());

    // Whole days: the fixture was written on one day, so that day keeps everything
    // and the day before keeps nothing.
    let day = stamps[0].format("%Y-%m-%d").to_string();
    let before = (stamps[0] - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        export(
            dir.path(),
            "day",
            &format!("{{date_from: '{day}', date_to: '{day}'}}")
        )
        .len(),
        all.len()
    );
    let run = cli_yaml(
        dir.path(),
        &format!(
            "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: json\ndestination_config: {{output_dir: none}}\nfilters: {{date_to: '{before}'}}\n"
        ),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains("written 0  filtered 271"),
        "{}",
        run.stderr()
    );
}
