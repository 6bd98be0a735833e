//! A registered version as `version-N/version.json` records it: where it came from (the run, the
//! base model, the data, the training configuration), what it measured (the evaluation's corpus
//! metrics with their intervals, safety flags, the bias verdict), the gate results when it was
//! registered, and every file of the folder with its SHA-256, so that a changed file is found.

use super::RegisteredModel;
use super::files::{MIB, json_error, read_bounded};
use super::gates::{GateResult, Measured, MetricDef, Source};
use crate::eval::bootstrap::Interval;
use crate::job::JobError;
use crate::store::sha256_file;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const VERSION_FILE: &str = "version.json";
/// The layout of version.json this program writes and reads.
pub const FORMAT: u32 = 1;
const MAX_VERSION_BYTES: u64 = 4 * MIB;

/// The base model a version's adapter applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// As the run's configuration names it: `tiny`, a Hugging Face folder or a `.gguf` file.
    pub source: String,
    /// Where it was found when the version was registered.
    pub path: Option<PathBuf>,
    /// Of the file, when the model is one file (a folder or the embedded model has none).
    pub sha256: Option<String>,
}

/// The data the version was trained on and evaluated with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetIdentity {
    /// The project dataset the run trained on, by name.
    pub name: String,
    /// Of the dataset file the evaluation read.
    pub sha256: Option<String>,
    /// The project's split by patient: train, validation and test percentages, and the seed.
    pub split_ratios: [f64; 3],
    pub split_seed: u64,
    /// The split the evaluation ran on, and how many of its records.
    pub evaluated_split: String,
    pub evaluated_records: usize,
}

/// The evaluation's summary: eval.json's `corpus` object as it was, every metric with its 95%
/// interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub split: String,
    pub n: usize,
    pub task: Option<String>,
    pub corpus: serde_json::Value,
}

/// What the bias audit of the run's predictions concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiasVerdict {
    /// Whether the run had a bias.json; without one the verdict is "not audited".
    pub audited: bool,
    pub metric: Option<String>,
    pub threshold: Option<f64>,
    /// Slices audited.
    pub slices: usize,
    /// The flagged slices: `ethnicity Hispanic`, `gender F × age_group 65+`.
    pub flagged: Vec<String>,
}

impl BiasVerdict {
    pub fn describe(&self) -> String {
        match (self.audited, self.flagged.is_empty()) {
            (false, _) => "not audited".into(),
            (true, true) => format!("no flagged slice of {}", self.slices),
            (true, false) => format!(
                "{} flagged of {}: {}",
                self.flagged.len(),
                self.slices,
                self.flagged.join("; ")
            ),
        }
    }
}

/// One file of the version folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the version folder, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `version.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub format: u32,
    pub model: String,
    pub version: u32,
    /// The run id it was registered from.
    pub run: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub user: String,
    pub note: Option<String>,
    pub lablens_version: String,
    pub base_model: BaseModel,
    pub dataset: DatasetIdentity,
    /// The run's training configuration (config.ron) as JSON.
    pub training: serde_json::Value,
    pub eval: EvalRecord,
    /// Safety flags per output over the evaluated records, with its 95% interval.
    pub safety_flags_per_example: Option<Interval>,
    pub bias: BiasVerdict,
    /// The project's gates evaluated when the version was registered.
    pub gates: Vec<GateResult>,
    pub files: Vec<FileEntry>,
}

impl VersionRecord {
    /// The version's value of a gate's metric; `None` when it was not measured.
    pub fn measure(&self, metric: &MetricDef) -> Option<Measured> {
        let interval = |i: Interval| Measured {
            value: i.value,
            interval: Some([i.low, i.high]),
        };
        match metric.source {
            Source::Corpus(path) => {
                let found = path
                    .iter()
                    .try_fold(&self.eval.corpus, |v, key| v.get(key))?;
                serde_json::from_value::<Interval>(found.clone())
                    .ok()
                    .map(interval)
            }
            Source::SafetyFlags => self.safety_flags_per_example.map(interval),
            Source::FlaggedSlices => self.bias.audited.then_some(Measured {
                value: self.bias.flagged.len() as f64,
                interval: None,
            }),
        }
    }

    /// Gates passed, of those recorded.
    pub fn gates_passed(&self) -> (usize, usize) {
        let passed = self.gates.iter().filter(|g| g.passed()).count();
        (passed, self.gates.len())
    }
}

/// Reads `version.json` of version `version`, refusing one that does not describe its folder.
pub fn read_version(model: &RegisteredModel, version: u32) -> Result<VersionRecord, JobError> {
    let path = model.version_dir(version).join(VERSION_FILE);
    let bytes = read_bounded(&path, MAX_VERSION_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| JobError::file(&path, format!("not UTF-8 text ({e})")))?;
    let record: VersionRecord =
        serde_json::from_str(&text).map_err(|e| json_error(&path, None, &text, &e))?;
    let wrong = |field: &str, message: String| {
        JobError::file(
            &path,
            format!("field {field:?}: {message}; it was edited by hand"),
        )
    };
    if record.format != FORMAT {
        return Err(wrong(
            "format",
            format!(
                "{} is not the layout {FORMAT} this program reads",
                record.format
            ),
        ));
    }
    if record.version != version {
        return Err(wrong(
            "version",
            format!(
                "says {}, but the folder is version-{version}",
                record.version
            ),
        ));
    }
    if record.model != model.name {
        return Err(wrong(
            "model",
            format!(
                "says {:?}, but the folder is {:?}'s",
                record.model, model.name
            ),
        ));
    }
    if let Some(f) = record.files.iter().find(|f| !is_plain_relative(&f.path)) {
        return Err(wrong(
            "files",
            format!("{:?} is not a path inside the version folder", f.path),
        ));
    }
    Ok(record)
}

/// A relative path of plain names (no `..`, no root): what `files` may name.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The files of a version folder that differ from its record (missing, another size, other
/// bytes), each in a sentence; none when the version is as it was registered.
pub fn verify_files(dir: &Path, record: &VersionRecord) -> Vec<String> {
    record
        .files
        .iter()
        .filter_map(|f| {
            let path = dir.join(&f.path);
            match sha256_file(&path) {
                Err(e) => Some(format!("{}: {e}", path.display())),
                Ok((bytes, sha)) if bytes != f.bytes || sha != f.sha256 => Some(format!(
                    "{}: changed since it was registered ({bytes} bytes, sha256 {sha}; the \
                     record says {} bytes, sha256 {})",
                    path.display(),
                    f.bytes,
                    f.sha256
                )),
                Ok(_) => None,
            }
        })
        .collect()
}
