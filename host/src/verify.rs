//! `ckpt-migrate verify`: source and destination compared thread by thread — record
//! counts and an order-independent checksum over every record's key, parent and raw
//! typed values (SHA-256 per record, summed). Equal sums and counts mean the same
//! records, each once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::Digest as _;

use crate::codec;
use crate::config::RunConfig;
use crate::engine;
use crate::error::{RunError, StoreError};
use crate::filters::Selected;
use crate::record::Checkpoint;
use crate::sinks::Comparison;
use crate::sources::{BatchLimits, Source};

/// Count and checksum of one thread's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub sum: u128,
}

impl Tally {
    fn add(&mut self, digest: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(digest);
    }
}

/// A record's digest under `comparison`; `None` when its view cannot be computed.
fn digest(comparison: Comparison, record: &mut Checkpoint) -> Option<u128> {
    match comparison {
        Comparison::RawValues => Some(record_digest(record)),
        Comparison::View => {
            if record.view.is_none() {
                codec::decode_record(record).ok()?;
            }
            Some(view_digest(record))
        }
    }
}

/// SHA-256 (first 16 bytes) of a record's key, parent and view (checkpoint, metadata,
/// pending writes), in a canonical form: sorted keys, floats by value (JSONB writes
/// `1e-7` as `0.0000001`).
pub fn view_digest(record: &Checkpoint) -> u128 {
    fn canonical(value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), canonical(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            Value::Number(n) if n.to_string().contains(['.', 'e', 'E']) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| value.clone(), Value::Number),
            other => other.clone(),
        }
    }
    keyed_digest(record, |field| {
        if let Some(view) = &record.view {
            field(canonical(&view.checkpoint).to_string().as_bytes());
            field(canonical(&view.metadata).to_string().as_bytes());
            // Each store returns a checkpoint's pending writes in its own key order.
            let mut writes: Vec<String> = match canonical(&view.pending_writes_json()) {
                serde_json::Value::Array(items) => items.iter().map(|w| w.to_string()).collect(),
                _ => Vec::new(),
            };
            writes.sort();
            for w in writes {
                field(w.as_bytes());
            }
        }
    })
}

/// SHA-256 (first 16 bytes) of a record's key, parent and raw values, each field
/// length-prefixed so no two records share an encoding.
pub fn record_digest(record: &Checkpoint) -> u128 {
    keyed_digest(record, |field| {
        field(record.checkpoint.type_tag.as_bytes());
        field(&record.checkpoint.bytes);
        field(record.metadata.type_tag.as_bytes());
        field(&record.metadata.bytes);
        let mut blobs: Vec<_> = record.channel_blobs.iter().collect();
        blobs.sort_by(|a, b| (&a.channel, &a.version).cmp(&(&b.channel, &b.version)));
        for b in blobs {
            field(b.channel.as_bytes());
            field(b.version.as_bytes());
            field(b.value.type_tag.as_bytes());
            field(&b.value.bytes);
        }
        for w in &record.pending_writes {
            field(w.task_id.as_bytes());
            field(w.task_path.as_bytes());
            field(&w.idx.to_le_bytes());
            field(w.channel.as_bytes());
            field(w.value.type_tag.as_bytes());
            field(&w.value.bytes);
        }
    })
}

/// SHA-256 (first 16 bytes, as a number: checksums are sums of these) of a record's
/// key and parent and then of what `rest` adds, each field length-prefixed so no two
/// records share an encoding.
fn keyed_digest(record: &Checkpoint, rest: impl FnOnce(&mut dyn FnMut(&[u8]))) -> u128 {
    let mut h = sha2::Sha256::new();
    {
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(record.key.thread_id.as_bytes());
        field(record.key.checkpoint_ns.as_bytes());
        field(record.key.checkpoint_id.as_bytes());
        let parent = record.parent_checkpoint_id.as_deref();
        field(parent.unwrap_or("\0none").as_bytes());
        rest(&mut field);
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub source: BTreeMap<String, Tally>,
    pub destination: BTreeMap<String, Tally>,
    /// Source records the run cannot write (unreadable or undecodable): they belong in
    /// the dead-letter file, not the destination.
    pub source_failed: u64,
}

impl VerifyReport {
    pub fn differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        let threads: std::collections::BTreeSet<&String> =
            self.source.keys().chain(self.destination.keys()).collect();
        for thread in threads {
            let s = self.source.get(thread).copied().unwrap_or_default();
            let d = self.destination.get(thread).copied().unwrap_or_default();
            if s != d {
                out.push(format!(
                    "thread {thread:?}: source {} checkpoint(s), destination {}{}",
                    s.count,
                    d.count,
                    if s.count == d.count {
                        " (same count, different content)"
                    } else {
                        ""
                    }
                ));
            }
        }
        out
    }

    pub fn is_equal(&self) -> bool {
        self.differences().is_empty()
    }

    pub fn render(&self) -> String {
        let total = |m: &BTreeMap<String, Tally>| m.values().map(|t| t.count).sum::<u64>();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verify: source {} checkpoint(s) in {} thread(s), destination {} in {} thread(s)",
            total(&self.source),
            self.source.len(),
            total(&self.destination),
            self.destination.len()
        );
        if self.source_failed > 0 {
            let _ = writeln!(
                out,
                "  {} source record(s) cannot be migrated (see the dead-letter file) and are not expected",
                self.source_failed
            );
        }
        let differences = self.differences();
        if differences.is_empty() {
            let _ = writeln!(
                out,
                "  equal: same records, each once (counts and checksums per thread)"
            );
        } else {
            let _ = writeln!(out, "  {} thread(s) differ:", differences.len());
            for d in differences.iter().take(100) {
                let _ = writeln!(out, "    {d}");
            }
        }
        out
    }
}

/// Every record `source` holds; a record it cannot even assemble is an error.
async fn read_all(
    source: &mut dyn Source,
    each: &mut dyn FnMut(Checkpoint),
) -> Result<(), StoreError> {
    let limits = BatchLimits {
        max_records: 500,
        max_bytes: usize::MAX,
    };
    while let Some(batch) = source.next_batch(limits).await? {
        if let Some(f) = batch.failed.first() {
            return Err(StoreError::fatal(format!(
                "{}: {}",
                f.origin.locator, f.error
            )));
        }
        batch.records.into_iter().for_each(&mut *each);
    }
    Ok(())
}

pub async fn verify(config: &RunConfig) -> Result<VerifyReport, RunError> {
    let filters = config.filters.compile()?;
    let mut report = VerifyReport::default();
    let mut source = engine::open_source(config, &filters).await?;
    let run = config.run_info(source.describe());
    let mut sink = config
        .sink
        .open(&run, config.retry)
        .map_err(|e| engine::open_error(e, "destination"))?;
    let comparison = sink.comparison();
    let limits = BatchLimits {
        max_records: config.batch_size,
        max_bytes: config.max_batch_bytes,
    };
    while let Some(batch) = source
        .next_batch(limits)
        .await
        .map_err(|e| RunError::store("reading the source", e))?
    {
        report.source_failed += batch.failed.len() as u64;
        for record in batch.records {
            let record = match filters.select(record, true) {
                Selected::Kept(record) => record,
                Selected::Undecodable(..) => {
                    report.source_failed += 1;
                    continue;
                }
                Selected::OtherThread | Selected::OutsideDates(_) => continue,
            };
            let Some(mut record) = sink.written_form(record) else {
                report.source_failed += 1;
                continue;
            };
            let Some(digest) = digest(comparison, &mut record) else {
                report.source_failed += 1;
                continue;
            };
            report
                .source
                .entry(record.key.thread_id.clone())
                .or_default()
                .add(digest);
        }
    }
    let destination = &mut report.destination;
    let source_threads: std::collections::BTreeSet<String> =
        report.source.keys().cloned().collect();
    let mut undecodable = 0u64;
    let mut each = |mut record: Checkpoint| {
        // A LangGraph store may hold other threads (a live database): only the
        // migrated ones are compared.
        if comparison == Comparison::View && !source_threads.contains(&record.key.thread_id) {
            return;
        }
        // Verifying one shard: the destination holds the other shards' threads too.
        if !filters.in_shard(&record.key.thread_id) {
            return;
        }
        match digest(comparison, &mut record) {
            Some(digest) => destination
                .entry(record.key.thread_id.clone())
                .or_default()
                .add(digest),
            None => undecodable += 1,
        }
    };
    let read_back = async {
        let mut written = sink.read_back().await?;
        read_all(written.as_mut(), &mut each).await
    };
    read_back
        .await
        .map_err(|e| RunError::store("reading the destination back", e))?;
    if undecodable > 0 {
        return Err(RunError::store(
            "reading the destination back",
            StoreError::fatal(format!(
                "{undecodable} checkpoint(s) in the destination cannot be decoded"
            )),
        ));
    }
    Ok(report)
}
