//! A batch sorted before it is written: the filters keep or leave out each record
//! (decoding it where needed, on every core, in the reader task), then the plugins
//! run on what is left. What is kept goes to the destination; the failures go to the
//! dead-letter file in the order they happened.

use super::dead_letter::Stage;
use crate::filters::{Filters, Selected};
use crate::plugins::{Outcome, Plugin, PluginError, RunContext, output};
use crate::record::Checkpoint;
use crate::sources::SourceBatch;

/// A batch with its records sorted, in source order.
pub(super) struct Selection {
    /// The batch's position and counts; its records are in `kept` and `failures`.
    pub batch: SourceBatch,
    /// What goes to the destination.
    pub kept: Vec<Checkpoint>,
    /// Left out by the filters (thread, dates) or dropped by a plugin.
    pub filtered: u64,
    /// The kind of each notice on the views the filters kept (see [`notice_kind`]),
    /// counted before the plugins ran, as the decoder found them.
    pub notices: Vec<String>,
    /// Records that could not be decoded, then those each plugin rejected or failed
    /// on: the order the dead-letter file gets them in.
    pub failures: Vec<Failure>,
}

/// A stop request (Ctrl-C) came while a plugin was working on the batch: nothing of
/// it may be written.
pub(super) struct Stopped;

/// A record that goes to the dead-letter file, and why.
pub(super) struct Failure {
    pub stage: Stage,
    pub error: String,
    /// A long message several failures share, kept on the first of them only.
    pub detail: Option<String>,
    pub record: Checkpoint,
}

impl Selection {
    /// Selects the batch's records on every core (rayon), keeping their order; with
    /// `as_text`, each kept record's view is made text there (see
    /// [`crate::sinks::Sink::reads_view_text`]).
    pub fn of(mut batch: SourceBatch, filters: &Filters, decode: bool, as_text: bool) -> Self {
        use rayon::prelude::*;
        let records = std::mem::take(&mut batch.records);
        let selected: Vec<Selected> = records
            .into_par_iter()
            .map(|record| filters.select_as(record, decode, as_text))
            .collect();
        let mut selection = Self {
            batch,
            kept: Vec::with_capacity(selected.len()),
            filtered: 0,
            notices: Vec::new(),
            failures: Vec::new(),
        };
        for outcome in selected {
            match outcome {
                Selected::OtherThread | Selected::OutsideDates(_) => selection.filtered += 1,
                Selected::Undecodable(record, error) => selection.failures.push(Failure {
                    stage: Stage::Decode,
                    error,
                    detail: None,
                    record,
                }),
                Selected::Kept(record) => {
                    let notices = record.view.iter().flat_map(|v| &v.notices);
                    selection.notices.extend(notices.map(|n| notice_kind(n)));
                    selection.kept.push(record);
                }
            }
        }
        selection
    }

    /// Runs the plugins in order on the kept records: dropped ones count as filtered,
    /// rejected ones (and a whole batch a plugin failed on) become failures, patches
    /// are applied. Only a stop request (Ctrl-C inside a plugin call) ends it early.
    pub async fn run_plugins(
        &mut self,
        plugins: &mut [Plugin],
        ctx: &RunContext,
        stop: &super::Shutdown,
    ) -> Result<(), Stopped> {
        for plugin in plugins.iter_mut() {
            if self.kept.is_empty() {
                break;
            }
            let refs: Vec<&Checkpoint> = self.kept.iter().collect();
            let outcomes = match plugin.run(ctx, &refs, stop.wait()).await {
                Ok(o) => o,
                Err(PluginError::Interrupted(_)) => return Err(Stopped),
                Err(e) => {
                    self.fail_whole_batch(&e.to_string(), ctx.batch_index);
                    return Ok(());
                }
            };
            let kept = std::mem::take(&mut self.kept);
            for (mut record, outcome) in kept.into_iter().zip(outcomes) {
                let error = match outcome {
                    Outcome::Keep => None,
                    Outcome::Drop => {
                        self.filtered += 1;
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
                match error {
                    None => self.kept.push(record),
                    Some(error) => self.failures.push(Failure {
                        stage: Stage::Plugin,
                        error,
                        detail: None,
                        record,
                    }),
                }
            }
        }
        Ok(())
    }

    /// A plugin failed on the whole batch: every record left goes to the dead-letter
    /// file and the run goes on. The (bounded) message is stored once, on the batch's
    /// first failure; each one names it briefly.
    fn fail_whole_batch(&mut self, message: &str, batch_index: u64) {
        let (summary, cut) = plugin_failure_summary(message, batch_index);
        tracing::warn!(
            "{message}: {} record(s) of batch {batch_index} to the dead-letter file",
            self.kept.len(),
        );
        let kept = std::mem::take(&mut self.kept);
        for (i, record) in kept.into_iter().enumerate() {
            self.failures.push(Failure {
                stage: Stage::Plugin,
                error: summary.clone(),
                detail: (cut && i == 0).then(|| message.to_owned()),
                record,
            });
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_of_one_kind_count_together_whatever_their_detail() {
        assert_eq!(
            notice_kind("undecoded extension (12 bytes) at channel_values.x"),
            "undecoded extension at channel_values.x"
        );
        assert_eq!(notice_kind("no detail"), "no detail");
        assert_eq!(notice_kind("odd ) order ("), "odd ) order (");
    }

    #[test]
    fn a_long_plugin_failure_is_named_briefly_and_kept_whole_once() {
        let (short, cut) = plugin_failure_summary("plugin x failed: boom", 3);
        assert_eq!(short, "plugin x failed: boom (batch 3)");
        assert!(!cut);
        let long = format!("plugin x failed: {}", "y".repeat(5000));
        let (short, cut) = plugin_failure_summary(&long, 4);
        assert!(cut);
        assert!(short.len() < long.len());
        assert!(short.contains("batch 4; the whole message is in `error_detail`"));
    }
}
