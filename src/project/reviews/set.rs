//! The records a coordinator chose for review: `review-set.json` beside `reviews.jsonl`, written
//! atomically. Reviewers of that folder's outputs see only these records, in this order; without
//! the file they see every record both outputs share.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const REVIEW_SET_FILE: &str = "review-set.json";

/// A chosen set is a list of ids: far below this.
const MAX_SET_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ReviewSetError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFile {
    records: Vec<String>,
    /// When it was chosen (seconds since 1970).
    #[serde(default)]
    chosen_at: u64,
}

/// The set's file for the reviews kept in `reviews` (a `reviews.jsonl` path).
pub fn review_set_path(reviews: &Path) -> PathBuf {
    reviews.with_file_name(REVIEW_SET_FILE)
}

/// The chosen record ids, or `None` where no set was chosen (no file).
pub fn read_review_set(path: &Path) -> Result<Option<Vec<String>>, ReviewSetError> {
    let err = |message: String| ReviewSetError {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Ok(None);
    }
    let bytes =
        crate::data::load::read_bounded(path, MAX_SET_BYTES).map_err(|e| err(e.to_string()))?;
    let file: SetFile = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("line {}, column {}: {e}", e.line(), e.column())))?;
    check(&file.records).map_err(err)?;
    Ok(Some(file.records))
}

/// Every id once, none empty.
fn check(ids: &[String]) -> Result<(), String> {
    if ids.is_empty() {
        return Err("records: the set is empty (remove the file to review every record)".into());
    }
    let mut seen = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        if id.trim().is_empty() {
            return Err(format!("records[{i}]: an empty id"));
        }
        if !seen.insert(id.as_str()) {
            return Err(format!("records[{i}]: {id:?} is chosen twice"));
        }
    }
    Ok(())
}

/// Chooses `ids`, in this order, for review (replacing an earlier choice).
pub fn write_review_set(path: &Path, ids: &[String]) -> Result<(), ReviewSetError> {
    let err = |message: String| ReviewSetError {
        path: path.to_path_buf(),
        message,
    };
    check(ids).map_err(err)?;
    let file = SetFile {
        records: ids.to_vec(),
        chosen_at: super::now_s(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| err(e.to_string()))?;
    crate::store::write_atomic(path, &json).map_err(|e| err(e.to_string()))
}

/// Removes the choice: every shared record is reviewed again.
pub fn clear_review_set(path: &Path) -> Result<(), ReviewSetError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReviewSetError {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The records to review: the chosen ones that `shared` holds, in the chosen order (all of
/// `shared` where none were chosen), and how many chosen ones it lacks.
pub fn chosen_items(shared: Vec<String>, chosen: Option<&[String]>) -> (Vec<String>, usize) {
    let Some(chosen) = chosen else {
        return (shared, 0);
    };
    let shared: HashSet<&str> = shared.iter().map(String::as_str).collect();
    let items: Vec<String> = chosen
        .iter()
        .filter(|id| shared.contains(id.as_str()))
        .cloned()
        .collect();
    let missing = chosen.len() - items.len();
    (items, missing)
}
