//! Making a batch's files durable.
//!
//! A per-thread export writes a few dozen new files a batch. `fdatasync` on each costs
//! a journal commit and a disk cache flush per file on most file systems; `syncfs` on
//! the file system that holds them costs one of each for the whole batch (measured in
//! docs/performance.md). `syncfs` is used only where it reports what went wrong and
//! syncs what it says: on Linux 5.8 or later (earlier kernels lose write-back errors
//! in it) and on local file systems whose `syncfs` writes every dirty file (ext2/3/4,
//! XFS, Btrfs, F2FS, tmpfs). Anywhere else, and for any file that lives on another
//! file system than the first, each file is synced on its own.

use std::fs::File;

/// Threads that sync files one by one (waiting on the disk, not computing).
const SYNC_THREADS: usize = 4;

/// Makes `files` durable. The first one's file system is the one that may be synced
/// whole.
pub(super) fn sync_files(files: &[File]) -> std::io::Result<()> {
    let Some(first) = files.first() else {
        return Ok(());
    };
    let one_by_one: Vec<&File> = match whole::device_to_sync(first)? {
        Some(device) => {
            let mut elsewhere = Vec::new();
            for file in files {
                if whole::device_of(file)? != device {
                    elsewhere.push(file);
                }
            }
            whole::sync(first)?;
            elsewhere
        }
        None => files.iter().collect(),
    };
    sync_each(&one_by_one)
}

/// `fdatasync` on each file, a few threads side by side each taking a share: one
/// after another waited for each file's write in turn.
fn sync_each(files: &[&File]) -> std::io::Result<()> {
    let share = files.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|scope| {
        let syncs: Vec<_> = files
            .chunks(share)
            .map(|part| scope.spawn(|| part.iter().try_for_each(|f| f.sync_data())))
            .collect();
        syncs.into_iter().try_for_each(|sync| {
            sync.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
        })
    })
}

#[cfg(target_os = "linux")]
mod whole {
    use std::fs::File;

    /// File systems whose `syncfs` writes back every dirty file of theirs and waits
    /// for it (`f_type` magic numbers, linux/magic.h).
    const LOCAL_FILE_SYSTEMS: [u64; 5] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // XFS
        0x9123_683E, // Btrfs
        0xF2F5_2010, // F2FS
        0x0102_1994, // tmpfs
    ];

    /// The device of `file`'s file system when that file system may be synced whole.
    pub(super) fn device_to_sync(file: &File) -> std::io::Result<Option<u64>> {
        let kind = rustix::fs::fstatfs(file)?.f_type as u64;
        if !LOCAL_FILE_SYSTEMS.contains(&kind) || !reports_errors() {
            return Ok(None);
        }
        device_of(file).map(Some)
    }

    pub(super) fn device_of(file: &File) -> std::io::Result<u64> {
        Ok(rustix::fs::fstat(file)?.st_dev)
    }

    pub(super) fn sync(file: &File) -> std::io::Result<()> {
        Ok(rustix::fs::syncfs(file)?)
    }

    /// Whether this kernel's `syncfs` reports write-back errors (Linux 5.8 and later).
    fn reports_errors() -> bool {
        static REPORTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REPORTS.get_or_init(|| {
            let uname = rustix::system::uname();
            release_at_least(&uname.release().to_string_lossy(), (5, 8))
        })
    }

    /// Whether a kernel release string (`6.1.0-18-amd64`) is at least `minimum`.
    pub(super) fn release_at_least(release: &str, minimum: (u32, u32)) -> bool {
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) => (major, minor) >= minimum,
            _ => false,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod whole {
    use std::fs::File;

    pub(super) fn device_to_sync(_: &File) -> std::io::Result<Option<u64>> {
        Ok(None)
    }

    pub(super) fn device_of(_: &File) -> std::io::Result<u64> {
        Ok(0)
    }

    pub(super) fn sync(_: &File) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_are_synced_whole_or_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..9)
            .map(|n| {
                let mut f = File::create(dir.path().join(format!("{n}.jsonl"))).unwrap();
                f.write_all(b"{}\n").unwrap();
                f
            })
            .collect();
        sync_files(&files).unwrap();
        sync_each(&files.iter().collect::<Vec<_>>()).unwrap();
        sync_files(&[]).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        use super::whole::release_at_least;
        assert!(release_at_least("6.18.44-fc-v1098", (5, 8)));
        assert!(release_at_least("5.8.0", (5, 8)));
        assert!(release_at_least("5.10.0-28-amd64", (5, 8)));
        assert!(!release_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!release_at_least("4.19.0", (5, 8)));
        assert!(!release_at_least("", (5, 8)));
        assert!(!release_at_least("garbage", (5, 8)));
    }
}
