//! The run, the dry run and `verify` for LangGraph Store items (`state: store`).
//!
//! Items are read in `(prefix, key)` pages and written page by page; each page is
//! durable in the destination before the resume state records its last key, so a
//! killed run continues after it and a re-run writes nothing twice (`on_conflict`).
//! Bad items go to the dead-letter file with the reason; the run goes on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::config::{RunConfig, SourceConfig};
use crate::engine::dead_letter::{DeadLetter, Stage};
use crate::engine::state::{Counts, RunState, StateFile, Status};
use crate::engine::{RunReport, Shutdown, fault, io_error, open_error, previous_run, progress};
use crate::error::{ConfigError, RunError};
use crate::items::{ItemFilters, ItemKey, ItemSink, ItemSource, StoreItem};
use crate::retry;
use crate::run::RunStats;

/// The source's items, opened with retries.
async fn open_source(
    config: &RunConfig,
    filters: &ItemFilters,
) -> Result<Box<dyn ItemSource>, RunError> {
    let SourceConfig::Store(store) = &config.source else {
        return Err(RunError::Config(ConfigError::Invalid(
            "state: store reads a store, not a dead-letter file".into(),
        )));
    };
    retry::with_retries(config.retry, "opening the source", async || {
        store.open_items(filters).await
    })
    .await
    .map_err(|e| open_error(e, "source"))
}

fn open_sink(config: &RunConfig) -> Result<Box<dyn ItemSink>, RunError> {
    config
        .sink
        .open_items(config.retry)
        .map_err(|e| open_error(e, "destination"))
}

/// Moves the Store items to the end (or until interrupted).
pub async fn run(config: &RunConfig, shutdown: &Shutdown) -> Result<RunReport, RunError> {
    let filters = ItemFilters::compile(&config.filters)?;
    let state_file = StateFile::new(&config.state_dir, &config.fingerprint);
    let previous = previous_run(config, &state_file)?;
    let mut source = open_source(config, &filters).await?;
    let mut sink = open_sink(config)?;
    let mut run = config.run_info(source.describe());
    if let Some(p) = &previous {
        run.run_id = p.run_id.clone();
    }
    let mut stats = RunStats::default();
    let dead_letter_path = config
        .dead_letter_path
        .clone()
        .unwrap_or_else(|| sink.default_dead_letter_path());
    let mut dead = DeadLetter::new(dead_letter_path, run.run_id.clone());
    let mut resumed_from = None;
    if let Some(p) = &previous {
        sink.resume(&p.sink);
        dead.resume(p.dead_letter_entries)
            .map_err(|e| io_error(dead.path(), e))?;
        p.counts.restore(&mut stats);
        let at = match serde_json::from_value::<ItemKey>(p.position.clone()) {
            Ok(key) => key.to_string(),
            Err(_) if p.position.is_null() => "the beginning".into(),
            Err(_) => p.position.to_string(),
        };
        tracing::info!(
            "resuming run {} after {at} ({} already written)",
            p.run_id,
            p.counts.written
        );
        if !p.position.is_null() {
            source
                .resume_from(&p.position)
                .map_err(|e| RunError::store("resuming the source failed", e))?;
        }
        resumed_from = Some(at);
    }
    retry::with_retries(config.retry, "preparing the destination", async || {
        sink.prepare().await
    })
    .await
    .map_err(|e| RunError::store("preparing the destination failed", e))?;
    tracing::info!(
        "run {}: Store items {} -> {}",
        run.run_id,
        source.describe(),
        sink.describe()
    );
    let now = chrono::Utc::now().to_rfc3339();
    let mut state = match previous {
        Some(p) => RunState {
            status: Status::Running,
            updated_at: now,
            ..p
        },
        None => RunState::new(&config.fingerprint, &run, sink.describe()),
    };
    let save = |state: &mut RunState| {
        state.updated_at = chrono::Utc::now().to_rfc3339();
        state_file
            .save(state)
            .map_err(|e| io_error(state_file.path(), e))
    };
    save(&mut state)?;
    let total = if resumed_from.is_none() {
        source
            .count_by_namespace()
            .await
            .ok()
            .map(|c| c.values().sum())
    } else {
        None
    };
    let mut progress = progress::Progress::counting(total, "items");
    let faults = fault::Faults::from_env();
    let started = Instant::now();
    let mut kept = 0;
    let outcome: Result<(), RunError> = async {
        loop {
            let batch = retry::with_retries(config.retry, "reading the source", async || {
                source.next_batch(config.batch_size).await
            })
            .await
            .map_err(|e| RunError::store("reading the source failed", e))?;
            let Some(batch) = batch else { break };
            stats.batches += 1;
            stats.read += (batch.items.len() + batch.failed.len()) as u64;
            for failed in &batch.failed {
                stats.failed += 1;
                dead.add_item(
                    Stage::Read,
                    &failed.reason,
                    &failed.key,
                    &failed.origin,
                    failed.raw.clone(),
                )
                .map_err(|e| io_error(dead.path(), e))?;
            }
            let (items, filtered): (Vec<StoreItem>, Vec<StoreItem>) =
                batch.items.into_iter().partition(|i| filters.accepts(i));
            stats.filtered += filtered.len() as u64;
            stats.bytes_read += items.iter().map(StoreItem::raw_size).sum::<usize>() as u64;
            let written =
                retry::with_retries(config.retry, "writing the destination", async || {
                    sink.write(&items).await
                })
                .await
                .map_err(|e| RunError::store("writing the destination failed", e))?;
            faults.after_write(stats.batches);
            stats.written += written.written;
            kept += written.kept;
            for (i, reason) in &written.rejected {
                stats.failed += 1;
                let item = &items[*i];
                dead.add_item(
                    Stage::Write,
                    reason,
                    &item.key,
                    &item.origin,
                    item.to_json(),
                )
                .map_err(|e| io_error(dead.path(), e))?;
            }
            dead.sync().map_err(|e| io_error(dead.path(), e))?;
            // A destination that cannot continue mid-run keeps the resume point at the
            // start: a resumed run writes everything again (and the dead-letter file
            // from its first entry).
            if sink.continues_mid_run() {
                state.position = batch.position.clone();
                state.sink = sink.resume_state();
                state.counts = Counts::of(&stats);
                state.dead_letter_entries = dead.count();
                save(&mut state)?;
            }
            faults.after_commit(stats.batches);
            progress.update(&stats);
            if config.max_errors > 0 && stats.failed > config.max_errors {
                return Err(RunError::TooManyErrors {
                    failed: stats.failed,
                    limit: config.max_errors,
                });
            }
            if shutdown.requested() {
                return Err(RunError::Interrupted {
                    written: stats.written,
                    state: state_file.path().display().to_string(),
                });
            }
        }
        Ok(())
    }
    .await;
    progress.finish();
    stats.duration = started.elapsed();
    dead.flush().map_err(|e| io_error(dead.path(), e))?;
    if let Err(error) = outcome {
        state.status = match error {
            RunError::Interrupted { .. } => Status::Interrupted,
            _ => Status::Failed,
        };
        save(&mut state)?;
        return Err(error);
    }
    retry::with_retries(config.retry, "finishing the destination", async || {
        sink.finish().await
    })
    .await
    .map_err(|e| RunError::store("finishing the destination failed", e))?;
    if kept > 0 {
        tracing::info!(
            "{}: {kept} item(s) already there and kept (on_conflict)",
            sink.describe()
        );
    }
    state.status = Status::Finished;
    save(&mut state)?;
    Ok(RunReport {
        source: run.source.clone(),
        destination: sink.describe(),
        dead_letter: (dead.count() > 0).then(|| dead.path().clone()),
        run,
        stats,
        resumed_from,
    })
}

/// What a dry run of Store items found.
#[derive(Debug)]
pub struct ItemDryRun {
    pub source: String,
    pub destination: String,
    /// Items per namespace within the namespace filter (before date filters).
    pub per_namespace: BTreeMap<String, u64>,
    /// The destination could not be prepared.
    pub problems: Vec<String>,
}

impl ItemDryRun {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let total: u64 = self.per_namespace.values().sum();
        let _ = writeln!(
            out,
            "dry run: Store items {} -> {}",
            self.source, self.destination
        );
        let _ = writeln!(
            out,
            "  {total} item(s) in {} namespace(s) would be read:",
            self.per_namespace.len()
        );
        for (namespace, n) in &self.per_namespace {
            let _ = writeln!(out, "    {namespace}: {n}");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
        out
    }
}

/// Counts the items per namespace; writes nothing.
pub async fn dry_run(config: &RunConfig) -> Result<ItemDryRun, RunError> {
    let filters = ItemFilters::compile(&config.filters)?;
    let mut source = open_source(config, &filters).await?;
    let sink = open_sink(config)?;
    let per_namespace = source
        .count_by_namespace()
        .await
        .map_err(|e| RunError::store("dry run", e))?;
    Ok(ItemDryRun {
        source: source.describe(),
        destination: sink.describe(),
        per_namespace,
        problems: Vec::new(),
    })
}

/// What `verify` found for Store items.
#[derive(Debug, Default)]
pub struct ItemVerify {
    pub compared: u64,
    pub missing: Vec<String>,
    pub different: Vec<String>,
    /// Source items that cannot be written (they belong in the dead-letter file).
    pub source_failed: u64,
}

impl ItemVerify {
    pub fn is_equal(&self) -> bool {
        self.missing.is_empty() && self.different.is_empty()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verify: {} Store item(s) compared; {} missing, {} different{}",
            self.compared,
            self.missing.len(),
            self.different.len(),
            if self.source_failed > 0 {
                format!(
                    "; {} unreadable in the source (dead-letter file)",
                    self.source_failed
                )
            } else {
                String::new()
            }
        );
        for line in self.missing.iter().chain(&self.different).take(50) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.is_equal() {
                "equal"
            } else {
                "NOT equal"
            }
        );
        out
    }
}

/// Reads every selected source item and what the destination holds for its key, and
/// compares them as LangGraph's store classes read them.
pub async fn verify(config: &RunConfig) -> Result<ItemVerify, RunError> {
    let filters = ItemFilters::compile(&config.filters)?;
    let mut source = open_source(config, &filters).await?;
    let mut sink = open_sink(config)?;
    let mut report = ItemVerify::default();
    while let Some(batch) = source
        .next_batch(config.batch_size)
        .await
        .map_err(|e| RunError::store("reading the source", e))?
    {
        report.source_failed += batch.failed.len() as u64;
        let items: Vec<StoreItem> = batch
            .items
            .into_iter()
            .filter(|i| filters.accepts(i))
            .collect();
        let keys: Vec<ItemKey> = items.iter().map(|i| i.key.clone()).collect();
        let found = sink
            .read_back(&keys)
            .await
            .map_err(|e| RunError::store("reading the destination", e))?;
        for (item, there) in items.into_iter().zip(found) {
            report.compared += 1;
            let key = item.key.to_string();
            match there {
                None => report.missing.push(format!("missing: {key}")),
                Some(there) => {
                    let numbers = sink.number_fidelity();
                    let differences = sink.written_form(item).differences(&there, numbers);
                    if !differences.is_empty() {
                        report
                            .different
                            .push(format!("{key}: differs in {}", differences.join(", ")));
                    }
                }
            }
        }
    }
    Ok(report)
}
