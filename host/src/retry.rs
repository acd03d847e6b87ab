//! Retrying store operations whose error says trying again can help. The engine
//! retries store calls with it; a store only says which of its errors are retriable.
//! (The embedding client, which calls an outside service per batch, uses it too.)

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{OpenError, StoreError};

pub const DEFAULT_MAX_RETRIES: usize = 5;
pub const DEFAULT_RETRY_BUDGET_SECONDS: u64 = 60;

/// How often, and for how long in total, a failing operation is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_MAX_RETRIES,
            budget: Duration::from_secs(DEFAULT_RETRY_BUDGET_SECONDS),
        }
    }
}

/// An error that may say it is worth retrying.
pub trait MaybeRetriable: std::fmt::Display {
    fn is_retriable(&self) -> bool;
}

impl MaybeRetriable for StoreError {
    fn is_retriable(&self) -> bool {
        self.retriable
    }
}

impl MaybeRetriable for OpenError {
    fn is_retriable(&self) -> bool {
        matches!(self, OpenError::Store(e) if e.retriable)
    }
}

/// Delays between attempts: exponential with jitter, bounded in count and in total
/// waiting time.
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    budget: Duration,
    waited: Duration,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            delays: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(policy.max_retries)
                .with_jitter()
                .build(),
            budget: policy.budget,
            waited: Duration::ZERO,
        }
    }

    /// How long to wait before trying again after `error`; `None` when the error is
    /// not retriable or the retries are used up.
    pub fn retry_after(&mut self, what: &str, error: &impl MaybeRetriable) -> Option<Duration> {
        if !error.is_retriable() {
            return None;
        }
        let delay = self.delays.next()?;
        if self.waited + delay > self.budget {
            return None;
        }
        self.waited += delay;
        tracing::warn!("{what}: {error}; retrying in {:.1} s", delay.as_secs_f64());
        Some(delay)
    }
}

/// Runs `op`, retrying retriable errors with exponential backoff and jitter.
pub async fn with_retries<T, E>(
    policy: RetryPolicy,
    what: &str,
    mut op: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E>
where
    E: MaybeRetriable,
{
    let mut backoff = Backoff::new(policy);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => match backoff.retry_after(what, &e) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(e),
            },
        }
    }
}
