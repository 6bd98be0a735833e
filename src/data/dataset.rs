//! Opening a dataset the way every front end does: load, validate and split in one call with
//! stage progress, and writing records back out as JSONL.

use super::load::{LoadOptions, LoadedDataset, load_path};
use super::record::{Record, Split};
use super::split::{SplitSpec, assign_splits};
use super::validate::{Limits, ValidationReport, validate};
use crate::job::{Job, JobError};
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

/// Loads, validates and splits `path`, reporting each of the three stages as it starts; a stop
/// is seen between them.
pub fn open_dataset(
    path: &Path,
    options: &OpenOptions,
    job: &mut Job,
) -> Result<DatasetView, JobError> {
    let mut step = |stage: &str, done: u64| {
        job.progress(stage, done, 3);
        if job.is_stopping() {
            Err(JobError::Cancelled {
                done: done as usize,
                total: 3,
            })
        } else {
            Ok(())
        }
    };
    step("Loading", 0)?;
    let loaded = load_path(path, &options.load).map_err(|e| JobError::Usage(e.to_string()))?;
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
    use crate::job::{Control, Progress};

    #[test]
    fn open_reports_stages_and_can_be_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.jsonl");
        let recs = crate::data::synth::generate(crate::data::record::Task::Discharge, 40, 1, None);
        std::fs::write(&path, to_jsonl(&recs)).expect("write");

        let mut stages = Vec::new();
        let mut seen = |p: &Progress| stages.push((p.stage.clone(), p.done, p.total));
        let view = open_dataset(
            &path,
            &OpenOptions::default(),
            &mut Job::unstopped(&mut seen),
        )
        .expect("open");
        assert_eq!(view.records().len(), 40);
        assert_eq!(view.splits.len(), 40);
        assert_eq!(stages.len(), 4);
        assert_eq!(stages[3], ("Done".to_string(), 3, 3));
        assert_eq!(view.records(), &recs[..]);

        let control = Control::new();
        let mut stop_after_first = |p: &Progress| {
            if p.done >= 1 {
                control.stop();
            }
        };
        let mut job = Job::new(&control, &mut stop_after_first);
        let cancelled = open_dataset(&path, &OpenOptions::default(), &mut job);
        assert!(matches!(cancelled, Err(JobError::Cancelled { .. })));
    }
}
