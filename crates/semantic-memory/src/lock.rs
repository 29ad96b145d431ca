//! `CacheLock`: one process per cache directory. An exclusive advisory lock (`flock`, through
//! std's `File::try_lock`) on `<cache-dir>/.lock`, held for the life of the value; the file holds
//! the holder's pid so a refused process can name it. The kernel drops the lock when the process
//! exits, even on kill -9, so a stale file never blocks a restart. Does not decide which commands
//! take it (the binary does).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::MemoryError;

/// Name of the lock file inside the cache directory.
pub const LOCK_FILE: &str = ".lock";

/// Holds `<cache-dir>/.lock` until dropped.
#[derive(Debug)]
pub struct CacheLock {
    path: PathBuf,
    // Kept open: closing the file releases the lock.
    _file: File,
}

impl CacheLock {
    /// Creates the cache directory if needed and takes its lock without waiting. Another holder
    /// (another process, or another `CacheLock` on this directory in this process) gives
    /// [`MemoryError::Locked`] with that holder's pid when the file names one.
    pub fn acquire(cache_dir: &Path) -> Result<Self, MemoryError> {
        fs::create_dir_all(cache_dir).map_err(|e| MemoryError::io(cache_dir, e))?;
        let path = cache_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| MemoryError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(MemoryError::Locked { path, pid: text.trim().parse().ok() });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(MemoryError::io(&path, e)),
        }
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|()| file.flush());
        written.map_err(|e| MemoryError::io(&path, e))?;
        Ok(CacheLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("semantic-lock-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_drops() {
        let dir = temp_dir("second");
        let first = CacheLock::acquire(&dir.join("cache")).expect("first lock");
        assert_eq!(fs::read_to_string(first.path()).unwrap().trim(), std::process::id().to_string());
        match CacheLock::acquire(&dir.join("cache")) {
            Err(MemoryError::Locked { pid, path }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(path, dir.join("cache").join(LOCK_FILE));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        let again = CacheLock::acquire(&dir.join("cache")).expect("the lock is free once dropped");
        drop(again);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let dir = temp_dir("stale");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(LOCK_FILE), "999999999\n").unwrap();
        let lock = CacheLock::acquire(&dir).expect("a file nobody holds is no lock");
        assert_eq!(fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
        drop(lock);
        let _ = fs::remove_dir_all(&dir);
    }
}
