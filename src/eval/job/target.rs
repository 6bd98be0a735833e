//! What an evaluation runs, and the bias audit and explanations with it: the base model or a
//! run's adapter resolved into the model to load, its context and the dataset, and the model in
//! use, loaded for the job or lent by a caller that keeps one loaded.

use super::BASE_DIR;
use crate::data::load::load_path;
use crate::data::record::{Record, Split};
use crate::data::split::{assign_splits, partition};
use crate::job::JobError;
use crate::model::adapters::{self, load_peft};
use crate::model::loading::{DeviceChoice, LoadedModel, ModelSpec, load};
use crate::project::OpenProject;
use crate::train::run::{ADAPTER_DIR, CONFIG_FILE, RunDir};
use crate::train::session::read_config;
use std::path::{Path, PathBuf};

/// Which model to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The project's model without an adapter.
    Base,
    /// A run's final adapter (or its last checkpoint's) on the run's model.
    Run(String),
}

/// Where a target's model, adapter and dataset are: what evaluation, bias audits and
/// explanations of a run (or of the base model) all start from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The run's folder, or the project's `base/`: where its reports go.
    pub out_dir: PathBuf,
    pub spec: ModelSpec,
    pub adapter: Option<PathBuf>,
    pub dataset_path: PathBuf,
}

/// Resolves `target` in `project`; `extra_len` positions beyond the longest training sequence
/// are left for generation. `dataset` overrides the run's (or, for the base model, the one
/// named like the project's task).
pub fn resolve(
    project: &OpenProject,
    target: &Target,
    dataset: Option<&str>,
    extra_len: usize,
) -> Result<Resolved, JobError> {
    let (out_dir, spec, adapter, dataset) = match target {
        Target::Base => {
            let entry = project.model();
            let dataset = dataset.map(str::to_string).unwrap_or_else(|| {
                let task = project.project.task.name();
                let named = project.project.datasets.iter().find(|d| d.name == task);
                named
                    .or(project.project.datasets.first())
                    .map(|d| d.name.clone())
                    .unwrap_or_default()
            });
            let mut spec = entry.spec();
            spec.max_len = spec.max_len.max(1024) + extra_len;
            (project.dir.join(BASE_DIR), spec, None, dataset)
        }
        Target::Run(id) => {
            let run = RunDir::open(&project.dir, id).map_err(|e| JobError::Usage(e.to_string()))?;
            let cfg = read_config(&run.dir.join(CONFIG_FILE))
                .map_err(|e| JobError::Usage(e.to_string()))?;
            let mut spec = ModelSpec::new(&cfg.model);
            spec.dequantize = cfg.dequantize;
            spec.device =
                DeviceChoice::parse(&cfg.device).map_err(|e| JobError::Usage(e.to_string()))?;
            spec.max_len = cfg.max_seq_len + extra_len;
            let adapter = match run.dir.join(ADAPTER_DIR) {
                final_dir if final_dir.is_dir() => final_dir,
                _ => match run.checkpoints().last() {
                    Some(&step) => run.checkpoint_dir(step),
                    None => {
                        return Err(JobError::Usage(format!(
                            "{}: the run has no adapter yet (no final adapter, no checkpoint)",
                            run.dir.display()
                        )));
                    }
                },
            };
            let dataset = dataset.map(str::to_string).unwrap_or(cfg.dataset);
            (run.dir.clone(), spec, Some(adapter), dataset)
        }
    };
    let entry = project
        .project
        .datasets
        .iter()
        .find(|d| d.name == dataset)
        .ok_or_else(|| {
            JobError::Usage(format!(
                "{}: no dataset {dataset:?} in the project",
                project.dir.display()
            ))
        })?;
    Ok(Resolved {
        out_dir,
        spec,
        adapter,
        dataset_path: project.dataset_path(entry),
    })
}

/// The model a job runs: loaded for it, or lent by a caller that keeps one loaded (the GUI's
/// engine) and given back as it was, without the job's adapter and with its own context.
pub enum ModelInUse<'a> {
    Loaded(Box<LoadedModel>),
    Lent {
        model: &'a mut LoadedModel,
        /// The length of its RoPE tables when it was lent.
        context: usize,
    },
}

impl ModelInUse<'_> {
    /// Whether the caller's model was used instead of loading one.
    pub fn is_lent(&self) -> bool {
        matches!(self, ModelInUse::Lent { .. })
    }
}

impl std::ops::Deref for ModelInUse<'_> {
    type Target = LoadedModel;

    fn deref(&self) -> &LoadedModel {
        match self {
            ModelInUse::Loaded(model) => model,
            ModelInUse::Lent { model, .. } => model,
        }
    }
}

impl Drop for ModelInUse<'_> {
    fn drop(&mut self) {
        if let ModelInUse::Lent { model, context } = self {
            adapters::remove(&mut model.llama);
            // Tables of the length it had were built once already; building them again fails
            // only where memory has run out, and then the next load builds them.
            model.llama.set_context(*context).ok();
        }
    }
}

/// The resolved model with its adapter: `kept` when it holds the same weights (its context set
/// to the resolved length, so that prompts are fitted as a fresh load would fit them), else
/// loaded.
pub fn acquire<'a>(
    resolved: &Resolved,
    kept: Option<&'a mut LoadedModel>,
) -> Result<ModelInUse<'a>, JobError> {
    let mut in_use = match kept {
        Some(model) if model.spec.same_weights(&resolved.spec) => {
            let context = model.llama.set_context(resolved.spec.max_len)?;
            ModelInUse::Lent { model, context }
        }
        _ => ModelInUse::Loaded(Box::new(
            load(&resolved.spec).map_err(|e| JobError::Usage(e.to_string()))?,
        )),
    };
    if let Some(dir) = &resolved.adapter {
        let llama = match &mut in_use {
            ModelInUse::Loaded(model) => &mut model.llama,
            ModelInUse::Lent { model, .. } => &mut model.llama,
        };
        load_peft(llama, dir).map_err(|e| JobError::Usage(e.to_string()))?;
    }
    Ok(in_use)
}

/// The records of `split` of the dataset at `path`, split as the project splits, and the
/// dataset's hash and load issues.
pub fn split_records(
    project: &OpenProject,
    path: &Path,
    split: Split,
) -> Result<(Vec<Record>, String, usize), JobError> {
    let loaded =
        load_path(path, &project.load_options(path)).map_err(|e| JobError::Usage(e.to_string()))?;
    let splits = assign_splits(&loaded.records, &project.project.split);
    let [train, val, test] = partition(&loaded.records, &splits);
    let records = match split {
        Split::Train => train,
        Split::Validation => val,
        Split::Test => test,
    };
    Ok((records, loaded.sha256, loaded.issues.len()))
}
