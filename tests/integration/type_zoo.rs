//! The decoder against LangGraph's own read-back of the type zoo
//! (`tests/fixtures/typezoo`): every type `JsonPlusSerializer` writes — floats at
//! their edges, Decimal, datetimes, numpy arrays, pydantic v1/v2 models, messages,
//! `Send`, `Interrupt`… — in state, metadata and pending writes, as each store keeps it.
//!
//! Every value is compared, except two kinds, each counted and named:
//! - values we keep raw by design (pickle, DeltaChannel snapshots): their view says
//!   `__undecoded__` / `__ext__` and the record has a notice;
//! - LangGraph read-backs that no reader of the bytes can reproduce
//!   ([`READ_BACK_LOSSES`]): the view shows what is stored.

use std::collections::BTreeMap;

use ckpt_migrate::filters::FilterConfig;
use ckpt_migrate::record::Checkpoint;
use serde_json::Value;

use crate::harness::{self, Key, key_of, record_key, same_number, view_line};

/// Where LangGraph's read-back differs from the stored value in a way that depends on
/// the Python class, not on the bytes: `(path suffix, stored, read back, why)`.
const READ_BACK_LOSSES: &[(&str, &str, &str, &str)] = &[(
    "address.zip_code",
    "12345",
    "00000",
    "pydantic v1 re-validates a nested model from field names, and a field with an alias \
     (zipCode) then silently takes its default",
)];

fn zoo_oracle(store: &str) -> BTreeMap<Key, Value> {
    let path = harness::fixtures().join(format!("typezoo/oracle/{store}.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("oracle line");
            (key_of(&v), v)
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    raw_by_design: usize,
    losses: usize,
    diffs: Vec<String>,
}

fn compare(ours: &Value, theirs: &Value, path: &str, tally: &mut Tally) {
    if tally.diffs.len() >= 20 {
        return;
    }
    if let Value::Object(o) = ours
        && (o.contains_key("__undecoded__") || o.contains_key("__ext__"))
    {
        tally.raw_by_design += 1;
        return;
    }
    if let Some((_, _, _, _)) = READ_BACK_LOSSES.iter().find(|(suffix, stored, read, _)| {
        path.ends_with(suffix) && ours == stored && theirs == read
    }) {
        tally.losses += 1;
        return;
    }
    match (ours, theirs) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => compare(v, w, &format!("{path}.{k}"), tally),
                    None => tally.diffs.push(format!("{path}.{k}: only ours")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                tally.diffs.push(format!(
                    "{path}.{k}: only LangGraph's: {:.200}",
                    y[k].to_string()
                ));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                compare(v, w, &format!("{path}[{i}]"), tally);
            }
        }
        (Value::Number(a), Value::Number(b)) if same_number(a, b) => {}
        _ if ours == theirs => {}
        _ => tally.diffs.push(format!(
            "{path}: ours {:.200} != LangGraph's {:.200}",
            ours.to_string(),
            theirs.to_string()
        )),
    }
}

/// Compares every record with the store's oracle, prints the tally, fails on any
/// difference.
fn assert_zoo_matches(store: &str, records: &[Checkpoint]) {
    let expected = zoo_oracle(store);
    assert_eq!(records.len(), expected.len(), "{store}: record count");
    let mut tally = Tally::default();
    let mut matched = 0;
    for record in records {
        let theirs = expected
            .get(&record_key(record))
            .unwrap_or_else(|| panic!("{store}: {} is not in the oracle", record.key));
        let before = (tally.diffs.len(), tally.raw_by_design);
        let line = format!("{}", record.key);
        compare(&view_line(record), theirs, &line, &mut tally);
        if tally.diffs.len() == before.0 {
            matched += 1;
        }
        if tally.raw_by_design > before.1 {
            let notices = &record.view.as_ref().expect("decoded").notices;
            assert!(
                !notices.is_empty(),
                "{store}: {} keeps raw values without a notice",
                record.key
            );
        }
    }
    println!(
        "typezoo/oracle/{store}.jsonl: {matched}/{} checkpoints match ({} values kept raw by design, {} known LangGraph read-back losses)",
        expected.len(),
        tally.raw_by_design,
        tally.losses
    );
    assert!(
        tally.diffs.is_empty(),
        "{store}:\n{}",
        tally.diffs.join("\n")
    );
    assert_eq!(matched, expected.len());
}

#[tokio::test]
async fn sqlite_type_zoo_matches_langgraph() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("checkpoints.db");
    std::fs::copy(
        harness::fixtures().join("typezoo/sqlite/checkpoints.db"),
        &db,
    )
    .unwrap();
    let records = harness::read_sqlite(&db, 7).await;
    assert_zoo_matches("sqlite", &records);
}

#[tokio::test]
async fn postgres_type_zoo_matches_langgraph() {
    let db = harness::pg_database(&["../typezoo/postgres/checkpoints.sql"]).await;
    let records = harness::read_postgres(
        &db,
        None,
        &FilterConfig::default(),
        ckpt_migrate::sources::Pushdown::On,
        7,
    )
    .await;
    assert_zoo_matches("postgres", &records);
}
