//! `ckpt-migrate plugin check PATH`: loads a component the way a run does, says what it
//! is, and runs it on a few sample records so its author sees its answers (and its log
//! lines) without setting up a migration. `plugin test` does the same on the author's
//! own records and compares the outcomes with the ones expected: a plugin's unit test.

use std::fmt::Write as _;

use serde_json::json;

use super::output::{MAX_ERROR_BYTES, MAX_REASON_BYTES, one_line};
use super::{Outcome, Plugin, PluginError, PluginHost, PluginSpec, RunContext};
use crate::codec;
use crate::record::{Checkpoint, CheckpointKey, Origin, TypedValue};

/// Three checkpoints in the shape LangGraph stores: a chat turn, a subgraph step with
/// epoch and date-string timestamps in the metadata, and one with user metadata.
pub fn sample_records() -> Vec<Checkpoint> {
    let message = |kind: &str, class: &str, content: &str| {
        json!({"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", class],
               "kwargs": {"content": content, "type": kind, "id": format!("msg-{kind}")}})
    };
    let samples = [
        (
            "customer-0001",
            "",
            "1f000000-0000-6000-8000-000000000001",
            None,
            "2025-06-01T12:00:00+00:00",
            json!({"source": "input", "step": -1, "parents": {}, "user_id": "u-1"}),
        ),
        (
            "customer-0001",
            "review:7d3c",
            "1f000000-0000-6000-8000-000000000002",
            Some("1f000000-0000-6000-8000-000000000001"),
            "2025-06-01T12:00:01.250000+00:00",
            json!({"source": "loop", "step": 1, "parents": {"": "1f000000-0000-6000-8000-000000000001"},
                "created_at": 1_748_779_201_250_u64, "updated_at": "2025-06-01 12:00:02"}),
        ),
        (
            "test-abc",
            "",
            "1f000000-0000-6000-8000-000000000003",
            None,
            "2025-06-02T08:30:00+02:00",
            json!({"source": "update", "step": 4, "parents": {}, "tenant": "東京商事", "is_test": true}),
        ),
    ];
    samples
        .into_iter()
        .map(|(thread, ns, id, parent, ts, metadata)| {
            let document = json!({
                "v": 4, "id": id, "ts": ts,
                "channel_values": {"messages": [message("human", "HumanMessage", "Where is my order?"),
                                                message("ai", "AIMessage", "It ships tomorrow.")]},
                "channel_versions": {"messages": "00000000000000000000000000000002.0.5"},
                "versions_seen": {}, "updated_channels": ["messages"],
            });
            let mut record = Checkpoint {
                key: CheckpointKey { thread_id: thread.into(), checkpoint_ns: ns.into(), checkpoint_id: id.into() },
                parent_checkpoint_id: parent.map(str::to_owned),
                checkpoint: TypedValue::new("json", document.to_string()),
                channel_blobs: Vec::new(),
                metadata: TypedValue::new("json", metadata.to_string()),
                pending_writes: Vec::new(),
                origin: Origin { store: "sample".into(), locator: format!("sample record {id}") },
                view: None,
            };
            codec::decode_record(&mut record).expect("sample records decode");
            record
        })
        .collect()
}

/// One line saying what a plugin did with a record.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Keep => "keep".to_owned(),
        Outcome::Drop => "drop".to_owned(),
        Outcome::Reject(reason) => format!("reject: {}", one_line(reason, MAX_REASON_BYTES)),
        Outcome::Patch { ts, metadata_json } => {
            let mut parts = Vec::new();
            if let Some(ts) = ts {
                parts.push(format!("ts -> {}", one_line(ts, MAX_REASON_BYTES)));
            }
            if let Some(m) = metadata_json {
                parts.push(format!("metadata -> {}", one_line(m, MAX_ERROR_BYTES)));
            }
            format!("patch: {}", parts.join("; "))
        }
    }
}

/// What a plugin did with a record, as a JSON line (what `plugin test --expect`
/// compares).
fn outcome_json(record: &Checkpoint, outcome: &Outcome) -> serde_json::Value {
    let mut line = json!({
        "thread_id": record.key.thread_id,
        "checkpoint_ns": record.key.checkpoint_ns,
        "checkpoint_id": record.key.checkpoint_id,
    });
    match outcome {
        Outcome::Keep => line["outcome"] = "keep".into(),
        Outcome::Drop => line["outcome"] = "drop".into(),
        Outcome::Reject(reason) => {
            line["outcome"] = "reject".into();
            line["reason"] = reason.clone().into();
        }
        Outcome::Patch { ts, metadata_json } => {
            line["outcome"] = "patch".into();
            if let Some(ts) = ts {
                line["ts"] = ts.clone().into();
            }
            if let Some(m) = metadata_json {
                // The patch as JSON when it is JSON (it must be), else its text.
                line["metadata"] =
                    serde_json::from_str(m).unwrap_or_else(|_| serde_json::Value::from(m.clone()));
            }
        }
    }
    line
}

/// What `plugin test` reports.
pub struct TestReport {
    pub text: String,
    /// No `--expect` file, or every outcome as it says.
    pub as_expected: bool,
}

/// Records per call to the plugin, as a run's batches would be.
const TEST_BATCH: usize = 100;

/// `ckpt-migrate plugin test`: the plugin on the records of a JSON-lines file (our
/// export's lines), each outcome printed; with `expect`, compared with the outcomes
/// that file lists (by key).
pub async fn test(
    spec: &PluginSpec,
    records_path: &std::path::Path,
    expect: Option<&std::path::Path>,
    as_json: bool,
) -> Result<TestReport, crate::error::RunError> {
    use crate::error::{ConfigError, RunError};
    let invalid = |m: String| RunError::Config(ConfigError::Invalid(m));
    let records = read_records(records_path).map_err(invalid)?;
    let host = PluginHost::new().map_err(|e| invalid(e.to_string()))?;
    let mut plugin = Plugin::load(&host, spec)
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let mut out = String::new();
    let mut lines = Vec::with_capacity(records.len());
    for (batch_index, batch) in records.chunks(TEST_BATCH).enumerate() {
        let ctx = RunContext {
            run_id: "00000000-0000-4000-8000-000000000000".into(),
            run_started_at: "2025-06-03T09:00:00Z".into(),
            source_kind: "json".into(),
            destination_kind: "none".into(),
            batch_index: batch_index as u64,
        };
        let refs: Vec<&Checkpoint> = batch.iter().collect();
        match plugin.run(&ctx, &refs, std::future::pending()).await {
            Ok(outcomes) => {
                for (r, o) in batch.iter().zip(outcomes) {
                    let line = outcome_json(r, &o);
                    if as_json {
                        let _ = writeln!(out, "{line}");
                    } else {
                        let _ = writeln!(out, "{}: {}", r.key, describe(&o));
                    }
                    lines.push(line);
                }
            }
            Err(e) => {
                let error = e.to_string();
                let message = one_line(&error, MAX_ERROR_BYTES);
                for r in batch {
                    let line = json!({
                        "thread_id": r.key.thread_id,
                        "checkpoint_ns": r.key.checkpoint_ns,
                        "checkpoint_id": r.key.checkpoint_id,
                        "outcome": "failed",
                        "reason": message,
                    });
                    if as_json {
                        let _ = writeln!(out, "{line}");
                    }
                    lines.push(line);
                }
                if !as_json {
                    let _ = writeln!(
                        out,
                        "batch {batch_index} failed ({} records): {message}",
                        batch.len()
                    );
                }
            }
        }
    }
    let mut as_expected = true;
    if let Some(path) = expect {
        let differences = compare(path, &lines).map_err(invalid)?;
        as_expected = differences.is_empty();
        if as_expected {
            let _ = writeln!(
                out,
                "as expected: {} outcome(s) match {}",
                lines.len(),
                path.display()
            );
        } else {
            let _ = writeln!(
                out,
                "{} difference(s) from {}:",
                differences.len(),
                path.display()
            );
            for d in differences {
                let _ = writeln!(out, "  {d}");
            }
        }
    }
    Ok(TestReport {
        text: out,
        as_expected,
    })
}

/// The records of a JSON-lines export file, decoded; errors name the file and line.
fn read_records(path: &std::path::Path) -> Result<Vec<Checkpoint>, String> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let at = format!("{} line {}", path.display(), i + 1);
        let line = line.map_err(|e| format!("{at}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let object: crate::stores::json::ExportedObject =
            serde_json::from_str(&line).map_err(|e| format!("{at}: not JSON: {e}"))?;
        let origin = Origin {
            store: "json".into(),
            locator: at.clone(),
        };
        let mut record = crate::stores::json::record_of(&object, origin)
            .map_err(|(_, e)| format!("{at}: {e}"))?;
        codec::decode_record(&mut record).map_err(|e| format!("{at}: {e}"))?;
        records.push(record);
    }
    Ok(records)
}

/// The differences between the outcomes and those an expect file lists, by key.
fn compare(path: &std::path::Path, got: &[serde_json::Value]) -> Result<Vec<String>, String> {
    use std::io::BufRead as _;
    let key = |v: &serde_json::Value| {
        format!(
            "{}/{}/{}",
            v["thread_id"], v["checkpoint_ns"], v["checkpoint_id"]
        )
    };
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut expected = std::collections::BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {}: not JSON: {e}", path.display(), i + 1))?;
        expected.insert(key(&v), v);
    }
    let mut differences = Vec::new();
    for g in got {
        match expected.remove(&key(g)) {
            Some(e) if &e == g => {}
            Some(e) => differences.push(format!("{}: expected {e}, got {g}", key(g))),
            None => differences.push(format!("{}: not in the expect file, got {g}", key(g))),
        }
    }
    for (k, e) in expected {
        differences.push(format!("{k}: expected {e}, but no such record was given"));
    }
    Ok(differences)
}

pub async fn check(spec: &PluginSpec) -> Result<String, PluginError> {
    let host = PluginHost::new()?;
    let mut plugin = Plugin::load(&host, spec).await?;
    let mut out = String::new();
    let _ = writeln!(out, "plugin:   {} {}", plugin.name, plugin.version);
    let _ = writeln!(
        out,
        "kind:     {:?} (plugin API {})",
        plugin.kind,
        super::v0_1_0::VERSION
    );
    let _ = writeln!(out, "reads:    {}", plugin.needs);
    let _ = writeln!(
        out,
        "limits:   {} ms per batch, {} MiB{}",
        spec.timeout_ms.unwrap_or(super::DEFAULT_TIMEOUT_MS),
        spec.memory_mb.unwrap_or(super::DEFAULT_MEMORY_MB),
        spec.allow_dir
            .as_ref()
            .map(|d| format!(", reads {} as /data", d.display()))
            .unwrap_or_default()
    );
    let records = sample_records();
    let ctx = RunContext {
        run_id: "00000000-0000-4000-8000-000000000000".into(),
        run_started_at: "2025-06-03T09:00:00Z".into(),
        source_kind: "sample".into(),
        destination_kind: "none".into(),
        batch_index: 0,
    };
    let refs: Vec<&Checkpoint> = records.iter().collect();
    let _ = writeln!(out, "sample run ({} records):", records.len());
    match plugin.run(&ctx, &refs, std::future::pending()).await {
        Ok(outcomes) => {
            for (r, o) in records.iter().zip(outcomes) {
                let _ = writeln!(
                    out,
                    "  {} {}: {}",
                    r.key.thread_id,
                    r.key.checkpoint_id,
                    describe(&o)
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  the batch failed: {e}");
        }
    }
    Ok(out)
}
