//! Sinks: where decoded records go. A sink receives records whose view is computed
//! and says which records it rejected; the engine owns batching and retries.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::OpenError;
use crate::error::StoreError;
use crate::record::Checkpoint;
use crate::retry::RetryPolicy;
use crate::run::{RunInfo, RunStats};
use crate::sources::Source;

pub mod in_flight;

/// A record the sink refused, by its index in the batch.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

#[async_trait]
pub trait Sink: Send {
    /// Where we write, fit for logs (no secrets).
    fn describe(&self) -> String;

    /// Where failed records go unless the config says otherwise.
    fn default_dead_letter_path(&self) -> PathBuf;

    /// Makes the destination ready before anything is read (creates a collection,
    /// checks its shape): configuration problems show up before any work is done.
    async fn prepare(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the sink uses the decoded view of a record. Sinks that write the raw
    /// values only (LangGraph's own stores) say no, and records are then decoded only
    /// when a date filter or a plugin needs it.
    fn needs_view(&self) -> bool {
        true
    }

    /// Whether the sink reads the view only as JSON text ([`RecordView::to_text`]).
    /// When it does, the engine renders the text where records are decoded and frees
    /// the trees there: less memory held per batch, and the rendering runs on every
    /// core. Plugins read (and patch) the text as well. Sinks that read the trees say
    /// no (the default).
    ///
    /// [`RecordView::to_text`]: crate::record::RecordView::to_text
    fn reads_view_text(&self) -> bool {
        false
    }

    /// Checks that the destination can be written, writing nothing (dry run).
    async fn check_writable(&mut self) -> Result<(), StoreError>;

    /// What a run would do to the destination, for the dry run: tables to create,
    /// checkpoints of the selected threads it already holds. Writes nothing.
    async fn plan(&mut self, _threads: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Writes one batch of decoded records. When this returns, the records are as
    /// durable as the sink makes them (the engine then records resume state).
    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError>;

    /// Makes everything written so far durable and returns what [`Sink::resume`]
    /// needs to continue right after it. `None`: this sink cannot continue mid-way, so
    /// a resumed run starts it over (the engine then does not advance the resume
    /// point). The default is for sinks whose batches are committed when
    /// `write_batch` returns: nothing to do, nothing to remember.
    async fn checkpoint(&mut self) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(Some(serde_json::Value::Null))
    }

    /// How many of the latest written batches are not durable yet when `write_batch`
    /// returns. 0: each batch is durable then. 1: a sink that overlaps batches (a
    /// Qdrant server confirms batch n while batch n + 1 is in flight). Up to a few: a
    /// sink that makes several batches durable at once (an embedded collection
    /// flushes every few batches, and says 0 right after a flush). The engine records
    /// a batch in the resume state only once the sink no longer counts it, and the
    /// last ones after [`Sink::settle`].
    fn unconfirmed_batches(&self) -> usize {
        0
    }

    /// Confirms every batch written so far (the end of a run of a sink that leaves
    /// [`Sink::unconfirmed_batches`]).
    async fn settle(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Continues the output of an earlier run from one of its checkpoints (or from
    /// `null`: start over). Called before the first write. The default keeps nothing
    /// (see [`Sink::checkpoint`]).
    async fn resume(&mut self, _state: serde_json::Value) -> Result<(), StoreError> {
        Ok(())
    }

    /// Stops without finishing (interrupted or failed run): files are closed but keep
    /// their `.partial` names, so nothing unfinished looks complete.
    async fn suspend(&mut self) -> Result<(), StoreError>;

    /// Flushes and closes everything; `stats` are the run's final counters.
    async fn finish(&mut self, stats: &RunStats) -> Result<(), StoreError>;

    /// What `verify` compares for this destination.
    fn comparison(&self) -> Comparison {
        Comparison::RawValues
    }

    /// What this destination holds for `record` once written: LangGraph's stores
    /// write their own serializer's form of the values. `None`: it would refuse the
    /// record (into the dead-letter file). The default writes the record as it is.
    fn written_form(&self, record: Checkpoint) -> Option<Checkpoint> {
        Some(record)
    }

    /// A source over everything this destination holds, so `verify` can compare it
    /// with the source. The default: this destination cannot be read back.
    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        Err(StoreError::fatal(format!(
            "{} cannot be read back to verify",
            self.describe()
        )))
    }
}

/// Records per batch. Two batches are alive at once (one written while the next is
/// decoded): 500 keeps a decoded export under 100 MiB on checkpoints of ~8 KB at no
/// measured cost in speed (1000: +16–18 MiB; docs/performance.md). A destination may
/// default to another ([`OpenSink::default_batch_size`]).
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// A store's destination settings (its folder's config struct): they create the sink.
pub trait OpenSink: Send + Sync {
    /// Creates the sink without connecting or writing (the engine prepares it).
    fn open_sink(&self, run: &RunInfo, retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError>;

    /// Records per batch when the run does not say (`batch_size`, `--batch-size`).
    fn default_batch_size(&self) -> usize {
        DEFAULT_BATCH_SIZE
    }
}

/// What `verify` compares between the source and what a destination holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// The raw typed values, byte for byte (exports keep them untouched).
    RawValues,
    /// What LangGraph reads: the decoded view (LangGraph's stores change the shape of
    /// the raw values, e.g. PostgresSaver splits a SqliteSaver checkpoint).
    View,
}

/// Runs `work` on the thread pool sinks encode on, a pool apart from rayon's global
/// one. The reader decodes the next batch on the global pool meanwhile: a writer's
/// jobs queued there waited for that whole batch to be decoded before they started,
/// and cores stood idle (measured; docs/decisions.md). In a pool of their own they
/// run alongside the decoding, the kernel sharing the cores between both.
pub fn on_encode_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("encode-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(work),
        // No threads to be had: the global pool still does the work.
        None => work(),
    }
}

/// What an export's description adds in raw mode (`view: false`).
pub fn raw_mode_note(view: bool) -> &'static str {
    if view { "" } else { " (raw mode: no view)" }
}

/// A file or directory name that is safe for any string, and distinct for distinct
/// strings: ASCII letters, digits, `-`, `_` and `.` stay, every other byte becomes
/// `%XX`, a leading `.` too (no `..`, no hidden files). Names longer than 120 bytes
/// are cut and end in `~` plus a hash of the whole string (`~` never appears
/// otherwise, so cut names cannot collide with uncut ones).
pub fn safe_file_name(s: &str) -> String {
    use sha2::Digest as _;
    const MAX: usize = 120;
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        return "%".into();
    }
    if out.len() <= MAX {
        return out;
    }
    let hash = sha2::Sha256::digest(s.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX - 17;
    // Do not cut inside a %XX escape.
    while out.as_bytes()[..cut]
        .iter()
        .rev()
        .take(2)
        .any(|&c| c == b'%')
    {
        cut -= 1;
    }
    format!("{}~{hex}", &out[..cut])
}

/// `path` with `.partial` appended: where a file lives until it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    with_suffix(path, ".partial")
}

/// `path` with `suffix` appended to its file name (`out.db` → `out.db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Checks, without leaving anything behind, that `dir` (or its nearest existing
/// ancestor) is a directory we can create files in.
pub fn check_dir_writable(dir: &Path) -> Result<(), StoreError> {
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => {
                probe = Path::new(".");
                break;
            }
        }
    }
    if !probe.is_dir() {
        return Err(StoreError::fatal(format!(
            "{} exists and is not a directory",
            probe.display()
        )));
    }
    tempfile::tempfile_in(probe)
        .map(drop)
        .map_err(|e| StoreError::fatal(format!("cannot write in {}: {e}", probe.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(safe_file_name("customer-0001"), "customer-0001");
        assert_eq!(safe_file_name("../x"), "%2E.%2Fx");
        assert_eq!(safe_file_name("a/b"), "a%2Fb");
        assert_eq!(safe_file_name("a\0b"), "a%00b");
        assert_eq!(safe_file_name(""), "%");
        assert_ne!(safe_file_name("a b"), safe_file_name("a_b"));
        let long = "x".repeat(300);
        let name = safe_file_name(&long);
        assert!(name.len() <= 120, "{}", name.len());
        assert_ne!(name, safe_file_name(&"x".repeat(301)));
        let long_escapes = "/".repeat(300);
        assert!(safe_file_name(&long_escapes).len() <= 120);
    }
}
