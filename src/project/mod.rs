//! The persistence layer: a project folder (`project.ron`) naming its datasets, task, template,
//! split and model, written atomically so a crash never leaves a half-written project; the
//! evaluated outputs of its runs (`predictions`) and the clinicians' reviews of them (`reviews`);
//! the quality gates a registered model must pass (`gates`).

pub mod gates;
pub mod predictions;
pub mod reviews;

use crate::data::load::{DuplicateIds, LoadOptions, ReadLimits};
use crate::data::record::Task;
use crate::data::split::SplitSpec;
use crate::data::template::TemplateKind;
use crate::model::loading::{DeviceChoice, ModelSpec, Precision, TINY};
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const PROJECT_FILE: &str = "project.ron";

/// A dataset of the project; `path` is relative to the project folder unless absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub name: String,
    pub path: PathBuf,
    /// What loading does with a repeated record id (`refuse` unless the project says
    /// `duplicate_ids: rename`).
    #[serde(default, skip_serializing_if = "is_refuse")]
    pub duplicate_ids: DuplicateIds,
}

fn is_refuse(d: &DuplicateIds) -> bool {
    *d == DuplicateIds::Refuse
}

/// Where a project's model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ModelSource {
    /// The tiny model that ships with the program.
    #[default]
    Tiny,
    /// A Hugging Face folder or a `.gguf` file; relative to the project folder unless absolute.
    Path(PathBuf),
}

/// The model a project works with, as `project.ron` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelEntry {
    pub source: ModelSource,
    /// Load GGUF weights as f32 instead of keeping them quantized.
    pub dequantize: bool,
    /// Written as `--device` takes it: `"auto"`, `"cpu"` or `"cuda:N"`.
    #[serde(with = "device_text")]
    pub device: DeviceChoice,
    /// Written as `--dtype` takes it: `"auto"` (bf16 on a GPU, f32 on the CPU), `"f32"`, `"bf16"`.
    #[serde(with = "dtype_text")]
    pub dtype: Precision,
}

impl Default for ModelEntry {
    fn default() -> Self {
        Self {
            source: ModelSource::Tiny,
            dequantize: false,
            device: DeviceChoice::Auto,
            dtype: Precision::Auto,
        }
    }
}

impl ModelEntry {
    /// What to load; a relative path is taken from the working directory.
    pub fn spec(&self) -> ModelSpec {
        let mut spec = ModelSpec::new(match &self.source {
            ModelSource::Tiny => PathBuf::from(TINY),
            ModelSource::Path(p) => p.clone(),
        });
        spec.dequantize = self.dequantize;
        spec.device = self.device.clone();
        spec.precision = self.dtype;
        spec
    }
}

mod dtype_text {
    use crate::model::loading::Precision;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(dtype: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(dtype)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        let text = String::deserialize(d)?;
        Precision::parse(&text).map_err(|_| {
            D::Error::custom(format!(
                "dtype: expected \"auto\", \"f32\" or \"bf16\", got {text:?}"
            ))
        })
    }
}

mod device_text {
    use crate::model::loading::DeviceChoice;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(device: &DeviceChoice, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(device)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceChoice, D::Error> {
        let text = String::deserialize(d)?;
        DeviceChoice::parse(&text).map_err(|_| {
            D::Error::custom(format!(
                "device: expected \"auto\", \"cpu\" or \"cuda:N\", got {text:?}"
            ))
        })
    }
}

/// What `project.ron` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    pub task: Task,
    #[serde(default = "default_template")]
    pub template: TemplateKind,
    #[serde(default)]
    pub datasets: Vec<DatasetEntry>,
    #[serde(default)]
    pub split: SplitSpec,
    /// Older project files have none: they get the embedded tiny model.
    #[serde(default)]
    pub model: ModelEntry,
    /// The bounds on what reading its datasets holds.
    #[serde(default)]
    pub read_limits: ReadLimits,
    /// What a registered version must reach to be promoted to production.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<gates::Gate>,
    /// How a promotion compares the candidate with the version in production.
    #[serde(default, skip_serializing_if = "gates::RegistrySettings::is_default")]
    pub registry: gates::RegistrySettings,
}

fn default_template() -> TemplateKind {
    TemplateKind::ChatMl
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: could not serialise the project: {message}")]
    Serialise { path: PathBuf, message: String },
    #[error("{path}: field \"{field}\": {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

/// A project together with the folder it lives in.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenProject {
    pub dir: PathBuf,
    pub project: Project,
    /// What `project.ron` holds that Lab Lens does not know (ignored, perhaps misspelt):
    /// `project.ron: unknown field model.devcie (ignored)`.
    pub warnings: Vec<String>,
}

/// Parses RON text as `T`, with the path of each field `T` has no place for (`model.devcie`),
/// which would otherwise be dropped without a word.
pub fn from_ron<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
) -> Result<(T, Vec<String>), ron::error::SpannedError> {
    struct Noting<'n, T>(&'n mut Vec<String>, std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::DeserializeSeed<'de> for Noting<'_, T> {
        type Value = T;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            serde_ignored::deserialize(d, |path| self.0.push(path.to_string()))
        }
    }
    let mut unknown = Vec::new();
    let value = ron::Options::default()
        .from_str_seed(text, Noting(&mut unknown, std::marker::PhantomData))?;
    Ok((value, unknown))
}

impl OpenProject {
    /// Opens `path`, which may be the project folder or its `project.ron`.
    pub fn open(path: &Path) -> Result<OpenProject, ProjectError> {
        let file = if path.is_dir() {
            path.join(PROJECT_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ProjectError::Io {
            path: file.clone(),
            source,
        })?;
        let (project, unknown): (Project, _) =
            from_ron(&text).map_err(|e| ProjectError::Parse {
                path: file.clone(),
                line: e.span.start.line,
                col: e.span.start.col,
                message: e.code.to_string(),
            })?;
        if let Some(field) = project.read_limits.zero_field() {
            return Err(ProjectError::Invalid {
                path: file,
                field,
                message: "must be at least 1 (MiB)".into(),
            });
        }
        let ratios = project.split.ratios;
        if !SplitSpec::ratios_valid(&ratios) {
            return Err(ProjectError::Invalid {
                path: file,
                field: "split.ratios",
                message: format!(
                    "{ratios:?}: the train, validation and test ratios must be non-negative and \
                     sum to more than zero"
                ),
            });
        }
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let warnings = unknown
            .iter()
            .map(|field| format!("{name}: unknown field {field} (ignored)"))
            .collect();
        Ok(OpenProject {
            dir,
            project,
            warnings,
        })
    }

    /// Writes `project.ron` atomically.
    pub fn save(&self) -> Result<(), ProjectError> {
        let file = self.dir.join(PROJECT_FILE);
        let text = ron::ser::to_string_pretty(&self.project, ron::ser::PrettyConfig::default())
            .map_err(|e| ProjectError::Serialise {
                path: file.clone(),
                message: e.to_string(),
            })?;
        write_atomic(&file, format!("{text}\n").as_bytes())
            .map_err(|source| ProjectError::Io { path: file, source })
    }

    /// The project's model with its path as found on disk (relative to the project folder in
    /// the file).
    pub fn model(&self) -> ModelEntry {
        let mut entry = self.project.model.clone();
        if let ModelSource::Path(p) = &entry.source {
            entry.source = ModelSource::Path(self.dir.join(p));
        }
        entry
    }

    /// Makes `entry` the project's model, its path stored relative to the project folder where
    /// possible.
    pub fn set_model(&mut self, mut entry: ModelEntry) {
        if let ModelSource::Path(p) = &entry.source {
            entry.source = ModelSource::Path(relative_to(p, &self.dir));
        }
        self.project.model = entry;
    }

    /// Where a dataset entry's file is on disk.
    pub fn dataset_path(&self, entry: &DatasetEntry) -> PathBuf {
        if entry.path.is_absolute() {
            entry.path.clone()
        } else {
            self.dir.join(&entry.path)
        }
    }

    /// How the project loads the dataset file at `path`: as its entry says, if the project has
    /// one for that file.
    pub fn load_options(&self, path: &Path) -> LoadOptions {
        let entry = self
            .project
            .datasets
            .iter()
            .find(|e| self.dataset_path(e) == path);
        self.project.read_limits.apply(LoadOptions {
            duplicate_ids: entry.map(|e| e.duplicate_ids).unwrap_or_default(),
            ..LoadOptions::default()
        })
    }

    /// Adds a dataset by its path, stored relative to the project folder where possible.
    pub fn add_dataset(&mut self, path: &Path) -> &DatasetEntry {
        let stored = relative_to(path, &self.dir);
        if let Some(i) = self
            .project
            .datasets
            .iter()
            .position(|d| self.dataset_path(d) == self.dir.join(&stored))
        {
            return &self.project.datasets[i];
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".to_string());
        self.project.datasets.push(DatasetEntry {
            name,
            path: stored,
            duplicate_ids: DuplicateIds::Refuse,
        });
        &self.project.datasets[self.project.datasets.len() - 1]
    }
}

/// `path` expressed relative to `base` when both resolve on disk; otherwise `path` made absolute.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let (Ok(p), Ok(b)) = (path.canonicalize(), base.canonicalize()) else {
        return path.to_path_buf();
    };
    let pc: Vec<_> = p.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> OpenProject {
        OpenProject {
            dir: dir.to_path_buf(),
            project: Project {
                name: "t".into(),
                task: Task::Discharge,
                template: TemplateKind::ChatMl,
                datasets: vec![],
                split: SplitSpec::default(),
                model: ModelEntry::default(),
                read_limits: ReadLimits::default(),
                gates: Vec::new(),
                registry: gates::RegistrySettings::default(),
            },
            warnings: Vec::new(),
        }
    }

    #[test]
    fn save_then_open_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = sample(dir.path());
        let data = dir.path().join("data.jsonl");
        std::fs::write(&data, "").expect("write");
        p.add_dataset(&data);
        p.save().expect("save");
        let back = OpenProject::open(dir.path()).expect("open");
        assert_eq!(back.project, p.project);
        assert_eq!(back.project.datasets[0].path, PathBuf::from("data.jsonl"));
        assert_eq!(back.dataset_path(&back.project.datasets[0]), data);
    }

    #[test]
    fn parse_error_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(PROJECT_FILE);
        std::fs::write(&file, "(\n  name: \"x\",\n  task: Translation,\n)").expect("write");
        let err = OpenProject::open(&file).expect_err("bad task");
        let msg = err.to_string();
        assert!(msg.contains("project.ron:3:"), "{msg}");
    }

    #[test]
    fn split_ratios_that_cannot_split_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        for ratios in ["(-10.0, 60.0, 50.0)", "(0.0, 0.0, 0.0)"] {
            std::fs::write(
                dir.path().join(PROJECT_FILE),
                format!("(name: \"p\", task: discharge, split: (ratios: {ratios}, seed: 1))"),
            )
            .expect("write");
            let err = OpenProject::open(dir.path()).expect_err(ratios).to_string();
            assert!(err.contains("project.ron: field \"split.ratios\""), "{err}");
            assert!(err.contains("non-negative"), "{err}");
        }
    }

    #[test]
    fn a_project_file_without_a_model_gets_the_tiny_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(PROJECT_FILE),
            "(name: \"old\", task: discharge)",
        )
        .expect("write");
        let p = OpenProject::open(dir.path()).expect("open");
        assert_eq!(p.project.model.source, ModelSource::Tiny);
        let spec = p.model().spec();
        assert_eq!(spec.path, PathBuf::from(TINY));
        assert_eq!(spec.device, DeviceChoice::Auto);
        assert!(!spec.dequantize);
    }

    #[test]
    fn a_model_file_is_saved_relative_with_its_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gguf = dir.path().join("models").join("m.gguf");
        std::fs::create_dir_all(gguf.parent().expect("parent")).expect("mkdir");
        std::fs::write(&gguf, "").expect("write");
        let mut p = sample(dir.path());
        p.set_model(ModelEntry {
            source: ModelSource::Path(gguf.clone()),
            dequantize: true,
            device: DeviceChoice::Cuda(1),
            dtype: Precision::Bf16,
        });
        p.save().expect("save");
        let text = std::fs::read_to_string(dir.path().join(PROJECT_FILE)).expect("read");
        assert!(text.contains("Path(\"models/m.gguf\")"), "{text}");
        assert!(text.contains("device: \"cuda:1\""), "{text}");
        assert!(text.contains("dtype: \"bf16\""), "{text}");
        let back = OpenProject::open(dir.path()).expect("open");
        let spec = back.model().spec();
        assert_eq!(spec.path, gguf);
        assert_eq!(spec.device, DeviceChoice::Cuda(1));
        assert_eq!(spec.precision, Precision::Bf16);
        assert!(spec.dequantize);
    }

    #[test]
    fn a_bad_model_device_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(PROJECT_FILE);
        std::fs::write(
            &file,
            "(\n  name: \"x\",\n  task: discharge,\n  model: (device: \"gpu\"),\n)",
        )
        .expect("write");
        let msg = OpenProject::open(&file)
            .expect_err("bad device")
            .to_string();
        assert!(msg.contains("project.ron:4:"), "{msg}");
        assert!(msg.contains("\"gpu\""), "{msg}");
    }

    #[test]
    fn unknown_fields_are_named_and_the_rest_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(PROJECT_FILE),
            "(name: \"x\", task: qa, split: (ratios: (1.0, 1.0, 0.0), seed: 3, sead: 4), modle: (source: Tiny),\n\
             datasets: [(name: \"d\", path: \"d.jsonl\", duplicate_idz: rename)])",
        )
        .expect("write");
        let p = OpenProject::open(dir.path()).expect("open");
        assert_eq!((p.project.task, p.project.split.seed), (Task::Qa, 3));
        assert_eq!(
            p.warnings,
            [
                "project.ron: unknown field split.sead (ignored)",
                "project.ron: unknown field modle (ignored)",
                "project.ron: unknown field datasets.0.duplicate_idz (ignored)",
            ]
        );
        assert!(sample(dir.path()).warnings.is_empty());
    }

    #[test]
    fn read_limits_of_the_project_bound_its_loads_and_zero_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(PROJECT_FILE);
        std::fs::write(
            &file,
            "(name: \"x\", task: qa, read_limits: (max_field_mb: 2))",
        )
        .expect("write");
        let p = OpenProject::open(dir.path()).expect("open");
        let options = p.load_options(&dir.path().join("d.jsonl"));
        assert_eq!(options.max_field_bytes, 2 << 20);
        assert_eq!(
            options.max_file_bytes,
            ReadLimits::default().max_file_mb << 20
        );
        std::fs::write(
            &file,
            "(name: \"x\", task: qa, read_limits: (max_file_mb: 0))",
        )
        .expect("write");
        let msg = OpenProject::open(dir.path()).expect_err("zero").to_string();
        assert!(msg.contains("read_limits.max_file_mb"), "{msg}");
    }

    #[test]
    fn relative_paths_climb_out_of_the_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proj = dir.path().join("projects").join("demo");
        std::fs::create_dir_all(&proj).expect("mkdir");
        let data = dir.path().join("sample_data").join("d.jsonl");
        std::fs::create_dir_all(data.parent().expect("parent")).expect("mkdir");
        std::fs::write(&data, "").expect("write");
        assert_eq!(
            relative_to(&data, &proj),
            PathBuf::from("../../sample_data/d.jsonl")
        );
    }
}
