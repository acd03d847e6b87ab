//! A thread of its own for blocking work that repeats, batch after batch.
//!
//! tokio's blocking pool hands each `spawn_blocking` call to whichever idle thread it
//! wakes, and on Linux that is the one that has waited longest: a source read with it
//! ran each batch on the next of its threads. jemalloc gives each thread its own arena
//! and keeps the pages a thread frees (for a second, `dirty_decay_ms`) in that arena,
//! so every thread the batches went round held a batch's worth of freed memory: 10 MiB
//! of a decoded Parquet export's peak at 100 000 checkpoints (docs/decisions.md). A
//! [`Lane`] runs its jobs one after another on the same thread, whose arena reuses
//! what the batch before it freed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The job panicked (the panic's message, when it had one). The lane goes on.
    #[error("it panicked: {0}")]
    Panicked(String),
    /// The thread could not be started.
    #[error("no thread for it: {0}")]
    NoThread(String),
}

/// One thread, started on first use, that runs the jobs sent to it in order. It ends
/// when the lane is dropped (after the jobs already sent).
pub struct Lane {
    name: &'static str,
    jobs: Option<mpsc::Sender<Job>>,
}

impl Lane {
    /// A lane whose thread will be named `name` (as `top` and `perf` show it).
    pub fn new(name: &'static str) -> Self {
        Self { name, jobs: None }
    }

    /// Runs `job` on the lane's thread and waits for it without blocking the runtime.
    pub async fn run<T, F>(&mut self, job: F) -> Result<T, LaneError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have stopped waiting (its task was dropped): nobody to tell.
            let _ = done.send(catch_unwind(AssertUnwindSafe(job)));
        });
        self.sender()?
            .send(job)
            .map_err(|_| LaneError::NoThread(format!("the {} thread has ended", self.name)))?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(LaneError::Panicked(panic_message(panic.as_ref()))),
            // Only a panic outside `catch_unwind` (in the channel itself) ends the thread.
            Err(_) => Err(LaneError::NoThread(format!(
                "the {} thread has ended",
                self.name
            ))),
        }
    }

    fn sender(&mut self) -> Result<&mpsc::Sender<Job>, LaneError> {
        if self.jobs.is_none() {
            let (jobs, queue) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(self.name.to_owned())
                .spawn(move || {
                    for job in queue {
                        job();
                    }
                })
                .map_err(|e| LaneError::NoThread(format!("cannot start a thread: {e}")))?;
            self.jobs = Some(jobs);
        }
        Ok(self.jobs.as_ref().expect("set above"))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    /// Every job runs on one thread, not the caller's, whichever worker awaits it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_on_one_thread_of_their_own() {
        let mut lane = Lane::new("lane-test");
        let caller = thread_id();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let (id, name) = lane
                .run(|| {
                    (
                        thread_id(),
                        std::thread::current().name().map(str::to_owned),
                    )
                })
                .await
                .unwrap();
            assert_ne!(id, caller);
            assert_eq!(name.as_deref(), Some("lane-test"));
            seen.insert(id);
            tokio::task::yield_now().await;
        }
        assert_eq!(seen.len(), 1);
    }

    /// A panicking job is an error with its message, and the lane keeps running jobs.
    #[tokio::test]
    async fn a_panic_is_an_error_and_the_lane_goes_on() {
        let mut lane = Lane::new("lane-test");
        let err = lane
            .run(|| -> u8 { panic!("the job broke") })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LaneError::Panicked(m) if m == "the job broke"),
            "{err}"
        );
        assert_eq!(lane.run(|| 7).await.unwrap(), 7);
    }
}
