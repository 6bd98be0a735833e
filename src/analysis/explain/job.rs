//! Explaining a record of a project: the run's model and adapter (or the base model) and the
//! dataset resolved as evaluation resolves them, the model's own output taken from the run's
//! `predictions.jsonl` (generated greedily when the record is not there), and the result merged
//! into `explain/<record>.json` under the run's folder, written atomically.

use super::methods::Explainer;
use super::{ExplainSettings, Explanation, Method, SectionMean, SplitSections, Targeted};
use crate::data::load::load_path;
use crate::data::record::{Record, Split};
use crate::eval::job::target::{Resolved, Target, acquire, resolve, split_records};
use crate::job::{Job, JobError, Progress};
use crate::model::loading::LoadedModel;
use crate::project::OpenProject;
use crate::project::predictions::{PREDICTIONS_FILE, parse_predictions};
use crate::store::write_atomic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The folder of a run (or of `base/`) that holds explanations.
pub const EXPLAIN_DIR: &str = "explain";

/// Room left after the input for the answer: a whole discharge note and its explanation must
/// fit even where the run trained on shorter sequences (capped by the model's context).
const ANSWER_ROOM: usize = 2048;

/// One record of a project to explain.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub project_dir: PathBuf,
    pub target: Target,
    pub record: String,
    pub settings: ExplainSettings,
    /// A dataset of the project by name; default: the run's.
    pub dataset: Option<String>,
}

/// Section importance averaged over a split.
#[derive(Debug, Clone)]
pub struct SplitRequest {
    pub project_dir: PathBuf,
    pub target: Target,
    pub split: Split,
    pub limit: Option<usize>,
    pub settings: ExplainSettings,
    pub dataset: Option<String>,
}

fn usage(e: impl std::fmt::Display) -> JobError {
    JobError::Usage(e.to_string())
}

/// `base` or the run's id.
fn model_name(target: &Target) -> String {
    match target {
        Target::Base => "base".into(),
        Target::Run(id) => id.clone(),
    }
}

/// Where the explanation of `record` lives under a run's (or base's) folder; characters that
/// cannot be in a file name become `_`.
pub fn explanation_path(out_dir: &Path, record: &str) -> PathBuf {
    let name: String = record
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    out_dir.join(EXPLAIN_DIR).join(format!("{name}.json"))
}

/// The explanation kept at `path`; `None` when there is none yet.
pub fn read_explanation(path: &Path) -> Result<Option<Explanation>, JobError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| JobError::file(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JobError::file(path, e)),
    }
}

fn open(
    project_dir: &Path,
    target: &Target,
    dataset: Option<&str>,
) -> Result<(OpenProject, Resolved), JobError> {
    let project = OpenProject::open(project_dir).map_err(|e| usage(format!("--project: {e}")))?;
    let resolved = resolve(&project, target, dataset, ANSWER_ROOM).map_err(usage)?;
    Ok((project, resolved))
}

/// The model's outputs by record id, from the run's predictions.jsonl (none when missing).
fn known_outputs(out_dir: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(out_dir.join(PREDICTIONS_FILE)).unwrap_or_default();
    parse_predictions(&bytes)
        .0
        .into_iter()
        .map(|r| (r.id, r.prediction))
        .collect()
}

/// The model's output for `record`: the known one, else generated greedily.
fn output_for(
    model: &LoadedModel,
    record: &Record,
    known: &BTreeMap<String, String>,
    settings: &ExplainSettings,
    cancelled: &dyn Fn() -> bool,
) -> Result<(String, &'static str), JobError> {
    if let Some(text) = known.get(&record.id) {
        return Ok((text.clone(), "predictions.jsonl"));
    }
    let explainer = explainer_for(model, record, "", settings, cancelled);
    Ok((explainer.generate(&record.input)?, "generated"))
}

/// An explainer of `record` whose model gave `output` for it.
fn explainer_for<'a>(
    model: &'a LoadedModel,
    record: &'a Record,
    output: &'a str,
    settings: &'a ExplainSettings,
    cancelled: &'a dyn Fn() -> bool,
) -> Explainer<'a> {
    Explainer {
        model,
        task: Some(record.task),
        input: &record.input,
        reference: &record.target,
        output,
        settings,
        cancelled,
    }
}

/// Explains one record with the request's method and merges the result into its file; `kept`, a
/// model the caller keeps loaded, is used when it holds the target's weights.
pub fn explain_record(
    request: &ExplainRequest,
    kept: Option<&mut LoadedModel>,
    job: &mut Job,
) -> Result<(Explanation, PathBuf), JobError> {
    let control = job.control();
    let cancelled = &|| control.is_stopping();
    let (project, resolved) = open(
        &request.project_dir,
        &request.target,
        request.dataset.as_deref(),
    )?;
    let path = &resolved.dataset_path;
    let loaded = load_path(path, &project.load_options(path)).map_err(usage)?;
    let record = loaded
        .records
        .into_iter()
        .find(|r| r.id == request.record)
        .ok_or_else(|| {
            usage(format!(
                "{}: no record with id {:?}",
                path.display(),
                request.record
            ))
        })?;
    job.progress("loading the model", 0, 1);
    let model = acquire(&resolved, kept).map_err(|e| JobError::Model(e.to_string()))?;
    let (output, source) = output_for(
        &model,
        &record,
        &known_outputs(&resolved.out_dir),
        &request.settings,
        cancelled,
    )?;
    let file = explanation_path(&resolved.out_dir, &record.id);
    let mut explanation = read_explanation(&file)?
        .filter(|e| e.input == record.input && e.output == output)
        .unwrap_or_default();
    explanation.record = record.id.clone();
    explanation.model = model_name(&request.target);
    explanation.input = record.input.clone();
    explanation.reference = record.target.clone();
    explanation.output = output.clone();
    explanation.output_source = source.into();
    let explainer = explainer_for(&model, &record, &output, &request.settings, cancelled);
    run_method(&explainer, &mut explanation, job)?;
    let json = serde_json::to_vec_pretty(&explanation).map_err(|e| JobError::file(&file, e))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| JobError::file(dir, e))?;
    }
    write_atomic(&file, &json).map_err(|e| JobError::file(&file, e))?;
    Ok((explanation, file))
}

fn targeted<T>(result: (T, String), target: &str, started: Instant) -> Targeted<T> {
    Targeted {
        target: target.to_string(),
        target_text: result.1,
        elapsed_s: started.elapsed().as_secs_f64(),
        result: result.0,
    }
}

/// Runs the settings' method and stores its result in `explanation`.
fn run_method(
    explainer: &Explainer,
    explanation: &mut Explanation,
    job: &mut Job,
) -> Result<(), JobError> {
    let started = Instant::now();
    let target = &explainer.settings.target.name();
    match explainer.settings.method {
        Method::Lime => explanation.lime = Some(targeted(explainer.lime(job)?, target, started)),
        Method::Saliency => {
            job.progress("gradient x input", 0, 1);
            explanation.saliency = Some(targeted(explainer.saliency()?, target, started));
        }
        Method::Sections => {
            explanation.sections = Some(targeted(explainer.sections(job)?, target, started));
        }
        Method::Length => {
            explanation.length = Some(targeted(explainer.length(job)?, target, started));
        }
    }
    Ok(())
}

/// Section importance for every record of a split (up to `limit`), averaged per section kind;
/// written to `explain/sections-<split>.json`; `kept` as for [`explain_record`].
pub fn explain_split(
    request: &SplitRequest,
    kept: Option<&mut LoadedModel>,
    job: &mut Job,
) -> Result<(SplitSections, PathBuf), JobError> {
    let control = job.control();
    let cancelled = &|| control.is_stopping();
    let (project, resolved) = open(
        &request.project_dir,
        &request.target,
        request.dataset.as_deref(),
    )?;
    let (mut records, _, _) =
        split_records(&project, &resolved.dataset_path, request.split).map_err(usage)?;
    if let Some(n) = request.limit {
        records.truncate(n);
    }
    if records.is_empty() {
        return Err(usage(format!(
            "{}: the {} split has no records",
            resolved.dataset_path.display(),
            request.split.name()
        )));
    }
    let model = acquire(&resolved, kept).map_err(|e| JobError::Model(e.to_string()))?;
    let known = known_outputs(&resolved.out_dir);
    let mut sums: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    let mut explained = 0;
    for (k, record) in records.iter().enumerate() {
        job.step("records", k, records.len())?;
        let (output, _) = output_for(&model, record, &known, &request.settings, cancelled)?;
        let explainer = explainer_for(&model, record, &output, &request.settings, cancelled);
        // A record without sections (or with an empty output) has nothing to add.
        let mut quiet = |_: &Progress| {};
        let result = match explainer.sections(&mut Job::new(control, &mut quiet)) {
            Ok((r, _)) => r,
            Err(JobError::Usage(_)) => continue,
            Err(e) => return Err(e),
        };
        explained += 1;
        for s in result.sections {
            let entry = sums.entry(s.section).or_default();
            entry.0 += 1;
            entry.1 += s.loglik_change;
            entry.2 += s.rouge_l_change;
        }
    }
    let mut sections: Vec<SectionMean> = sums
        .into_iter()
        .map(|(section, (n, ll, r))| SectionMean {
            section,
            n,
            loglik_change: ll / n as f64,
            rouge_l_change: r / n as f64,
        })
        .collect();
    // Most sensitive first: removing it lowers the target's likelihood most.
    sections.sort_by(|a, b| a.loglik_change.total_cmp(&b.loglik_change));
    let report = SplitSections {
        model: model_name(&request.target),
        split: request.split.name().into(),
        records: explained,
        target: request.settings.target.name(),
        sections,
    };
    let file = resolved
        .out_dir
        .join(EXPLAIN_DIR)
        .join(format!("sections-{}.json", request.split.name()));
    let json = serde_json::to_vec_pretty(&report).map_err(|e| JobError::file(&file, e))?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| JobError::file(dir, e))?;
    }
    write_atomic(&file, &json).map_err(|e| JobError::file(&file, e))?;
    Ok((report, file))
}
