//! What the push sends, shaped for MLflow: the training configuration flattened into params,
//! tags as key/value objects, report files read with their SHA-256, times in milliseconds.

use super::client::MlflowError;
use crate::registry::files::read_bounded;
use crate::store::sha256_hex;
use crate::train::config::{TrainConfig, flat_fields};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Tags to set, by key.
#[derive(Default)]
pub struct Tags(pub BTreeMap<String, String>);

impl Tags {
    pub fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

pub fn tag(key: &str, value: &str) -> Value {
    json!({"key": key, "value": value})
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A JSON report of the run folder (at most `limit` bytes) with its SHA-256; `None` when the
/// run has none.
pub fn read_json(path: &Path, limit: u64) -> Result<Option<(Value, String)>, MlflowError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(path, limit).map_err(|e| MlflowError::Usage(e.to_string()))?;
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| MlflowError::Usage(format!("{}: not JSON ({e})", path.display())))?;
    Ok(Some((value, sha256_hex(&bytes))))
}

/// The training configuration as MLflow params: nested fields joined by `.` (`lora.r`), lists
/// as JSON text, an absent value as `None`.
pub fn flatten_config(config: &TrainConfig) -> Vec<(String, String)> {
    let value = serde_json::to_value(config).unwrap_or_default();
    flat_fields(&value)
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_else(|| "None".into())))
        .collect()
}
