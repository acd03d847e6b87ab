//! The pipeline: source → declarative filters → decode → sink, in batches.
//!
//! The source runs in its own task and hands batches over a bounded channel, so
//! reading overlaps decoding and writing while memory stays bounded (at most
//! [`IN_FLIGHT_BATCHES`] batches wait). Records fail one by one into the dead-letter
//! file; only store errors that retries cannot fix stop the run.

pub mod dead_letter;
pub mod progress;
pub mod retry;

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::codec;
use crate::config::RunConfig;
use crate::error::{RunError, StoreError};
use crate::filters::Filters;
use crate::record::{Checkpoint, CheckpointKey};
use crate::run::{RunInfo, RunStats};
use crate::sinks::{self, Sink};
use crate::sources::{self, BatchLimits, OpenError, SourceBatch};
use dead_letter::{DeadLetter, Entry, Stage};

/// Batches read ahead of the writer.
const IN_FLIGHT_BATCHES: usize = 2;

/// Told about every batch the sink has confirmed; resume state hangs off this.
pub trait CommitObserver: Send {
    fn committed(&mut self, _last_key: &CheckpointKey, _stats: &RunStats) {}
}

/// An observer that keeps nothing.
pub struct NoState;
impl CommitObserver for NoState {}

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub run: RunInfo,
    pub stats: RunStats,
    pub source: String,
    pub destination: String,
    /// The dead-letter file, when records failed.
    pub dead_letter: Option<PathBuf>,
}

pub fn open_error(e: OpenError, what: &str) -> RunError {
    match e {
        OpenError::Config(c) => RunError::Config(c),
        OpenError::Store(s) => RunError::store(format!("cannot open the {what}"), s),
    }
}

/// Runs a migration to the end.
pub async fn run(
    config: &RunConfig,
    observer: &mut dyn CommitObserver,
) -> Result<RunReport, RunError> {
    let filters = config.filters.compile()?;
    let mut source = retry::with_retries("opening the source", async || {
        sources::open(&config.source, &filters).await
    })
    .await
    .map_err(|e| open_error(e, "source"))?;
    let run = RunInfo::new(
        config.source.kind().name(),
        source.describe(),
        config.sink.kind().name(),
    );
    let mut sink = sinks::open(&config.sink, &run).map_err(|e| open_error(e, "destination"))?;
    tracing::info!(
        "run {}: {} -> {}",
        run.run_id,
        source.describe(),
        sink.describe()
    );
    tracing::info!(
        "filters pushed into the source: {}",
        source.pushdown_summary()
    );
    let total = if source.counts_cheaply() {
        source.count_by_thread(true).await.ok().map(|c| c.total())
    } else {
        None
    };
    let dead_letter_path = config
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| sink.default_dead_letter_path());
    let mut dead = DeadLetter::new(dead_letter_path, run.run_id.clone());
    let mut progress = progress::Progress::new(total);
    let started = Instant::now();
    let mut stats = RunStats::default();

    let limits = BatchLimits {
        max_records: config.batch_size,
        max_bytes: config.max_batch_bytes,
    };
    let (tx, mut rx) = mpsc::channel::<Result<SourceBatch, StoreError>>(IN_FLIGHT_BATCHES);
    let reader = tokio::spawn(async move {
        loop {
            let mut backoff = retry::Backoff::default();
            let next = loop {
                match source.next_batch(limits).await {
                    Err(e) => match backoff.retry_after("reading the source", &e) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => break Err(e),
                    },
                    ok => break ok,
                }
            };
            let end = !matches!(next, Ok(Some(_)));
            let item = match next {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
        source
    });

    let outcome = async {
        while let Some(batch) = rx.recv().await {
            let batch = batch.map_err(|e| RunError::store("reading the source failed", e))?;
            process_batch(
                batch,
                &filters,
                sink.as_mut(),
                &mut dead,
                &mut stats,
                observer,
            )
            .await?;
            stats.duration = started.elapsed();
            progress.update(&stats);
        }
        Ok::<_, RunError>(())
    }
    .await;
    drop(rx);
    let _source = reader
        .await
        .map_err(|e| RunError::Io(format!("source task failed: {e}")))?;
    progress.finish();
    outcome?;

    stats.duration = started.elapsed();
    stats.failed = dead.count();
    dead.flush()
        .map_err(|e| RunError::Io(format!("writing {}: {e}", dead.path().display())))?;
    let destination = sink.describe();
    sink.finish(&stats)
        .await
        .map_err(|e| RunError::store("finishing the destination failed", e))?;
    Ok(RunReport {
        source: run.source.clone(),
        destination,
        dead_letter: (dead.count() > 0).then(|| dead.path().clone()),
        run,
        stats,
    })
}

/// Filters and decodes a batch, writes what is left, and sends failures to the
/// dead-letter file.
async fn process_batch(
    batch: SourceBatch,
    filters: &Filters,
    sink: &mut dyn Sink,
    dead: &mut DeadLetter,
    stats: &mut RunStats,
    observer: &mut dyn CommitObserver,
) -> Result<(), RunError> {
    let dead_letter_io = |e: std::io::Error, path: &PathBuf| {
        RunError::Io(format!("writing {}: {e}", path.display()))
    };
    stats.batches += 1;
    stats.bytes_read += batch.bytes as u64;
    stats.read += (batch.records.len() + batch.failed.len()) as u64;
    for failed in &batch.failed {
        dead.add(Entry {
            stage: Stage::Read,
            error: &failed.error,
            key: failed.key.as_ref(),
            origin: &failed.origin,
            raw: None,
        })
        .map_err(|e| dead_letter_io(e, dead.path()))?;
    }
    let mut kept: Vec<Checkpoint> = Vec::with_capacity(batch.records.len());
    for mut record in batch.records {
        if !filters.accepts_thread(&record.key.thread_id) {
            stats.filtered += 1;
            continue;
        }
        if let Err(e) = codec::decode_record(&mut record) {
            dead.add(Entry {
                stage: Stage::Decode,
                error: &e.to_string(),
                key: Some(&record.key),
                origin: &record.origin,
                raw: Some(record.raw_json()),
            })
            .map_err(|e| dead_letter_io(e, dead.path()))?;
            continue;
        }
        let view = record.view.as_ref().expect("decoded above");
        if !filters.accepts_time(view.ts_parsed) {
            stats.filtered += 1;
            continue;
        }
        for notice in &view.notices {
            *stats.undecoded.entry(notice_kind(notice)).or_default() += 1;
        }
        kept.push(record);
    }
    if !kept.is_empty() {
        let rejected = retry::with_retries("writing to the destination", async || {
            sink.write_batch(&kept).await
        })
        .await
        .map_err(|e| RunError::store("writing to the destination failed", e))?;
        for r in &rejected {
            let record = &kept[r.index];
            dead.add(Entry {
                stage: Stage::Write,
                error: &r.reason,
                key: Some(&record.key),
                origin: &record.origin,
                raw: Some(record.raw_json()),
            })
            .map_err(|e| dead_letter_io(e, dead.path()))?;
        }
        stats.written += (kept.len() - rejected.len()) as u64;
    }
    stats.failed = dead.count();
    tracing::debug!(
        "batch {}: {} raw bytes, written so far {}, filtered {}, failed {}",
        stats.batches,
        batch.bytes,
        stats.written,
        stats.filtered,
        stats.failed
    );
    if let Some(last) = &batch.last_key {
        observer.committed(last, stats);
    }
    Ok(())
}

/// Notices are grouped in the summary without their parenthesized detail, so
/// "(12 bytes)" and "(13 bytes)" count as one kind.
fn notice_kind(notice: &str) -> String {
    match (notice.find(" ("), notice.find(')')) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{}", &notice[..start], &notice[end + 1..])
        }
        _ => notice.to_owned(),
    }
}
