//! Atomic file writes: a temp file in the same folder, fsync, rename, then fsync of the folder,
//! so a crash leaves either the old file or the new one, never a torn one. The temp files of a
//! writer killed before its rename are removed by the next write of the same file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically, creating the parent folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the folder entry is on disk.
        if let Ok(d) = File::open(dir) {
            d.sync_all().ok();
        }
        Ok(())
    })();
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    if result.is_ok() {
        remove_orphans(dir, &name.to_string_lossy());
    }
    result
}

/// Removes `.NAME.PID.tmp` files in `dir` whose writer is no longer running (another live
/// process may be writing the same file: its temp file stays).
fn remove_orphans(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            fs::remove_file(entry.path()).ok();
        }
    }
}

/// Whether process `pid` exists (on Linux, from /proc; elsewhere assumed, so nothing is removed).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("a.ron");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_dead_writers_temp_file_is_removed_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("predictions.jsonl");
        // pid 1 is always running; pid 4,194,305 is above the largest Linux allows.
        let live = dir.path().join(".predictions.jsonl.1.tmp");
        let dead = dir.path().join(".predictions.jsonl.4194305.tmp");
        let other = dir.path().join(".eval.json.4194305.tmp");
        for p in [&live, &dead, &other] {
            fs::write(p, b"partial").expect("write");
        }
        write_atomic(&path, b"rows").expect("write");
        assert!(live.exists() || !cfg!(target_os = "linux"));
        assert_eq!(dead.exists(), !cfg!(target_os = "linux"));
        assert!(
            other.exists(),
            "another file's temp is not this write's business"
        );
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keep.txt");
        write_atomic(&path, b"good").expect("write");
        // A folder where the file should go makes the rename fail.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("x")).expect("mkdir");
        assert!(write_atomic(&blocked, b"bad").is_err());
        assert_eq!(fs::read(&path).expect("read"), b"good");
    }
}
