//! `--dry-run`: connect, count, sample through the decoder, time it, check the
//! destination — and write nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use crate::config::RunConfig;
use crate::engine;
use crate::error::RunError;
use crate::filters::Selected;
use crate::sources::BatchLimits;
use crate::stores::json::export_object;

/// Records decoded and timed for the estimate.
const SAMPLE_SIZE: usize = 200;
/// Decode problems listed in the report.
const MAX_PROBLEMS: usize = 10;

#[derive(Debug)]
pub struct DryRunReport {
    pub source: String,
    pub destination: String,
    pub pushdown: String,
    /// Every checkpoint in the source.
    pub total: u64,
    /// Per thread, after all filters.
    pub per_thread: BTreeMap<String, u64>,
    /// True when counting after the date filters needed a full scan.
    pub scanned: bool,
    pub sampled: usize,
    pub problems: Vec<String>,
    pub undecoded: BTreeMap<String, u64>,
    /// Sampled records per second (read + decode + encode).
    pub rate: f64,
    pub destination_check: Result<(), String>,
    /// What the run would do to the destination (store destinations).
    pub plan: Vec<String>,
}

impl DryRunReport {
    pub fn selected(&self) -> u64 {
        self.per_thread.values().sum()
    }

    pub fn eta_seconds(&self) -> Option<f64> {
        (self.rate > 0.0).then(|| self.selected() as f64 / self.rate)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Dry run: nothing was written.");
        let _ = writeln!(out, "  source:       {}", self.source);
        let _ = writeln!(out, "  destination:  {}", self.destination);
        let _ = writeln!(out, "  pushed down:  {}", self.pushdown);
        let _ = writeln!(out, "  checkpoints:  {} in the source", self.total);
        let _ = writeln!(
            out,
            "  selected:     {} after filters, in {} thread(s){}",
            self.selected(),
            self.per_thread.len(),
            if self.scanned {
                " (date filters: counted by reading every checkpoint)"
            } else {
                ""
            }
        );
        for (thread, n) in self.per_thread.iter().take(50) {
            let _ = writeln!(out, "    {thread:?}: {n}");
        }
        if self.per_thread.len() > 50 {
            let _ = writeln!(out, "    … and {} more threads", self.per_thread.len() - 50);
        }
        let _ = writeln!(
            out,
            "  sample:       {} checkpoint(s) decoded, {} problem(s)",
            self.sampled,
            self.problems.len()
        );
        for p in &self.problems {
            let _ = writeln!(out, "    ! {p}");
        }
        for (kind, n) in &self.undecoded {
            let _ = writeln!(out, "    note: {kind} ×{n}");
        }
        match self.eta_seconds() {
            Some(eta) => {
                let _ = writeln!(
                    out,
                    "  estimate:     {:.0} checkpoints/s → about {} for the selection",
                    self.rate,
                    human_duration(eta)
                );
            }
            None => {
                let _ = writeln!(out, "  estimate:     not enough data");
            }
        }
        match &self.destination_check {
            Ok(()) => {
                let _ = writeln!(out, "  destination:  writable");
                for line in &self.plan {
                    let _ = writeln!(out, "    would: {line}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  destination:  NOT writable: {e}");
            }
        }
        out
    }
}

fn human_duration(secs: f64) -> String {
    if secs < 1.0 {
        "under a second".into()
    } else if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

pub async fn dry_run(config: &RunConfig) -> Result<DryRunReport, RunError> {
    let filters = config.filters.compile()?;
    let mut source = engine::open_source(config, &filters).await?;
    let run = config.run_info(source.describe());
    let mut sink = config
        .sink
        .open(&run, config.retry)
        .map_err(|e| engine::open_error(e, "destination"))?;
    let store = |e| RunError::store("dry run", e);

    let total = source.count_by_thread(false).await.map_err(store)?.total();
    let limits = BatchLimits {
        max_records: config.batch_size.min(SAMPLE_SIZE),
        max_bytes: config.max_batch_bytes,
    };
    let mut per_thread: BTreeMap<String, u64> = source
        .count_by_thread(true)
        .await
        .map_err(store)?
        .per_thread
        .into_iter()
        .filter(|(thread, _)| filters.accepts_thread(thread))
        .collect();
    let scanned = config.filters.has_date_filter();
    let mut report = DryRunReport {
        source: source.describe(),
        destination: sink.describe(),
        pushdown: source.pushdown_summary(),
        total,
        per_thread: BTreeMap::new(),
        scanned,
        sampled: 0,
        problems: Vec::new(),
        undecoded: BTreeMap::new(),
        rate: 0.0,
        destination_check: sink.check_writable().await.map_err(|e| e.to_string()),
        plan: Vec::new(),
    };
    if scanned {
        per_thread.clear();
    }
    // Per thread, with date filters: (checkpoints, kept by the dates, uses a DeltaChannel).
    let mut chains: BTreeMap<String, (u64, u64, bool)> = BTreeMap::new();
    let started = Instant::now();
    let mut timed = 0usize;
    let mut sample_time = None;
    loop {
        let Some(batch) = source.next_batch(limits).await.map_err(store)? else {
            break;
        };
        for failed in batch.failed {
            report
                .problems
                .push(format!("{}: {}", failed.origin.locator, failed.error));
        }
        for record in batch.records {
            let sampling = report.sampled < SAMPLE_SIZE;
            if !sampling && !scanned {
                break;
            }
            let (record, kept) = match filters.select(record, true) {
                Selected::OtherThread => continue,
                Selected::Undecodable(record, e) => {
                    report.problems.push(format!("{}: {e}", record.key));
                    continue;
                }
                Selected::OutsideDates(record) => (record, false),
                Selected::Kept(record) => (record, true),
            };
            let view = record.view.as_ref().expect("decoded");
            if scanned {
                if kept {
                    *per_thread.entry(record.key.thread_id.clone()).or_default() += 1;
                }
                let chain = chains.entry(record.key.thread_id.clone()).or_default();
                chain.0 += 1;
                chain.1 += u64::from(kept);
                chain.2 |= uses_delta_channel(view);
            }
            if sampling {
                for notice in &view.notices {
                    *report.undecoded.entry(notice.clone()).or_default() += 1;
                }
                // Encoding to the export form is the bulk of a sink's work.
                let _ = serde_json::to_vec(&export_object(&record, true));
                report.sampled += 1;
                timed += 1;
            }
        }
        if report.sampled >= SAMPLE_SIZE && sample_time.is_none() {
            sample_time = Some(started.elapsed());
        }
        if report.sampled >= SAMPLE_SIZE && !scanned {
            break;
        }
    }
    let elapsed = sample_time
        .unwrap_or_else(|| started.elapsed())
        .as_secs_f64();
    if timed > 0 && elapsed > 0.0 {
        report.rate = timed as f64 / elapsed;
    }
    report.problems.truncate(MAX_PROBLEMS);
    // After the truncation: a cut chain is worth more than the tenth decode problem.
    let cut = |&(all, kept, delta): &(u64, u64, bool)| delta && kept > 0 && kept < all;
    for (thread, (all, kept, _)) in chains.iter().filter(|(_, chain)| cut(chain)) {
        report.problems.push(format!(
            "thread {thread:?} uses a DeltaChannel, whose values need the thread's whole parent \
             chain, but the date filters keep {kept} of its {all} checkpoints: migrate the \
             whole thread (exclude it from the date filter, or filter by thread only)"
        ));
    }
    if report.destination_check.is_ok() {
        let threads: Vec<String> = per_thread.keys().cloned().collect();
        report.plan = sink.plan(&threads).await.map_err(store)?;
    }
    report.per_thread = per_thread;
    Ok(report)
}

/// A checkpoint of a thread with a DeltaChannel (langgraph 1.2): a snapshot value, or
/// the counter LangGraph keeps in the metadata between snapshots.
fn uses_delta_channel(view: &crate::record::RecordView) -> bool {
    view.notices.iter().any(|n| n.starts_with("DeltaChannel"))
        || view.metadata.get("counters_since_delta_snapshot").is_some()
}
