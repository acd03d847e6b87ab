//! The pipeline: source → declarative filters → decode → plugins → sink, in batches.
//!
//! The source runs in its own task and hands batches over a bounded channel, so
//! reading and decoding overlap plugin calls and writing while memory stays bounded
//! (at most [`IN_FLIGHT_BATCHES`] batches wait). Records fail one by one into the
//! dead-letter file; only store errors that retries cannot fix stop the run. After
//! every batch the sink makes its output durable and the resume state records how far
//! it got.

mod confirm;
pub mod dead_letter;
pub mod fault;
pub mod progress;
mod selection;
pub mod shutdown;
pub mod state;

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{ResumeMode, RunConfig, SourceConfig};
use crate::error::OpenError;
use crate::error::{ConfigError, RunError, StoreError};
use crate::filters::Filters;
use crate::plugins::{Plugin, RunContext};
use crate::retry::{self, Backoff};
use crate::run::{RunInfo, RunStats};
use crate::sinks::{self, Sink};
use crate::sources::{BatchLimits, Source};
use confirm::{Unconfirmed, Written};
use dead_letter::{DeadLetter, Entry, Stage};
use selection::Selection;
pub use shutdown::Shutdown;
use state::{Counts, RunState, StateFile, Status};

/// Batches read ahead of the writer. The reader takes a slot before it reads, so
/// memory holds the batch being written plus this many (waiting or being decoded).
const IN_FLIGHT_BATCHES: usize = 1;

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
        config.source.open(filters).await
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

pub(crate) fn io_error(path: &std::path::Path, e: std::io::Error) -> RunError {
    RunError::Io(format!("writing {}: {e}", path.display()))
}

/// The state of an unfinished earlier run to continue, per the resume mode.
pub(crate) fn previous_run(
    config: &RunConfig,
    file: &StateFile,
) -> Result<Option<RunState>, RunError> {
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
    let mut migration = Migration::start(config, shutdown).await?;
    let (batches, reader) = migration.spawn_reader();
    let end = migration.move_batches(batches).await;
    reader.abort();
    let _ = reader.await;
    migration.finish(end).await
}

/// How the batch loop ended.
enum End {
    /// The source has no more records.
    Done,
    /// Ctrl-C (or SIGTERM): stopped after the last confirmed batch.
    Interrupted,
    /// An error retries could not fix, or too many failed records.
    Failed(RunError),
}

/// One run, step by step: [`Migration::start`] opens everything (continuing an
/// unfinished run when asked), [`Migration::spawn_reader`] reads ahead in its own
/// task, [`Migration::move_batches`] filters, decodes, runs plugins, writes and
/// confirms batch after batch, and [`Migration::finish`] closes the destination and
/// the state.
struct Migration<'a> {
    config: &'a RunConfig,
    shutdown: &'a Shutdown,
    filters: Filters,
    faults: fault::Faults,
    plugins: Vec<Plugin>,
    /// Taken by the reader task.
    source: Option<Box<dyn Source>>,
    sink: Box<dyn Sink>,
    run: RunInfo,
    dead: DeadLetter,
    stats: RunStats,
    state: RunState,
    state_file: StateFile,
    resumed_from: Option<String>,
    /// The latest batches written, not durable yet.
    unconfirmed: Unconfirmed,
    progress: progress::Progress,
    started: Instant,
}

impl<'a> Migration<'a> {
    /// Loads the plugins, opens the source and the destination (prepared, so
    /// configuration problems show before any work), and either continues the
    /// unfinished run of the same configuration or records a new one.
    async fn start(config: &'a RunConfig, shutdown: &'a Shutdown) -> Result<Self, RunError> {
        let filters = config.filters.compile()?;
        let state_file = StateFile::new(&config.state_dir, &config.fingerprint);
        let previous = previous_run(config, &state_file)?;
        let plugins = crate::plugins::load_all(&config.plugins)
            .await
            .map_err(|e| RunError::Config(ConfigError::Invalid(e.to_string())))?;

        let mut source = open_source(config, &filters).await?;
        let mut run = config.run_info(source.describe());
        if let Some(p) = &previous {
            run.run_id = p.run_id.clone();
        }
        let mut sink = config
            .sink
            .open(&run, config.retry)
            .map_err(|e| open_error(e, "destination"))?;
        retry::with_retries(config.retry, "preparing the destination", async || {
            sink.prepare().await
        })
        .await
        .map_err(|e| RunError::store("preparing the destination failed", e))?;
        let mut dead = DeadLetter::new(dead_letter_path(config, sink.as_ref()), run.run_id.clone());
        let mut stats = RunStats::default();
        let resumed_from = match &previous {
            Some(p) => Some(
                continue_previous(p, source.as_mut(), sink.as_mut(), &mut dead, &mut stats).await?,
            ),
            None => None,
        };
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
        let now = chrono::Utc::now().to_rfc3339();
        let state = match previous {
            Some(p) => RunState {
                version: state::STATE_VERSION,
                fingerprint: config.fingerprint.clone(),
                source: run.source.clone(),
                status: Status::Running,
                dead_letter_entries: dead.count(),
                destination: sink.describe(),
                updated_at: now,
                ..p
            },
            None => RunState {
                dead_letter_entries: dead.count(),
                ..RunState::new(&config.fingerprint, &run, sink.describe())
            },
        };
        state_file
            .save(&state)
            .map_err(|e| io_error(state_file.path(), e))?;
        let total = if source.counts_cheaply() && resumed_from.is_none() {
            // The counts include what the source could not filter itself (a shard).
            source.count_by_thread(true).await.ok().map(|c| {
                c.per_thread
                    .iter()
                    .filter(|(thread, _)| filters.accepts_thread(thread))
                    .map(|(_, n)| n)
                    .sum()
            })
        } else {
            None
        };
        Ok(Self {
            config,
            shutdown,
            filters,
            faults: fault::Faults::from_env(),
            plugins,
            source: Some(source),
            sink,
            run,
            dead,
            stats,
            state,
            state_file,
            resumed_from,
            unconfirmed: Unconfirmed::default(),
            progress: progress::Progress::new(total),
            started: Instant::now(),
        })
    }

    /// Reads the source in its own task, retrying retriable errors, and sorts each
    /// batch there ([`Selection::of`]: thread filter, decode, date filter) on every
    /// core: reading and decoding the next batch overlap plugin calls and writing for
    /// this one, in order. At most [`IN_FLIGHT_BATCHES`] batches wait.
    ///
    /// Plugins run on the writer's side ([`Migration::move_batches`]), not here: on
    /// two cores decoding already uses both, and a plugin call next to it only
    /// slowed both down (measured; docs/decisions.md).
    fn spawn_reader(&mut self) -> (mpsc::Receiver<Result<Selection, RunError>>, JoinHandle<()>) {
        let mut source = self.source.take().expect("the reader is spawned once");
        // Raw mode: a sink that writes raw values only, with no plugin to feed, gets
        // the records undecoded (decoding is most of the work of a run); `select`
        // still decodes when a date filter needs the time.
        let decode = self.sink.needs_view() || !self.plugins.is_empty();
        let limits = BatchLimits {
            max_records: self.config.batch_size,
            max_bytes: self.config.max_batch_bytes,
        };
        let policy = self.config.retry;
        // Plugins read the view as text too (and patch it), so they do not stop this.
        let as_text = self.sink.reads_view_text();
        // Shared with each batch's decoding task, not copied per batch.
        let filters = std::sync::Arc::new(self.filters.clone());
        let (tx, rx) = mpsc::channel::<Result<Selection, RunError>>(IN_FLIGHT_BATCHES);
        let reader = tokio::spawn(async move {
            // Each batch is selected on the same thread (see `crate::lane`).
            let mut selecting = crate::lane::Lane::new("select");
            loop {
                // A free slot first, then read and decode into it: a decoded batch
                // never waits here for the channel.
                let Ok(slot) = tx.reserve().await else { break };
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
                    Ok(Some(batch)) => {
                        let filters = std::sync::Arc::clone(&filters);
                        selecting
                            .run(move || Selection::of(batch, &filters, decode, as_text))
                            .await
                            .map_err(|e| {
                                RunError::store(
                                    "decoding a batch failed",
                                    StoreError::fatal(e.to_string()),
                                )
                            })
                    }
                    Ok(None) => break,
                    Err(e) => Err(RunError::store("reading the source failed", e)),
                };
                let end = item.is_err();
                slot.send(item);
                if end {
                    break;
                }
            }
        });
        (rx, reader)
    }

    /// Processes and confirms batches until the source ends, the run is
    /// interrupted, or an error stops it.
    async fn move_batches(
        &mut self,
        mut batches: mpsc::Receiver<Result<Selection, RunError>>,
    ) -> End {
        while let Some(batch) = batches.recv().await {
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => return End::Failed(e),
            };
            if !self.plugins.is_empty() {
                let ctx = self.plugin_context();
                let ran = batch.run_plugins(&mut self.plugins, &ctx, self.shutdown);
                // Stopped inside a plugin call: nothing of this batch was written or
                // recorded, so the state stays at the last confirmed batch.
                if ran.await.is_err() {
                    return End::Interrupted;
                }
            }
            let last_key = batch.batch.last_key.clone();
            let position = batch.batch.position.clone();
            let sent = match self.process_batch(batch).await {
                Ok(sent) => sent,
                Err(e) => return End::Failed(e),
            };
            self.faults.after_write(self.stats.batches);
            let written = Written {
                last_key,
                position,
                counts: Counts::of(&self.stats),
                dead_letter_entries: self.dead.count(),
            };
            let confirmed =
                self.unconfirmed
                    .written(written, sent, self.sink.unconfirmed_batches());
            if let Some(written) = confirmed
                && let Err(e) = self.confirm(written).await
            {
                return End::Failed(e);
            }
            self.faults.after_commit(self.stats.batches);
            self.stats.duration = self.started.elapsed();
            self.progress.update(&self.stats);
            let limit = self.config.max_errors;
            if limit > 0 && self.stats.failed > limit {
                return End::Failed(RunError::TooManyErrors {
                    failed: self.stats.failed,
                    limit,
                });
            }
            if self.shutdown.requested() {
                return End::Interrupted;
            }
        }
        End::Done
    }

    /// Makes the batch `written` durable (for a sink that leaves batches unconfirmed:
    /// every batch but the ones written last), then records it in the resume state
    /// with the counts of its time: the state never runs ahead of the destination.
    async fn confirm(&mut self, written: Written) -> Result<(), RunError> {
        let sink = &mut self.sink;
        let confirmed = retry::with_retries(
            self.config.retry,
            "confirming the destination",
            async || sink.checkpoint().await,
        )
        .await
        .map_err(|e| RunError::store("confirming the destination failed", e))?;
        // `None`: this sink cannot continue mid-way; the resume point stays.
        let Some(sink_state) = confirmed else {
            return Ok(());
        };
        self.dead
            .sync()
            .map_err(|e| io_error(self.dead.path(), e))?;
        let Written {
            last_key,
            position,
            counts,
            dead_letter_entries,
        } = written;
        let state = &mut self.state;
        if position.is_some() || last_key.is_some() {
            state.position = position.unwrap_or(serde_json::Value::Null);
        }
        state.last_key = last_key.or(state.last_key.take());
        state.sink = sink_state;
        state.counts = counts;
        state.dead_letter_entries = dead_letter_entries;
        self.save_state()
    }

    fn save_state(&mut self) -> Result<(), RunError> {
        self.state.updated_at = chrono::Utc::now().to_rfc3339();
        self.state_file
            .save(&self.state)
            .map_err(|e| io_error(self.state_file.path(), e))
    }

    /// Closes the run: a finished one finishes the destination and marks the state
    /// finished; an interrupted or failed one leaves the destination resumable.
    async fn finish(mut self, end: End) -> Result<RunReport, RunError> {
        self.progress.finish();
        self.stats.duration = self.started.elapsed();
        self.dead
            .flush()
            .map_err(|e| io_error(self.dead.path(), e))?;
        let stop = match end {
            End::Done => None,
            End::Interrupted => Some((
                Status::Interrupted,
                RunError::Interrupted {
                    written: self.stats.written,
                    state: self.state_file.path().display().to_string(),
                },
            )),
            End::Failed(e) => Some((Status::Failed, e)),
        };
        if let Some((status, error)) = stop {
            self.state.status = status;
            self.save_state()?;
            self.sink
                .suspend()
                .await
                .map_err(|e| RunError::store("closing the destination failed", e))?;
            return Err(error);
        }
        if let Some(written) = self.unconfirmed.all() {
            let sink = &mut self.sink;
            retry::with_retries(
                self.config.retry,
                "confirming the destination",
                async || sink.settle().await,
            )
            .await
            .map_err(|e| RunError::store("confirming the destination failed", e))?;
            self.confirm(written).await?;
        }
        let destination = self.sink.describe();
        let (sink, stats) = (&mut self.sink, &self.stats);
        retry::with_retries(self.config.retry, "finishing the destination", async || {
            sink.finish(stats).await
        })
        .await
        .map_err(|e| RunError::store("finishing the destination failed", e))?;
        self.state.status = Status::Finished;
        self.save_state()?;
        Ok(RunReport {
            source: self.run.source.clone(),
            destination,
            dead_letter: (self.dead.count() > 0).then(|| self.dead.path().clone()),
            run: self.run,
            stats: self.stats,
            resumed_from: self.resumed_from,
        })
    }

    /// The run facts a plugin call gets, for the batch about to be written.
    fn plugin_context(&self) -> RunContext {
        let run = &self.run;
        RunContext {
            run_id: run.run_id.clone(),
            run_started_at: run
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            source_kind: run.source_kind.clone(),
            destination_kind: run.destination_kind.clone(),
            // Counted from the start of this process, as the stats are.
            batch_index: self.stats.batches,
        }
    }

    /// Writes a sorted batch's kept records and sends its failures (read, decode,
    /// plugin, then write) to the dead-letter file. True when records were sent to the
    /// sink (a batch whose records were all filtered out or failed sends none).
    async fn process_batch(&mut self, selection: Selection) -> Result<bool, RunError> {
        let Selection {
            batch,
            kept,
            filtered,
            notices,
            failures,
        } = selection;
        let (dead, stats) = (&mut self.dead, &mut self.stats);
        stats.batches += 1;
        stats.bytes_read += batch.bytes as u64;
        stats.vanished += batch.vanished;
        stats.read += (batch.failed.len() as u64) + filtered + (failures.len() + kept.len()) as u64;
        stats.filtered += filtered;
        for kind in notices {
            *stats.undecoded.entry(kind).or_default() += 1;
        }
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
        for failure in &failures {
            dead.add(Entry {
                stage: failure.stage,
                detail: failure.detail.as_deref(),
                error: &failure.error,
                key: Some(&failure.record.key),
                origin: &failure.record.origin,
                record: Some(&failure.record),
            })
            .map_err(|e| io_error(dead.path(), e))?;
        }
        let sent = !kept.is_empty();
        if sent {
            let sink = &mut self.sink;
            let rejected = retry::with_retries(
                self.config.retry,
                "writing to the destination",
                async || sink.write_batch(&kept).await,
            )
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
        Ok(sent)
    }
}

/// Where failed records go: the configured file, else the sink's default, named by
/// shard in a sharded run — never the file being replayed.
fn dead_letter_path(config: &RunConfig, sink: &dyn Sink) -> PathBuf {
    let path = config
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| sink.default_dead_letter_path());
    // Shards running side by side never share a dead-letter file.
    let path = match &config.filters.shard {
        Some(shard) => shard.file_path(&path),
        None => path,
    };
    match &config.source {
        SourceConfig::DeadLetter(replayed) if same_file(replayed, &path) => {
            sinks::partial_path(&path).with_extension("replay.jsonl")
        }
        _ => path,
    }
}

/// Continues an unfinished run: the destination, the dead-letter count, the counters
/// and the source position come back from its state. Returns where it continues.
async fn continue_previous(
    previous: &RunState,
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    dead: &mut DeadLetter,
    stats: &mut RunStats,
) -> Result<String, RunError> {
    sink.resume(previous.sink.clone())
        .await
        .map_err(|e| RunError::store("resuming the destination failed", e))?;
    dead.resume(previous.dead_letter_entries)
        .map_err(|e| io_error(dead.path(), e))?;
    previous.counts.restore(stats);
    if !previous.position.is_null() {
        source
            .resume_from(&previous.position)
            .map_err(|e| RunError::store("resuming the source failed", e))?;
    } else if let Some(key) = &previous.last_key {
        source.resume_after(key.clone());
    }
    let at = previous
        .last_key
        .as_ref()
        .map_or("the beginning".into(), ToString::to_string);
    tracing::info!(
        "resuming run {} after {at} ({} already written)",
        previous.run_id,
        previous.counts.written
    );
    Ok(at)
}
