//! Copying a database's WAL into the database on a thread of its own.
//!
//! In WAL mode every page is written twice: into the WAL at commit, and from there
//! into the database at a checkpoint. SQLite checkpoints on the committing connection
//! once the WAL passes its `wal_autocheckpoint` size, so the writer stopped for the
//! copy: a ninth of a SQLite-to-SQLite run. Here a second connection checkpoints
//! (`PASSIVE`: it never waits for, nor blocks, the writer) after each commit, while the
//! writer goes on with the next batch. Once a checkpoint has caught up, the writer's
//! next transaction starts the WAL over from its beginning. The writer keeps a
//! `wal_autocheckpoint` of its own ([`WRITER_CHECKPOINT_BYTES`]), which bounds the WAL
//! when this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;

/// The WAL size, in bytes, past which the writer checkpoints itself.
pub(crate) const WRITER_CHECKPOINT_BYTES: u64 = 64 << 20;

/// A thread checkpointing one database whenever it is woken.
pub(crate) struct WalCheckpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Opens a second connection to the database at `path` (in WAL mode already) and
    /// starts its thread.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| super::blocking::error(path, "cannot open for checkpointing", e))?;
        // One wake-up waiting is enough: a checkpoint copies everything committed.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    // A failed checkpoint (the file is busy, the disk is full) leaves
                    // the frames in the WAL, where the writer's own checkpoint or the
                    // next one here copies them; the writer reports its own errors.
                    // A commit during this checkpoint left its wake-up waiting.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| {
                StoreError::fatal(format!(
                    "SQLite {}: cannot start the checkpoint thread: {e}",
                    path.display()
                ))
            })?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint of what is committed now.
    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            // Full: a checkpoint is already asked for, and copies this commit too.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for WalCheckpointer {
    /// Waits for a checkpoint under way; what it leaves in the WAL, the writer's last
    /// connection copies when it closes.
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer checkpoints nothing itself (`wal_autocheckpoint = 0`): what reaches
    /// the database file, the checkpointer copied.
    #[test]
    fn commits_reach_the_database_file_through_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute("CREATE TABLE t (x BLOB)", []).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        let checkpointer = WalCheckpointer::start(&path).unwrap();
        for _ in 0..20 {
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))", [])
                .unwrap();
            checkpointer.wake();
        }
        // Waits for the last checkpoint asked for.
        drop(checkpointer);
        let copied = std::fs::metadata(&path).unwrap().len();
        assert!(
            copied >= empty + 20 * 100_000,
            "the database file grew from {empty} to {copied} bytes only"
        );
    }
}
