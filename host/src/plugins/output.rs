//! Bounds on the text a plugin makes the host print or store: log messages, reject
//! reasons and error messages. A plugin is untrusted code, so its text is cut to a
//! fixed size (it could return megabytes) and made one visible line (a newline in a
//! log message would forge log lines of the host's own).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest log message a plugin may write; the rest is cut.
pub const MAX_LOG_MESSAGE_BYTES: usize = 2 * 1024;
/// Log messages one call may write (more are counted, then reported once).
pub const MAX_LOG_MESSAGES_PER_CALL: u32 = 100;
/// Log bytes one call may write.
pub const MAX_LOG_BYTES_PER_CALL: usize = 64 * 1024;
/// Longest reject reason kept for a record.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest error message of a failed call kept (once per batch).
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// How much of a failed call's message each record's dead-letter line repeats.
pub const MAX_ERROR_SUMMARY_BYTES: usize = 200;

/// `text` as one line of at most about `max_bytes`: control characters (newlines,
/// carriage returns, escape sequences…) are written as Rust escapes (`\n`, `\u{1b}`),
/// and a longer text is cut at a character boundary with the number of bytes cut.
pub fn one_line(text: &str, max_bytes: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(char::is_control);
    if clean && text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max_bytes) + 32);
    let mut used = 0;
    for (at, c) in text.char_indices() {
        let before = out.len();
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max_bytes {
            out.truncate(before);
            used = at;
            break;
        }
        used = at + c.len_utf8();
    }
    if used < text.len() {
        let _ = write!(out, "… ({} more bytes cut)", text.len() - used);
    }
    Cow::Owned(out)
}

/// Counts what one call logs and says when to stop passing messages on.
#[derive(Debug, Default)]
pub struct LogBudget {
    messages: u32,
    bytes: usize,
    suppressed: u64,
}

impl LogBudget {
    /// Starts a new call's budget; returns how many messages the last call had
    /// suppressed.
    pub fn reset(&mut self) -> u64 {
        std::mem::take(self).suppressed
    }

    /// Whether a message of `len` bytes may still be logged in this call.
    pub fn admit(&mut self, len: usize) -> bool {
        let len = len.min(MAX_LOG_MESSAGE_BYTES);
        if self.messages >= MAX_LOG_MESSAGES_PER_CALL || self.bytes + len > MAX_LOG_BYTES_PER_CALL {
            self.suppressed += 1;
            return false;
        }
        self.messages += 1;
        self.bytes += len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_escapes_become_visible() {
        assert_eq!(one_line("plain", 100), "plain");
        assert_eq!(
            one_line("a\nsummary: forged\r\x1b[31m", 100),
            "a\\nsummary: forged\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let text = "é".repeat(100); // 200 bytes
        let cut = one_line(&text, 11);
        assert!(cut.starts_with("ééééé… (190 more bytes cut)"), "{cut}");
        let text = "x\n".repeat(10);
        let cut = one_line(&text, 6);
        assert_eq!(cut, "x\\nx\\n… (16 more bytes cut)");
    }

    #[test]
    fn budget_counts_messages_and_bytes() {
        let mut budget = LogBudget::default();
        for _ in 0..MAX_LOG_MESSAGES_PER_CALL {
            assert!(budget.admit(10));
        }
        assert!(!budget.admit(10));
        assert_eq!(budget.reset(), 1);
        let big = MAX_LOG_MESSAGE_BYTES * 10;
        let fits = MAX_LOG_BYTES_PER_CALL / MAX_LOG_MESSAGE_BYTES;
        for _ in 0..fits {
            assert!(budget.admit(big), "a long message counts at its cut size");
        }
        assert!(!budget.admit(1));
        assert_eq!(budget.reset(), 1);
        assert_eq!(budget.reset(), 0);
    }
}
