//! `registry add`: a run's final adapter and reports registered as the next version of a model.
//! The run must have its final adapter and an evaluation made with that adapter; what it
//! brings is checked before anything is written. The version folder is filled under a hidden
//! name while the model's lock is held, and renamed to `version-N` once whole: N is one more
//! than the highest version, and a folder already there takes the next number.

use super::RegisteredModel;
use super::files::{
    MAX_BIAS_BYTES, MAX_EVAL_BYTES, MAX_PREDICTIONS_BYTES, MIB, json_error, link_or_copy,
    now_rfc3339, read_bounded, read_text, user,
};
use super::gates::{CheckedGate, check_gates, evaluate};
use super::version::{
    BaseModel, BiasVerdict, DatasetIdentity, EvalRecord, FORMAT, FileEntry, VERSION_FILE,
    VersionRecord,
};
use crate::analysis::bias::BIAS_FILE;
use crate::eval::bootstrap::{Interval, interval, mean_of};
use crate::eval::job::{EVAL_FILE, PREDICTIONS_FILE};
use crate::job::JobError;
use crate::model::loading::TINY;
use crate::project::predictions::parse_predictions;
use crate::project::{OpenProject, PROJECT_FILE, from_ron};
use crate::store::sha256_file;
use crate::store::write_atomic;
use crate::train::config::TrainConfig;
use crate::train::run::{ADAPTER_DIR, CONFIG_FILE, RunDir};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

const MAX_CONFIG_BYTES: u64 = MIB;
/// The adapter's weights: what eval.json's `adapter_sha256` is the hash of.
const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Where a registration fills the version folder before it takes its number.
const STAGING_DIR: &str = ".version.partial";

/// What a registration made.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub dir: PathBuf,
    pub record: VersionRecord,
    /// What is worth saying: a lock taken over from a process that died, a base model not found.
    pub notes: Vec<String>,
}

/// What eval.json says that a version keeps.
struct EvalFile {
    record: EvalRecord,
    data_sha256: Option<String>,
    adapter_sha256: Option<String>,
    model_sha256: Option<String>,
}

/// The run's files a version is made of, read and checked.
struct RunReports {
    run: RunDir,
    config: TrainConfig,
    eval: EvalFile,
    safety: Option<Interval>,
    bias: BiasVerdict,
    /// Each file to place: where it is, and its path in the version folder.
    files: Vec<(PathBuf, String)>,
}

/// Registers run `run` of `project` as the next version of `model`.
pub fn register(
    project: &OpenProject,
    model: &RegisteredModel,
    run: &str,
    note: Option<&str>,
) -> Result<Registered, JobError> {
    let gates = check_gates(&project.dir.join(PROJECT_FILE), &project.project.gates)?;
    let reports = read_run(project, run)?;
    let mut notes = Vec::new();
    let base = base_model(&reports.config.model, &project.dir, &mut notes)?;
    if let (Some(ours), Some(eval)) = (&base.sha256, &reports.eval.model_sha256)
        && ours != eval
    {
        return Err(JobError::Usage(format!(
            "{}: the base model {} changed since the evaluation (sha256 {ours}, eval.json says \
             {eval}); run `lablens eval --project {} --run {}` again",
            reports.run.dir.display(),
            base.source,
            project.dir.display(),
            reports.run.id
        )));
    }
    let lock = model.lock("registry add")?;
    notes.extend(lock.took_over.clone());
    let staging = model.dir.join(STAGING_DIR);
    // Only the lock's holder fills it: one left here is a killed registration's.
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| JobError::file(&staging, e))?;
    }
    let made = (|| {
        let files = stage(&staging, &reports)?;
        check_adapter(&files, &reports, project)?;
        let record = VersionRecord {
            format: FORMAT,
            model: model.name.clone(),
            version: 0,
            run: reports.run.id.clone(),
            created: now_rfc3339(),
            user: user(),
            note: note.map(str::to_string),
            lablens_version: env!("CARGO_PKG_VERSION").into(),
            base_model: base,
            dataset: DatasetIdentity {
                name: reports.config.dataset.clone(),
                sha256: reports.eval.data_sha256.clone(),
                split_ratios: project.project.split.ratios,
                split_seed: project.project.split.seed,
                evaluated_split: reports.eval.record.split.clone(),
                evaluated_records: reports.eval.record.n,
            },
            training: serde_json::to_value(&reports.config)
                .map_err(|e| JobError::file(&reports.run.dir.join(CONFIG_FILE), e))?,
            eval: reports.eval.record.clone(),
            safety_flags_per_example: reports.safety,
            bias: reports.bias.clone(),
            gates: Vec::new(),
            files,
        };
        publish(model, &staging, record, &gates)
    })();
    if made.is_err() {
        std::fs::remove_dir_all(&staging).ok();
    }
    let (dir, record) = made?;
    drop(lock);
    Ok(Registered { dir, record, notes })
}

/// Gives the staged folder the next free number: writes its version.json, then renames it.
fn publish(
    model: &RegisteredModel,
    staging: &Path,
    mut record: VersionRecord,
    gates: &[CheckedGate],
) -> Result<(PathBuf, VersionRecord), JobError> {
    record.gates = evaluate(gates, |m| record.measure(m));
    let mut version = model.versions().last().map_or(1, |v| v + 1);
    loop {
        let target = model.version_dir(version);
        if target.exists() {
            version += 1;
            continue;
        }
        record.version = version;
        let path = staging.join(VERSION_FILE);
        let json = serde_json::to_vec_pretty(&record).map_err(|e| JobError::file(&path, e))?;
        write_atomic(&path, &json).map_err(|e| JobError::file(&path, e))?;
        match std::fs::rename(staging, &target) {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(&model.dir) {
                    d.sync_all().ok();
                }
                return Ok((target, record));
            }
            // Made since it was looked for, by something that does not take the lock.
            Err(_) if target.exists() => version += 1,
            Err(e) => return Err(JobError::file(&target, e)),
        }
    }
}

/// Places the run's files in the staging folder and hashes each.
fn stage(staging: &Path, reports: &RunReports) -> Result<Vec<FileEntry>, JobError> {
    std::fs::create_dir_all(staging.join(ADAPTER_DIR)).map_err(|e| JobError::file(staging, e))?;
    let mut entries = Vec::new();
    for (from, rel) in &reports.files {
        let to = staging.join(rel);
        link_or_copy(from, &to).map_err(|e| JobError::file(&to, e))?;
        let (bytes, sha256) = sha256_file(&to).map_err(|e| JobError::file(&to, e))?;
        entries.push(FileEntry {
            path: rel.clone(),
            bytes,
            sha256,
        });
    }
    for dir in [staging.join(ADAPTER_DIR), staging.to_path_buf()] {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| JobError::file(&dir, e))?;
    }
    Ok(entries)
}

/// Refuses an evaluation made with another adapter than the one registered.
fn check_adapter(
    files: &[FileEntry],
    reports: &RunReports,
    project: &OpenProject,
) -> Result<(), JobError> {
    let weights = format!("{ADAPTER_DIR}/{ADAPTER_WEIGHTS}");
    let ours = files.iter().find(|f| f.path == weights).map(|f| &f.sha256);
    match (ours, &reports.eval.adapter_sha256) {
        (Some(ours), Some(evaluated)) if ours != evaluated => Err(JobError::Usage(format!(
            "{}: eval.json was made with another adapter (sha256 {evaluated}) than the run's \
             final one (sha256 {ours}); run `lablens eval --project {} --run {}` again",
            reports.run.dir.display(),
            project.dir.display(),
            reports.run.id
        ))),
        _ => Ok(()),
    }
}

/// The run's adapter, configuration, evaluation and bias audit, each checked; says what to run
/// first when one is missing.
fn read_run(project: &OpenProject, run: &str) -> Result<RunReports, JobError> {
    let run =
        RunDir::open(&project.dir, run).map_err(|e| JobError::Usage(format!("--run: {e}")))?;
    let (p, id) = (project.dir.display(), &run.id);
    let adapter = run.dir.join(ADAPTER_DIR);
    if !adapter.join(ADAPTER_WEIGHTS).is_file() {
        return Err(JobError::Usage(format!(
            "{}: the run has no final adapter ({ADAPTER_DIR}/{ADAPTER_WEIGHTS}); run `lablens \
             train --project {p}` first (or `lablens train --project {p} --resume {id}` to \
             finish this run)",
            run.dir.display()
        )));
    }
    let eval_path = run.dir.join(EVAL_FILE);
    let predictions = run.dir.join(PREDICTIONS_FILE);
    if !eval_path.is_file() || !predictions.is_file() {
        return Err(JobError::Usage(format!(
            "{}: the run has no evaluation ({EVAL_FILE} and {PREDICTIONS_FILE}); run `lablens \
             eval --project {p} --run {id}` first",
            run.dir.display()
        )));
    }
    let config_path = run.dir.join(CONFIG_FILE);
    let text = read_text(&config_path, MAX_CONFIG_BYTES)?.unwrap_or_default();
    let (config, _unknown): (TrainConfig, _) = from_ron(&text).map_err(|e| {
        JobError::file(
            &config_path,
            format!(
                "line {}, column {}: {}",
                e.span.start.line, e.span.start.col, e.code
            ),
        )
    })?;
    let eval = read_eval(&eval_path)?;
    let safety = read_safety(&predictions, eval.record.n, project, &run)?;
    let bias_path = run.dir.join(BIAS_FILE);
    let bias = read_bias(&bias_path, &predictions, project, &run)?;
    let mut files = Vec::new();
    let mut adapter_files: Vec<PathBuf> = std::fs::read_dir(&adapter)
        .map_err(|e| JobError::file(&adapter, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    adapter_files.sort();
    for path in adapter_files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        files.push((path.clone(), format!("{ADAPTER_DIR}/{name}")));
    }
    for name in [CONFIG_FILE, EVAL_FILE, PREDICTIONS_FILE] {
        files.push((run.dir.join(name), name.to_string()));
    }
    if bias.audited {
        files.push((bias_path, BIAS_FILE.to_string()));
    }
    Ok(RunReports {
        run,
        config,
        eval,
        safety,
        bias,
        files,
    })
}

/// The JSON object of a report file, or an error naming its line and field.
fn read_object(path: &Path, limit: u64) -> Result<serde_json::Map<String, Value>, JobError> {
    let bytes = read_bounded(path, limit)?;
    let text = String::from_utf8_lossy(&bytes);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(JobError::file(path, "not a JSON object")),
        Err(e) => Err(json_error(path, None, &text, &e)),
    }
}

fn read_eval(path: &Path) -> Result<EvalFile, JobError> {
    let obj = read_object(path, MAX_EVAL_BYTES)?;
    let wrong = |field: &str, what: &str| {
        JobError::file(
            path,
            format!("field {field:?}: expected {what}; run `lablens eval` again"),
        )
    };
    let text = |field: &str| obj.get(field).and_then(Value::as_str).map(str::to_string);
    let corpus = obj
        .get("corpus")
        .filter(|c| c.is_object())
        .cloned()
        .ok_or_else(|| wrong("corpus", "the corpus metrics (an object)"))?;
    let n = obj
        .get("n")
        .and_then(Value::as_u64)
        .ok_or_else(|| wrong("n", "the number of records evaluated"))?;
    let split = text("split").ok_or_else(|| wrong("split", "the split evaluated"))?;
    Ok(EvalFile {
        record: EvalRecord {
            split,
            n: n as usize,
            task: text("task"),
            corpus,
        },
        data_sha256: text("data_sha256"),
        adapter_sha256: text("adapter_sha256"),
        model_sha256: obj
            .get("model")
            .and_then(|m| m.get("sha256"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Safety flags per output over the run's predictions (the mean of each record's count, with
/// its bootstrap interval); refuses predictions that are not the evaluation's.
fn read_safety(
    path: &Path,
    evaluated: usize,
    project: &OpenProject,
    run: &RunDir,
) -> Result<Option<Interval>, JobError> {
    let bytes = read_bounded(path, MAX_PREDICTIONS_BYTES)?;
    let (rows, _issues) = parse_predictions(&bytes);
    if rows.len() != evaluated {
        return Err(JobError::Usage(format!(
            "{}: {} records, but {EVAL_FILE} says {evaluated} were evaluated; run `lablens eval \
             --project {} --run {}` again",
            path.display(),
            rows.len(),
            project.dir.display(),
            run.id
        )));
    }
    let flags: Vec<Option<f64>> = rows.iter().map(|r| r.metric("safety")).collect();
    Ok(interval(flags.len(), |ix| mean_of(&flags, ix)))
}

/// The verdict of bias.json ("not audited" without one); one older than the predictions it
/// audits is refused.
fn read_bias(
    path: &Path,
    predictions: &Path,
    project: &OpenProject,
    run: &RunDir,
) -> Result<BiasVerdict, JobError> {
    if !path.exists() {
        return Ok(BiasVerdict {
            audited: false,
            metric: None,
            threshold: None,
            slices: 0,
            flagged: Vec::new(),
        });
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(audit), Some(evaluated)) = (modified(path), modified(predictions))
        && audit < evaluated
    {
        return Err(JobError::Usage(format!(
            "{}: older than {PREDICTIONS_FILE}, so it audits an earlier evaluation; run \
             `lablens bias --project {} --run {}` again",
            path.display(),
            project.dir.display(),
            run.id
        )));
    }
    let obj = read_object(path, MAX_BIAS_BYTES)?;
    let slices = obj
        .get("slices")
        .and_then(Value::as_array)
        .ok_or_else(|| JobError::file(path, "field \"slices\": expected the list of slices"))?;
    let mut flagged = Vec::new();
    for (i, s) in slices.iter().enumerate() {
        match s.get("flagged") {
            Some(Value::Bool(true)) => flagged.push(slice_name(s)),
            Some(Value::Bool(false)) => {}
            _ => {
                return Err(JobError::file(
                    path,
                    format!("field \"slices[{i}].flagged\": expected true or false"),
                ));
            }
        }
    }
    Ok(BiasVerdict {
        audited: true,
        metric: obj
            .get("metric")
            .and_then(Value::as_str)
            .map(str::to_string),
        threshold: obj.get("threshold").and_then(Value::as_f64),
        slices: slices.len(),
        flagged,
    })
}

/// `gender F × age_group 65+` from a slice's `dims` object.
fn slice_name(slice: &Value) -> String {
    slice
        .get("dims")
        .and_then(Value::as_object)
        .map(|dims| {
            dims.iter()
                .map(|(d, v)| format!("{d} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(" × ")
        })
        .unwrap_or_else(|| "a slice without groups".into())
}

/// The base model as the run's configuration names it: found as given (from the working
/// directory, as training loads it) or in the project folder, with its file's SHA-256.
fn base_model(
    source: &str,
    project_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<BaseModel, JobError> {
    if source == TINY {
        return Ok(BaseModel {
            source: source.into(),
            path: None,
            sha256: None,
        });
    }
    let found = [PathBuf::from(source), project_dir.join(source)]
        .into_iter()
        .find(|p| p.exists());
    let Some(path) = found else {
        notes.push(format!(
            "the base model {source:?} is not on this machine: its sha256 is not recorded"
        ));
        return Ok(BaseModel {
            source: source.into(),
            path: None,
            sha256: None,
        });
    };
    let sha256 = if path.is_file() {
        Some(sha256_file(&path).map_err(|e| JobError::file(&path, e))?.1)
    } else {
        None
    };
    Ok(BaseModel {
        source: source.into(),
        path: Some(path.canonicalize().unwrap_or(path)),
        sha256,
    })
}
