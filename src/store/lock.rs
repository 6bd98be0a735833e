//! An exclusive lock on a folder (a run, an evaluation's output), held by a live process: the
//! operating system's lock on `lablens.lock` in the folder, which it releases when the holder
//! exits, however it exits. The file names the holder (process id, what it does, since when) so
//! that a refused second writer can say who holds it, and a holder that died without clearing it
//! is reported when its lock is taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "lablens.lock";

/// Held while it lives; dropping it clears the file and releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    /// Said when the lock was taken over from a holder that died: who it was.
    pub took_over: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is in use by {holder}; wait for it to finish, or stop it", dir.display())]
    Busy { dir: PathBuf, holder: String },
    #[error("{}: cannot lock ({source})", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FolderLock {
    /// Locks `dir` for `what` (`train`, `eval`, ...), or says who holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<FolderLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder: holder(&mut file).unwrap_or_else(|| "another lablens process".into()),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let took_over = holder(&mut file).map(|h| {
            format!(
                "{} was left locked by {h}, which is no longer running; took it over",
                dir.display()
            )
        });
        let since = super::utc_stamp(std::time::SystemTime::now());
        let text = format!("process {} ({what}, since {since})", std::process::id());
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(FolderLock { file, took_over })
    }
}

/// The holder the file names, if it names one.
fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(1024).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // An empty file is a lock released in order; the OS lock goes with the handle.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_dead_ones_lock_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = FolderLock::acquire(dir.path(), "train").expect("first");
        assert!(first.took_over.is_none());
        let err = FolderLock::acquire(dir.path(), "eval").expect_err("busy");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "in use by process {} (train, since",
                std::process::id()
            )),
            "{text}"
        );
        drop(first);
        let again = FolderLock::acquire(dir.path(), "eval").expect("released");
        assert!(again.took_over.is_none(), "{:?}", again.took_over);
        drop(again);
        // A holder that died leaves its name in the file and no OS lock.
        let orphan = dir.path().join("orphan");
        std::fs::create_dir(&orphan).expect("dir");
        std::fs::write(
            orphan.join(LOCK_FILE),
            "process 999999 (train, since 20261206T000000Z)",
        )
        .expect("write");
        let taken = FolderLock::acquire(&orphan, "train").expect("taken over");
        let said = taken.took_over.clone().expect("a message");
        assert!(
            said.contains("left locked by process 999999 (train"),
            "{said}"
        );
    }
}
