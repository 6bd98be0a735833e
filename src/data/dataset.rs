//! Opening a dataset the way every front end does: load, validate and split in one call with
//! stage progress, and writing records back out as JSONL.

use super::load::{LoadError, LoadOptions, LoadedDataset, load_path};
use super::record::{Record, Split};
use super::split::{SplitSpec, assign_splits};
use super::validate::{Limits, ValidationReport, validate};
use std::path::{Path, PathBuf};

/// Everything the Dataset panel and `lablens validate` show about one file.
#[derive(Debug, Clone)]
pub struct DatasetView {
    pub loaded: LoadedDataset,
    pub report: ValidationReport,
    /// The split of each record, index-aligned with `loaded.records`.
    pub splits: Vec<Split>,
    pub split_spec: SplitSpec,
    /// Whitespace-separated word counts of each record's input and target.
    pub input_words: Vec<u32>,
    pub target_words: Vec<u32>,
}

impl DatasetView {
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    pub fn records(&self) -> &[Record] {
        &self.loaded.records
    }
}

#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub load: LoadOptions,
    pub limits: Limits,
    pub split: SplitSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cancelled")]
    Cancelled,
}

/// Loads, validates and splits `path`. `progress(stage, done, total)` is called between stages
/// and returns `false` to cancel.
pub fn open_dataset(
    path: &Path,
    options: &OpenOptions,
    progress: &mut dyn FnMut(&str, u64, u64) -> bool,
) -> Result<DatasetView, OpenError> {
    let mut step = |stage: &str, done: u64| {
        if progress(stage, done, 3) {
            Ok(())
        } else {
            Err(OpenError::Cancelled)
        }
    };
    step("Loading", 0)?;
    let loaded = load_path(path, &options.load)?;
    step("Validating", 1)?;
    let report = validate(&loaded, &options.limits);
    step("Splitting by patient", 2)?;
    let splits = assign_splits(&loaded.records, &options.split);
    let count = |t: &str| t.split_whitespace().count() as u32;
    let input_words = loaded.records.iter().map(|r| count(&r.input)).collect();
    let target_words = loaded.records.iter().map(|r| count(&r.target)).collect();
    step("Done", 3)?;
    Ok(DatasetView {
        loaded,
        report,
        splits,
        split_spec: options.split,
        input_words,
        target_words,
    })
}

/// Records as JSONL bytes, one object per line.
pub fn to_jsonl(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 2048);
    for r in records {
        // Serialising a Record cannot fail: every field is a plain value.
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// The three split files `lablens split` writes, in the order of `Split::ALL`.
pub fn split_file_names(dir: &Path) -> [PathBuf; 3] {
    Split::ALL.map(|s| dir.join(format!("{}.jsonl", s.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reports_stages_and_can_be_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.jsonl");
        let recs = crate::data::synth::generate(crate::data::record::Task::Discharge, 40, 1, None);
        std::fs::write(&path, to_jsonl(&recs)).expect("write");

        let mut stages = Vec::new();
        let view = open_dataset(&path, &OpenOptions::default(), &mut |s, d, t| {
            stages.push((s.to_string(), d, t));
            true
        })
        .expect("open");
        assert_eq!(view.records().len(), 40);
        assert_eq!(view.splits.len(), 40);
        assert_eq!(stages.len(), 4);
        assert_eq!(stages[3], ("Done".to_string(), 3, 3));
        assert_eq!(view.records(), &recs[..]);

        let cancelled = open_dataset(&path, &OpenOptions::default(), &mut |_, d, _| d < 1);
        assert!(matches!(cancelled, Err(OpenError::Cancelled)));
    }
}
