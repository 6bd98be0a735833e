//! How the registry reads and places files: reads bounded by a size that names the file when it
//! is over it, files placed by hard link where the file system allows it and copied otherwise, the time and the
//! user a record names, and JSON errors that name the line and the field.

use crate::job::JobError;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub const MIB: u64 = 1 << 20;
/// The largest eval.json and bias.json the registry reads.
pub const MAX_EVAL_BYTES: u64 = 16 * MIB;
pub const MAX_BIAS_BYTES: u64 = 64 * MIB;

/// The whole of `path`, refused when it is larger than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, JobError> {
    let meta = std::fs::metadata(path).map_err(|e| JobError::file(path, e))?;
    if !meta.is_file() {
        return Err(JobError::file(path, "not a file"));
    }
    let too_large = || {
        JobError::file(
            path,
            format!(
                "too large: over the {} MiB this file may hold; it is not a file Lab Lens wrote",
                limit / MIB
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| JobError::file(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text; `None` when there is no such file.
pub fn read_text(path: &Path, limit: u64) -> Result<Option<String>, JobError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| JobError::file(path, format!("not UTF-8 text ({e})")))
}

/// Puts `from` at `to`: a hard link (no copy, the same bytes) where the file system allows one,
/// else a copy synced to disk.
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    File::open(to)?.sync_all()
}

/// Now in UTC as RFC 3339 (`2026-12-04T10:11:12Z`).
pub fn now_rfc3339() -> String {
    let stamp = crate::store::utc_stamp(std::time::SystemTime::now());
    // `YYYYMMDD-HHMMSS`, all ASCII digits around the dash.
    let (date, time) = stamp.split_once('-').unwrap_or((&stamp, ""));
    if date.len() != 8 || time.len() != 6 {
        return stamp;
    }
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        &time[..2],
        &time[2..4],
        &time[4..]
    )
}

/// Who is acting: `$USER`, else `$USERNAME`, else `unknown`.
pub fn user() -> String {
    ["USER", "USERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|u| u.trim().to_string())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A JSON error of `text` (read from `path`; the file's line `line` when `text` is one line of
/// it) as a message naming the line and, where serde's message does not, the field.
pub fn json_error(path: &Path, line: Option<usize>, text: &str, e: &serde_json::Error) -> JobError {
    let full = e.to_string();
    let message = full
        .rfind(" at line ")
        .map_or(full.as_str(), |i| &full[..i]);
    let field = if e.is_data() && !message.starts_with("missing field") {
        field_at(text, e.line(), e.column())
    } else {
        None
    };
    let at = line.unwrap_or(e.line());
    let field = field.map_or(String::new(), |f| format!(", field {f:?}"));
    JobError::file(path, format!("line {at}{field}: {message}"))
}

/// The key of the value that ends at `line`:`column` of `text` (1-based, as serde_json counts).
fn field_at(text: &str, line: usize, column: usize) -> Option<String> {
    let mut before = String::new();
    for (i, l) in text.lines().enumerate() {
        if i + 1 == line {
            let end = (0..=l.len().min(column))
                .rev()
                .find(|&i| l.is_char_boundary(i))
                .unwrap_or(0);
            before.push_str(&l[..end]);
            break;
        }
        before.push_str(l);
        before.push('\n');
    }
    let colon = before.rfind("\":")?;
    let open = before[..colon].rfind('"')?;
    Some(before[open + 1..colon].to_string())
}

/// The largest predictions.jsonl the registry reads (it is held whole while it parses).
pub const MAX_PREDICTIONS_BYTES: u64 = 1024 * MIB;
