//! Fault injection for the crash tests: `CKPT_MIGRATE_FAULT` names a point where the
//! process dies as if killed (`abort`, no clean-up): `crash-after-write:N` (batch N
//! written, not yet confirmed), `crash-after-commit:N` (batch N confirmed and in the
//! state file), or slows every batch down with `slow:MILLISECONDS` so a test can kill
//! or restart things mid-run. Unset in normal use; it is read once at start.

use std::time::Duration;

#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    crash_after_write: Option<u64>,
    crash_after_commit: Option<u64>,
    slow: Option<Duration>,
}

impl Faults {
    pub fn from_env() -> Self {
        let mut faults = Faults::default();
        let Ok(spec) = std::env::var("CKPT_MIGRATE_FAULT") else {
            return faults;
        };
        for part in spec.split(',') {
            let Some((name, n)) = part.split_once(':') else {
                continue;
            };
            let Ok(n) = n.trim().parse::<u64>() else {
                continue;
            };
            match name.trim() {
                "crash-after-write" => faults.crash_after_write = Some(n),
                "crash-after-commit" => faults.crash_after_commit = Some(n),
                "slow" => faults.slow = Some(Duration::from_millis(n)),
                _ => {}
            }
        }
        faults
    }

    pub fn after_write(&self, batch: u64) {
        if self.crash_after_write == Some(batch) {
            std::process::abort();
        }
        if let Some(d) = self.slow {
            std::thread::sleep(d);
        }
    }

    pub fn after_commit(&self, batch: u64) {
        if self.crash_after_commit == Some(batch) {
            std::process::abort();
        }
    }
}
