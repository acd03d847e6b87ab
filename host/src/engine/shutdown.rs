//! Ctrl-C / SIGTERM: the first asks the run to stop after the batch in flight (files
//! closed, state written, resumable); the second ends the process at once — the state
//! on disk is always one the destination confirmed, so that is safe too.

use std::sync::Arc;

use tokio::sync::watch;

/// Exit code of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// Whether the run was asked to stop; checked between batches, and awaited by work
/// that must not make the stop wait (a plugin call).
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Shutdown {
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    pub fn request(&self) {
        self.0.send_replace(true);
    }

    /// Completes when a stop is requested (at once if it already was).
    pub async fn wait(&self) {
        let mut requested = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends on a request.
        let _ = requested.wait_for(|stop| *stop).await;
    }

    /// Listens for signals for the rest of the process (call inside a runtime).
    pub fn listen(&self) {
        let flag = self.clone();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                wait_for_signal().await;
                if first {
                    first = false;
                    flag.request();
                    eprintln!(
                        "\nstopping after the current batch (a plugin call in progress is cut short; press Ctrl-C again to stop at once; the run stays resumable)"
                    );
                } else {
                    eprintln!("\nstopped at once; resume with --resume");
                    std::process::exit(INTERRUPTED_EXIT_CODE);
                }
            }
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
