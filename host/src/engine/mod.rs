//! The pipeline: source → declarative filters → decode → sink, in batches.
//!
//! The source runs in its own task and hands batches over a bounded channel, so
//! reading overlaps decoding and writing while memory stays bounded (at most
//! [`IN_FLIGHT_BATCHES`] batches wait). Records fail one by one into the dead-letter
//! file; only store errors that retries cannot fix stop the run. After every batch the
//! sink makes its output durable and the resume state records how far it got.

pub mod dead_letter;
pub mod fault;
pub mod progress;
pub mod shutdown;
pub mod state;

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::codec;
use crate::config::{ResumeMode, RunConfig};
use crate::error::{ConfigError, RunError, StoreError};
use crate::filters::Filters;
use crate::plugins::{Outcome, Plugin, RunContext, output};
use crate::record::Checkpoint;
use crate::run::{RunInfo, RunStats};
use crate::sinks::{self, Sink};
use crate::error::OpenError;
use crate::sources::{self, BatchLimits, Source, SourceBatch};
use dead_letter::{DeadLetter, Entry, Stage};
use crate::retry::{self, Backoff};
pub use shutdown::Shutdown;
use state::{Counts, RunState, StateFile, Status};

/// Batches read ahead of the writer.
const IN_FLIGHT_BATCHES: usize = 2;

/// What a finished run reports.
#[derive(Debug)]
pub struct RunReport {
    pub run: RunInfo,
    pub stats: RunStats,
    pub source: String,
    pub destination: String,
    /// The dead-letter file, when records failed.
    pub dead_letter: Option<PathBuf>,
    /// Set when this run continued an earlier one.
    pub resumed_from: Option<String>,
}

/// Opens the configured source, retrying transient errors (the run, the dry run and
/// `verify` all start this way).
pub async fn open_source(
    config: &RunConfig,
    filters: &Filters,
) -> Result<Box<dyn Source>, RunError> {
    retry::with_retries(config.retry, "opening the source", async || {
        sources::open(&config.source, filters).await
    })
    .await
    .map_err(|e| open_error(e, "source"))
}

pub fn open_error(e: OpenError, what: &str) -> RunError {
    match e {
        OpenError::Config(c) => RunError::Config(c),
        OpenError::Store(s) => RunError::store(format!("cannot open the {what}"), s),
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> RunError {
    RunError::Io(format!("writing {}: {e}", path.display()))
}

/// The state of an unfinished earlier run to continue, per the resume mode.
fn previous_run(config: &RunConfig, file: &StateFile) -> Result<Option<RunState>, RunError> {
    let previous = file
        .load()
        .map_err(|e| RunError::Io(format!("reading the resume state: {e}")))?
        .filter(|s| s.status != Status::Finished);
    match (config.resume, previous) {
        (ResumeMode::Restart, _) => {
            file.remove()
                .map_err(|e| RunError::Io(format!("removing {}: {e}", file.path().display())))?;
            Ok(None)
        }
        (ResumeMode::Ask, Some(state)) => Err(RunError::Config(ConfigError::Invalid(format!(
            "an unfinished run of this configuration was found ({}; {} written, status {:?}, state {}): \
             give --resume to continue it or --restart to start over",
            state
                .last_key
                .as_ref()
                .map_or("no batch confirmed yet".into(), |k| format!(
                    "last confirmed {k}"
                )),
            state.counts.written,
            state.status,
            file.path().display()
        )))),
        (ResumeMode::Resume, None) => {
            tracing::info!(
                "--resume: no unfinished run of this configuration; starting from the beginning"
            );
            Ok(None)
        }
        (_, previous) => Ok(previous),
    }
}

/// Runs a migration to the end (or until interrupted).
pub async fn run(config: &RunConfig, shutdown: &Shutdown) -> Result<RunReport, RunError> {
    let filters = config.filters.compile()?;
    let faults = fault::Faults::from_env();
    let state_file = StateFile::new(&config.state_dir, &config.fingerprint);
    let previous = previous_run(config, &state_file)?;
    let mut plugins = crate::plugins::load_all(&config.plugins)
        .await
        .map_err(|e| RunError::Config(ConfigError::Invalid(e.to_string())))?;

    let mut source = open_source(config, &filters).await?;
    let mut run = RunInfo::new(
        config.source.kind_name(),
        source.describe(),
        config.sink.kind().name(),
    );
    if let Some(p) = &previous {
        run.run_id = p.run_id.clone();
    }
    let mut sink =
        sinks::open(&config.sink, &run, config.retry).map_err(|e| open_error(e, "destination"))?;
    retry::with_retries(config.retry, "preparing the destination", async || {
        sink.prepare().await
    })
    .await
    .map_err(|e| RunError::store("preparing the destination failed", e))?;
    let mut dead_letter_path = config
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| sink.default_dead_letter_path());
    if let crate::config::SourceConfig::DeadLetter(replayed) = &config.source
        && same_file(replayed, &dead_letter_path)
    {
        // Never append to the file being replayed.
        dead_letter_path = sinks::partial_path(&dead_letter_path).with_extension("replay.jsonl");
    }
    let mut dead = DeadLetter::new(dead_letter_path, run.run_id.clone());
    let mut stats = RunStats::default();
    let mut resumed_from = None;
    if let Some(p) = &previous {
        sink.resume(p.sink.clone())
            .await
            .map_err(|e| RunError::store("resuming the destination failed", e))?;
        dead.resume(p.dead_letter_entries)
            .map_err(|e| io_error(dead.path(), e))?;
        p.counts.restore(&mut stats);
        if !p.position.is_null() {
            source
                .resume_from(&p.position)
                .map_err(|e| RunError::store("resuming the source failed", e))?;
        } else if let Some(key) = &p.last_key {
            source.resume_after(key.clone());
        }
        let at = p
            .last_key
            .as_ref()
            .map_or("the beginning".into(), ToString::to_string);
        tracing::info!(
            "resuming run {} after {at} ({} already written)",
            p.run_id,
            p.counts.written
        );
        resumed_from = Some(at);
    }
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
    let mut state = RunState {
        version: state::STATE_VERSION,
        fingerprint: config.fingerprint.clone(),
        run_id: run.run_id.clone(),
        status: Status::Running,
        last_key: previous.as_ref().and_then(|p| p.last_key.clone()),
        position: previous
            .as_ref()
            .map_or(serde_json::Value::Null, |p| p.position.clone()),
        sink: previous
            .as_ref()
            .map_or(serde_json::Value::Null, |p| p.sink.clone()),
        counts: previous
            .as_ref()
            .map(|p| p.counts.clone())
            .unwrap_or_default(),
        dead_letter_entries: dead.count(),
        source: run.source.clone(),
        destination: sink.describe(),
        started_at: previous
            .as_ref()
            .map_or_else(|| run.started_at.to_rfc3339(), |p| p.started_at.clone()),
        updated_at: chrono::Utc::now().to_rfc3339(),
    };
    state_file
        .save(&state)
        .map_err(|e| io_error(state_file.path(), e))?;

    let total = if source.counts_cheaply() && previous.is_none() {
        source.count_by_thread(true).await.ok().map(|c| c.total())
    } else {
        None
    };
    let mut progress = progress::Progress::new(total);
    let started = Instant::now();

    let limits = BatchLimits {
        max_records: config.batch_size,
        max_bytes: config.max_batch_bytes,
    };
    let policy = config.retry;
    let (tx, mut rx) = mpsc::channel::<Result<SourceBatch, StoreError>>(IN_FLIGHT_BATCHES);
    let reader = tokio::spawn(async move {
        loop {
            let mut backoff = Backoff::new(policy);
            let next = loop {
                match source.next_batch(limits).await {
                    Err(e) => match backoff.retry_after("reading the source", &e) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => break Err(e),
                    },
                    ok => break ok,
                }
            };
            let item = match next {
                Ok(Some(batch)) => Ok(batch),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            let end = item.is_err();
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
    });

    let mut stop: Option<RunError> = None;
    let mut interrupted = false;
    while let Some(batch) = rx.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                stop = Some(RunError::store("reading the source failed", e));
                break;
            }
        };
        let last_key = batch.last_key.clone();
        let position = batch.position.clone();
        let stage = Stages {
            filters: &filters,
            plugins: &mut plugins,
            run: &run,
            shutdown,
        };
        match process_batch(batch, stage, sink.as_mut(), &mut dead, &mut stats, policy).await {
            Ok(()) => {}
            // Stopped inside a plugin call: nothing of this batch was written or
            // recorded, so the state stays at the last confirmed batch.
            Err(RunError::Interrupted { .. }) => {
                interrupted = true;
                break;
            }
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
        faults.after_write(stats.batches);
        // Make the batch durable, then record it: the state never runs ahead.
        match retry::with_retries(policy, "confirming the destination", async || {
            sink.checkpoint().await
        })
        .await
        {
            Ok(Some(sink_state)) => {
                dead.sync().map_err(|e| io_error(dead.path(), e))?;
                if position.is_some() || last_key.is_some() {
                    state.position = position.unwrap_or(serde_json::Value::Null);
                }
                state.last_key = last_key.or(state.last_key.take());
                state.sink = sink_state;
                state.counts = Counts::of(&stats);
                state.dead_letter_entries = dead.count();
                state.updated_at = chrono::Utc::now().to_rfc3339();
                state_file
                    .save(&state)
                    .map_err(|e| io_error(state_file.path(), e))?;
            }
            Ok(None) => {}
            Err(e) => {
                stop = Some(RunError::store("confirming the destination failed", e));
                break;
            }
        }
        faults.after_commit(stats.batches);
        stats.duration = started.elapsed();
        progress.update(&stats);
        if config.max_errors > 0 && stats.failed > config.max_errors {
            stop = Some(RunError::TooManyErrors {
                failed: stats.failed,
                limit: config.max_errors,
            });
            break;
        }
        if shutdown.requested() {
            interrupted = true;
            break;
        }
    }
    drop(rx);
    reader.abort();
    let _ = reader.await;
    progress.finish();
    stats.duration = started.elapsed();
    dead.flush().map_err(|e| io_error(dead.path(), e))?;

    if interrupted || stop.is_some() {
        state.status = if interrupted {
            Status::Interrupted
        } else {
            Status::Failed
        };
        state.updated_at = chrono::Utc::now().to_rfc3339();
        state_file
            .save(&state)
            .map_err(|e| io_error(state_file.path(), e))?;
        sink.suspend()
            .await
            .map_err(|e| RunError::store("closing the destination failed", e))?;
        return Err(match stop {
            Some(e) => e,
            None => RunError::Interrupted {
                written: stats.written,
                state: state_file.path().display().to_string(),
            },
        });
    }

    let destination = sink.describe();
    retry::with_retries(policy, "finishing the destination", async || {
        sink.finish(&stats).await
    })
    .await
    .map_err(|e| RunError::store("finishing the destination failed", e))?;
    state.status = Status::Finished;
    state.updated_at = chrono::Utc::now().to_rfc3339();
    state_file
        .save(&state)
        .map_err(|e| io_error(state_file.path(), e))?;
    Ok(RunReport {
        source: run.source.clone(),
        destination,
        dead_letter: (dead.count() > 0).then(|| dead.path().clone()),
        run,
        stats,
        resumed_from,
    })
}

/// What runs on every batch between the source and the sink.
struct Stages<'a> {
    filters: &'a Filters,
    plugins: &'a mut [Plugin],
    run: &'a RunInfo,
    shutdown: &'a Shutdown,
}

/// Runs the plugins in order on the records that are left; rejected and failed
/// records go to the dead-letter file, dropped ones count as filtered.
async fn run_plugins(
    plugins: &mut [Plugin],
    ctx: &RunContext,
    mut kept: Vec<Checkpoint>,
    dead: &mut DeadLetter,
    stats: &mut RunStats,
    shutdown: &Shutdown,
) -> Result<Vec<Checkpoint>, RunError> {
    for plugin in plugins.iter_mut() {
        if kept.is_empty() {
            break;
        }
        let refs: Vec<&Checkpoint> = kept.iter().collect();
        let outcomes = match plugin.run(ctx, &refs, shutdown.wait()).await {
            Ok(o) => o,
            Err(crate::plugins::PluginError::Interrupted(_)) => {
                return Err(RunError::Interrupted {
                    written: stats.written,
                    state: String::new(),
                });
            }
            Err(e) => {
                // The whole batch failed in this plugin: every record of it goes to the
                // dead-letter file, the run goes on. The (bounded) message is stored
                // once, on the batch's first line; each line names it briefly.
                let message = e.to_string();
                let (summary, cut) = plugin_failure_summary(&message, ctx.batch_index);
                tracing::warn!(
                    "{message}: {} record(s) of batch {} to the dead-letter file",
                    kept.len(),
                    ctx.batch_index
                );
                for (i, record) in kept.iter().enumerate() {
                    dead.add(Entry {
                        stage: Stage::Plugin,
                        error: &summary,
                        detail: (cut && i == 0).then_some(message.as_str()),
                        key: Some(&record.key),
                        origin: &record.origin,
                        record: Some(record),
                    })
                    .map_err(|e| io_error(dead.path(), e))?;
                }
                return Ok(Vec::new());
            }
        };
        let mut next = Vec::with_capacity(kept.len());
        for (mut record, outcome) in kept.into_iter().zip(outcomes) {
            let failure = match outcome {
                Outcome::Keep => None,
                Outcome::Drop => {
                    stats.filtered += 1;
                    continue;
                }
                Outcome::Reject(reason) => Some(format!(
                    "plugin {} rejected it: {}",
                    plugin.label,
                    output::one_line(&reason, output::MAX_REASON_BYTES)
                )),
                Outcome::Patch { ts, metadata_json } => {
                    crate::plugins::apply_patch(&mut record, ts, metadata_json)
                        .err()
                        .map(|e| format!("plugin {}: {e}", plugin.label))
                }
            };
            match failure {
                None => next.push(record),
                Some(error) => dead
                    .add(Entry {
                        stage: Stage::Plugin,
                        error: &error,
                        detail: None,
                        key: Some(&record.key),
                        origin: &record.origin,
                        record: Some(&record),
                    })
                    .map_err(|e| io_error(dead.path(), e))?,
            }
        }
        kept = next;
    }
    Ok(kept)
}

/// Filters and decodes a batch, runs the plugins, writes what is left, and sends
/// failures to the dead-letter file.
async fn process_batch(
    batch: SourceBatch,
    stage: Stages<'_>,
    sink: &mut dyn Sink,
    dead: &mut DeadLetter,
    stats: &mut RunStats,
    policy: crate::retry::RetryPolicy,
) -> Result<(), RunError> {
    stats.batches += 1;
    stats.bytes_read += batch.bytes as u64;
    stats.vanished += batch.vanished;
    stats.read += (batch.records.len() + batch.failed.len()) as u64;
    for failed in &batch.failed {
        dead.add(Entry {
            stage: Stage::Read,
            detail: None,
            error: &failed.error,
            key: failed.key.as_ref(),
            origin: &failed.origin,
            record: None,
        })
        .map_err(|e| io_error(dead.path(), e))?;
    }
    let filters = stage.filters;
    // Raw mode: a sink that writes raw values only, with no date filter or plugin to
    // feed, gets the records undecoded (decoding is most of the work of a run).
    let decode = sink.needs_view() || filters.filters_by_time() || !stage.plugins.is_empty();
    let mut kept: Vec<Checkpoint> = Vec::with_capacity(batch.records.len());
    for mut record in batch.records {
        if !filters.accepts_thread(&record.key.thread_id) {
            stats.filtered += 1;
            continue;
        }
        if !decode {
            kept.push(record);
            continue;
        }
        if let Err(e) = codec::decode_record(&mut record) {
            dead.add(Entry {
                stage: Stage::Decode,
                detail: None,
                error: &e.to_string(),
                key: Some(&record.key),
                origin: &record.origin,
                record: Some(&record),
            })
            .map_err(|e| io_error(dead.path(), e))?;
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
    if !stage.plugins.is_empty() {
        let ctx = RunContext {
            run_id: stage.run.run_id.clone(),
            run_started_at: stage
                .run
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            source_kind: stage.run.source_kind.clone(),
            destination_kind: stage.run.destination_kind.clone(),
            batch_index: stats.batches - 1,
        };
        kept = run_plugins(stage.plugins, &ctx, kept, dead, stats, stage.shutdown).await?;
    }
    if !kept.is_empty() {
        let rejected = retry::with_retries(policy, "writing to the destination", async || {
            sink.write_batch(&kept).await
        })
        .await
        .map_err(|e| RunError::store("writing to the destination failed", e))?;
        for r in &rejected {
            let record = &kept[r.index];
            dead.add(Entry {
                stage: Stage::Write,
                detail: None,
                error: &r.reason,
                key: Some(&record.key),
                origin: &record.origin,
                record: Some(record),
            })
            .map_err(|e| io_error(dead.path(), e))?;
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
    Ok(())
}

/// What each dead-letter line of a batch that failed in a plugin says: the message,
/// or when it is long its start and where the whole of it is (then `true`).
fn plugin_failure_summary(message: &str, batch_index: u64) -> (String, bool) {
    let short = output::one_line(message, output::MAX_ERROR_SUMMARY_BYTES);
    if short == message {
        (format!("{message} (batch {batch_index})"), false)
    } else {
        (
            format!(
                "{short} (batch {batch_index}; the whole message is in `error_detail` on this batch's first dead-letter line)"
            ),
            true,
        )
    }
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
