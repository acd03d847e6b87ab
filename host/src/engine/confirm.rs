//! Which written batch the resume state may record. A sink may leave its latest
//! batches not durable yet when `write_batch` returns ([`Sink::unconfirmed_batches`]:
//! a server's pipeline one, an embedded collection that flushes every few batches up
//! to a few); the state never names a batch before the sink made it durable.
//!
//! [`Sink::unconfirmed_batches`]: crate::sinks::Sink::unconfirmed_batches

use std::collections::VecDeque;

use super::state::Counts;
use crate::record::CheckpointKey;

/// A batch written: where the source is after it, and the run's counts then (what the
/// resume state records once the destination confirms it).
#[derive(Debug)]
pub(super) struct Written {
    pub last_key: Option<CheckpointKey>,
    pub position: Option<serde_json::Value>,
    pub counts: Counts,
    pub dead_letter_entries: u64,
}

impl Written {
    /// This batch recorded in place of `earlier` as well: its counts (they only
    /// grow), and its key and position, or the earlier batch's where it has none.
    fn after(self, earlier: Written) -> Written {
        Written {
            last_key: self.last_key.or(earlier.last_key),
            position: self.position.or(earlier.position),
            ..self
        }
    }
}

/// The latest batches written and not durable yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct Unconfirmed(VecDeque<Written>);

impl Unconfirmed {
    /// The batch to record now that `written` was written (`sent`: something of it
    /// reached the sink) and the sink says its latest `not_durable` batches are not
    /// durable yet, if any: the newest batch older than those (itself when none
    /// are). Recording the newest is enough: positions and counts only grow.
    pub fn written(&mut self, written: Written, sent: bool, not_durable: usize) -> Option<Written> {
        if sent {
            self.0.push_back(written);
        } else {
            // Nothing of this batch reached the sink, so the batches it holds
            // unconfirmed are still the earlier ones: this batch's position waits in
            // the latest one's place (confirming it now would record a position the
            // sink has not made durable). With nothing waiting, it is confirmed now.
            match self.0.pop_back() {
                Some(latest) => self.0.push_back(written.after(latest)),
                None => return Some(written),
            }
        }
        let durable = self.0.len().saturating_sub(not_durable);
        self.0
            .drain(..durable)
            .reduce(|earlier, later| later.after(earlier))
    }

    /// Every batch still waiting, as the newest of them to record once the sink has
    /// made them all durable (the end of a run).
    pub fn all(&mut self) -> Option<Written> {
        self.0
            .drain(..)
            .reduce(|earlier, later| later.after(earlier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u64) -> Written {
        Written {
            last_key: None,
            position: Some(n.into()),
            counts: Counts {
                written: n * 10,
                ..Counts::default()
            },
            dead_letter_entries: 0,
        }
    }

    fn recorded(w: Option<Written>) -> Option<u64> {
        w.map(|w| w.counts.written / 10)
    }

    #[test]
    fn a_sink_that_confirms_at_once_records_every_batch() {
        let mut waiting = Unconfirmed::default();
        for n in 1..=3 {
            assert_eq!(recorded(waiting.written(batch(n), true, 0)), Some(n));
        }
        assert!(waiting.all().is_none());
    }

    #[test]
    fn a_pipeline_records_the_batch_before() {
        let mut waiting = Unconfirmed::default();
        assert_eq!(recorded(waiting.written(batch(1), true, 1)), None);
        assert_eq!(recorded(waiting.written(batch(2), true, 1)), Some(1));
        assert_eq!(recorded(waiting.written(batch(3), true, 1)), Some(2));
        assert_eq!(recorded(waiting.all()), Some(3));
    }

    #[test]
    fn batches_flushed_together_are_recorded_at_their_flush() {
        // An embedded collection flushing every third batch: 1, 2 and 3 wait until the
        // third one's flush, then the newest of them is recorded.
        let mut waiting = Unconfirmed::default();
        assert_eq!(recorded(waiting.written(batch(1), true, 1)), None);
        assert_eq!(recorded(waiting.written(batch(2), true, 2)), None);
        assert_eq!(recorded(waiting.written(batch(3), true, 0)), Some(3));
        assert_eq!(recorded(waiting.written(batch(4), true, 1)), None);
        assert_eq!(recorded(waiting.all()), Some(4));
    }

    #[test]
    fn a_batch_that_reached_no_sink_waits_in_the_latest_ones_place() {
        let mut waiting = Unconfirmed::default();
        // Nothing waiting: recorded at once.
        assert_eq!(recorded(waiting.written(batch(1), false, 1)), Some(1));
        assert_eq!(recorded(waiting.written(batch(2), true, 1)), None);
        // Batch 2 is not durable, so 3's position must wait for it.
        assert_eq!(recorded(waiting.written(batch(3), false, 1)), None);
        let mut fourth = batch(4);
        fourth.position = None;
        // Batch 4 makes 2 durable, and with it 3's position, not 4's.
        let confirmed = waiting.written(fourth, true, 1).unwrap();
        assert_eq!(confirmed.counts.written, 30);
        assert_eq!(confirmed.position, Some(3.into()));
        // 4 has no position of its own: the state keeps the one it recorded before.
        let last = waiting.all().unwrap();
        assert_eq!((last.counts.written, last.position), (40, None));
    }
}
