//! What a plugin writes to stdout and stderr (Python's `print` and tracebacks, a JS
//! `console.log`, a Rust panic message): kept in a small bounded buffer per instance,
//! never failing the guest's write, and handed to the host's log after each call — the
//! last line also goes into the error when the call failed, so a traceback's
//! `ValueError: …` names the cause of a trap.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines kept between two calls; older ones are dropped (and counted).
const MAX_LINES: usize = 200;
/// Bytes of one line kept; the rest is cut.
const MAX_LINE_BYTES: usize = 2048;

#[derive(Debug, Default)]
struct Tail {
    /// The current line, not yet ended by a newline.
    partial: Vec<u8>,
    lines: VecDeque<String>,
    dropped: usize,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.partial.len() < MAX_LINE_BYTES {
                self.partial.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial))
            .trim_end_matches('\r')
            .to_owned();
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

/// The guest's stdout and stderr, both into one buffer in the order written.
#[derive(Debug, Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Tail>>);

/// The lines a call wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub lines: Vec<String>,
    /// Lines dropped because the call wrote more than [`MAX_LINES`].
    pub dropped: usize,
}

impl Written {
    /// The line that says what went wrong: the last one with text, past the
    /// language runtimes' own trailers (componentize-py's "Python function threw an
    /// unexpected exception" panic, Rust's backtrace hint, JS stack frames), so a
    /// Python traceback gives its `ValueError: …` line.
    pub fn cause(&self) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !is_runtime_trailer(l))
    }
}

fn is_runtime_trailer(line: &str) -> bool {
    line.starts_with("note: run with `RUST_BACKTRACE")
        || (line.starts_with("thread '") && line.contains("panicked at"))
        || line == "Python function threw an unexpected exception"
        || line.starts_with("at ")
        || line.starts_with('@')
}

impl GuestOutput {
    /// Everything written since the last take, the unfinished line included.
    pub fn take(&self) -> Written {
        let mut tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !tail.partial.is_empty() {
            tail.end_line();
        }
        Written {
            lines: tail.lines.drain(..).collect(),
            dropped: std::mem::take(&mut tail.dropped),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_skips_runtime_trailers() {
        let written = Written {
            lines: [
                "Traceback (most recent call last):",
                "  File \"/0/app.py\", line 22, in transform",
                "KeyError: 'fields'",
                "",
                "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:",
                "Python function threw an unexpected exception",
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            ]
            .map(String::from)
            .to_vec(),
            dropped: 0,
        };
        assert_eq!(written.cause(), Some("KeyError: 'fields'"));
    }

    #[test]
    fn lines_are_split_bounded_and_taken_once() {
        let out = GuestOutput::default();
        let mut tail = out.0.lock().expect("lock");
        tail.push(b"Traceback (most recent call last):\r\n  File \"app.py\"\nValueError: bad");
        drop(tail);
        let written = out.take();
        assert_eq!(written.lines.len(), 3);
        assert_eq!(written.cause(), Some("ValueError: bad"));
        assert!(out.take().lines.is_empty());

        let mut tail = out.0.lock().expect("lock");
        for i in 0..MAX_LINES + 5 {
            tail.push(format!("{i}\n").as_bytes());
        }
        tail.push(&[b'x'; MAX_LINE_BYTES * 2]);
        drop(tail);
        let written = out.take();
        assert_eq!(written.dropped, 6);
        assert_eq!(written.lines.len(), MAX_LINES);
        assert_eq!(written.lines.last().map(String::len), Some(MAX_LINE_BYTES));
    }
}
