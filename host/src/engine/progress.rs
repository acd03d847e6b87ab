//! Progress: a bar with rate and ETA on a terminal, a log line every few seconds
//! otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::RunStats;

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    total: Option<u64>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    pub fn new(total: Option<u64>) -> Self {
        Self::counting(total, "checkpoints")
    }

    /// A progress of `total` things called `unit` (`checkpoints`, `items`).
    pub fn counting(total: Option<u64>, unit: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                None => ProgressBar::new_spinner(),
            };
            let style = ProgressStyle::with_template(
                &format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"),
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            total,
            started: Instant::now(),
            last_log: Instant::now(),
        }
    }

    pub fn update(&mut self, stats: &RunStats) {
        if let Some(bar) = &self.bar {
            bar.set_position(stats.read);
            bar.set_message(format!(
                "written {} filtered {} failed {}",
                stats.written, stats.filtered, stats.failed
            ));
            return;
        }
        if self.last_log.elapsed() < LOG_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let rate = stats.read as f64 / secs;
        let eta = match self.total {
            Some(total) if rate > 0.0 => {
                format!(
                    ", ETA {:.0} s",
                    total.saturating_sub(stats.read) as f64 / rate
                )
            }
            _ => String::new(),
        };
        tracing::info!(
            "progress: read {}{} ({rate:.0}/s{eta}), written {}, filtered {}, failed {}",
            stats.read,
            self.total.map(|t| format!("/{t}")).unwrap_or_default(),
            stats.written,
            stats.filtered,
            stats.failed
        );
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
