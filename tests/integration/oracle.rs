//! The decoder against LangGraph's own read-back of every fixture checkpoint.

use crate::harness::{self, diff, oracle, record_key};

#[tokio::test]
async fn sqlite_fixture_views_match_the_langgraph_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let db = harness::sqlite_fixture(dir.path());
    let expected = oracle("sqlite");
    let records = harness::read_sqlite(&db, 1000).await;
    assert_eq!(records.len(), expected.len(), "record count");

    let mut matched = 0;
    let mut report = Vec::new();
    for record in &records {
        let view = record.view.as_ref().unwrap();
        let ours = harness::view_line(record);
        let theirs = &expected[&record_key(record)];
        let mut diffs = Vec::new();
        diff(&ours, theirs, "", &mut diffs, 5);
        if diffs.is_empty() {
            matched += 1;
        } else if report.len() < 20 {
            report.push(format!("{}:\n  {}", record.key, diffs.join("\n  ")));
        }
        assert!(
            view.notices.is_empty(),
            "{}: {:?}",
            record.key,
            view.notices
        );
    }
    println!(
        "oracle/sqlite.jsonl: {matched}/{} checkpoints match",
        expected.len()
    );
    assert_eq!(
        matched,
        expected.len(),
        "mismatches:\n{}",
        report.join("\n")
    );
}
