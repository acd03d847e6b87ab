//! `ckpt-migrate plugin check PATH`: loads a component the way a run does, says what it
//! is, and runs it on a few sample records so its author sees its answers (and its log
//! lines) without setting up a migration.

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
                let answer = match o {
                    Outcome::Keep => "keep".to_owned(),
                    Outcome::Drop => "drop".to_owned(),
                    Outcome::Reject(reason) => {
                        format!("reject: {}", one_line(&reason, MAX_REASON_BYTES))
                    }
                    Outcome::Patch { ts, metadata_json } => {
                        let mut parts = Vec::new();
                        if let Some(ts) = ts {
                            parts.push(format!("ts -> {}", one_line(&ts, MAX_REASON_BYTES)));
                        }
                        if let Some(m) = metadata_json {
                            parts.push(format!("metadata -> {}", one_line(&m, MAX_ERROR_BYTES)));
                        }
                        format!("patch: {}", parts.join("; "))
                    }
                };
                let _ = writeln!(
                    out,
                    "  {} {}: {answer}",
                    r.key.thread_id, r.key.checkpoint_id
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  the batch failed: {e}");
        }
    }
    Ok(out)
}
