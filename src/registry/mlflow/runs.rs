//! One lablens run as one MLflow run: found again by its `lablens.run_id` tag, its training
//! configuration as params, metrics.jsonl's steps and the evaluation's and bias audit's numbers
//! as metrics, its lineage as tags, its adapter and reports as artifacts. What the MLflow run
//! already holds is not sent again: params it has, steps up to the `lablens.pushed_step` tag,
//! reports whose SHA-256 its tags already record.

use super::client::{MlflowClient, MlflowError};
use super::fields::{Tags, flatten_config, now_ms, read_json, tag};
use crate::analysis::bias::BIAS_FILE;
use crate::eval::job::{EVAL_FILE, PREDICTIONS_FILE};
use crate::project::from_ron;
use crate::registry::files::{MAX_BIAS_BYTES, MAX_EVAL_BYTES};
use crate::store::{sha256_file, sha256_hex};
use crate::train::config::TrainConfig;
use crate::train::run::{ADAPTER_DIR, CONFIG_FILE, METRICS_FILE, RunStatus, STATUS_FILE};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tag that ties an MLflow run to the lablens run it was pushed from.
pub const RUN_ID_TAG: &str = "lablens.run_id";
const PUSHED_STEP_TAG: &str = "lablens.pushed_step";
const EVAL_TAG: &str = "lablens.eval_sha256";
const BIAS_TAG: &str = "lablens.bias_sha256";
const ARTIFACTS_TAG: &str = "lablens.artifacts_sha256";
/// MLflow's log-batch limits: 1000 metrics, 100 params, 100 tags a request.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
/// The metrics.jsonl fields sent as metric histories.
const STEP_METRICS: [&str; 5] = ["loss", "lr", "grad_norm", "tokens_per_s", "val_loss"];
/// Proxied artifact URIs (`mlflow server --serve-artifacts`).
const PROXIED: &str = "mlflow-artifacts:/";

/// What one run's push did.
#[derive(Debug, Clone, Serialize)]
pub struct RunPushed {
    pub run: String,
    pub mlflow_run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
    /// Whether the MLflow run was created now (false: found by its tag).
    pub created: bool,
    pub params_logged: usize,
    pub metrics_logged: usize,
    pub tags_set: usize,
    pub artifacts_uploaded: usize,
    pub notes: Vec<String>,
}

/// A run folder to push: `runs/<id>/`, or a registered version's folder for a run since removed.
pub struct RunSource<'a> {
    pub id: &'a str,
    pub dir: &'a Path,
}

struct Existing {
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    status: String,
}

/// The MLflow run tagged with `id` in the experiment, with its params and tags.
fn find_run(
    client: &MlflowClient,
    experiment_id: &str,
    id: &str,
) -> Result<Option<(Value, Existing)>, MlflowError> {
    let found = client.post(
        "runs/search",
        &json!({"experiment_ids": [experiment_id], "max_results": 2,
                "filter": format!("tags.`{RUN_ID_TAG}` = '{id}'")}),
    )?;
    let Some(run) = found["runs"].as_array().and_then(|r| r.first()).cloned() else {
        return Ok(None);
    };
    let pairs = |field: &str| -> BTreeMap<String, String> {
        run["data"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["key"].as_str()?.into(), p["value"].as_str()?.into())))
            .collect()
    };
    let existing = Existing {
        params: pairs("params"),
        tags: pairs("tags"),
        status: run["info"]["status"].as_str().unwrap_or("").into(),
    };
    Ok(Some((run["info"].clone(), existing)))
}

/// Pushes one run into the experiment.
pub fn push_run(
    client: &MlflowClient,
    experiment_id: &str,
    source: &RunSource,
) -> Result<RunPushed, MlflowError> {
    if !source
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(MlflowError::Usage(format!(
            "run {:?}: only runs named with letters, digits, '-', '_' or '.' can be pushed",
            source.id
        )));
    }
    let config_path = source.dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| MlflowError::Usage(format!("{}: {e}", config_path.display())))?;
    let (config, _): (TrainConfig, _) = from_ron(&text)
        .map_err(|e| MlflowError::Usage(format!("{}: {e}", config_path.display())))?;
    let (info, existing, created) = match find_run(client, experiment_id, source.id)? {
        Some((info, existing)) => (info, existing, false),
        None => {
            let made = client.post(
                "runs/create",
                &json!({"experiment_id": experiment_id, "run_name": source.id,
                        "start_time": now_ms(), "tags": [tag(RUN_ID_TAG, source.id)]}),
            )?;
            let existing = Existing {
                params: BTreeMap::new(),
                tags: BTreeMap::from([(RUN_ID_TAG.to_string(), source.id.to_string())]),
                status: "RUNNING".into(),
            };
            (made["run"]["info"].clone(), existing, true)
        }
    };
    let field = |k: &str| info[k].as_str().unwrap_or("").to_string();
    let mut pushed = RunPushed {
        run: source.id.to_string(),
        mlflow_run_id: field("run_id"),
        experiment_id: experiment_id.to_string(),
        artifact_uri: field("artifact_uri"),
        created,
        params_logged: 0,
        metrics_logged: 0,
        tags_set: 0,
        artifacts_uploaded: 0,
        notes: Vec::new(),
    };
    let start_ms = info["start_time"].as_i64().unwrap_or_else(now_ms);
    let mut tags = Tags::default();
    log_params(client, &mut pushed, &existing, &config)?;
    log_steps(
        client,
        &mut pushed,
        &existing,
        source.dir,
        start_ms,
        &mut tags,
    )?;
    log_reports(client, &mut pushed, &existing, source.dir, &mut tags)?;
    lineage_tags(source, &config, &mut tags);
    if pushed.artifact_uri.starts_with(PROXIED) {
        upload_artifacts(client, &mut pushed, &existing, source.dir, &mut tags)?;
    } else {
        pushed.notes.push(format!(
            "artifacts not uploaded: the server keeps run artifacts at {}, which it does not \
             proxy; start it with `mlflow server --serve-artifacts` (the default of MLflow 2 and 3)",
            pushed.artifact_uri
        ));
    }
    let changed: Vec<Value> = tags
        .0
        .iter()
        .filter(|(k, v)| existing.tags.get(*k) != Some(v))
        .map(|(k, v)| tag(k, v))
        .collect();
    pushed.tags_set = changed.len();
    for chunk in changed.chunks(MAX_PARAMS) {
        log_batch(client, &pushed.mlflow_run_id, json!({"tags": chunk}))?;
    }
    finish(client, &pushed, &existing, source.dir)?;
    Ok(pushed)
}

fn log_batch(client: &MlflowClient, run_id: &str, mut body: Value) -> Result<(), MlflowError> {
    body["run_id"] = json!(run_id);
    client.post("runs/log-batch", &body).map(|_| ())
}

/// The training configuration as params, those the MLflow run lacks (params never change once
/// logged: a different value is noted, not sent).
fn log_params(
    client: &MlflowClient,
    pushed: &mut RunPushed,
    existing: &Existing,
    config: &TrainConfig,
) -> Result<(), MlflowError> {
    let mut missing = Vec::new();
    for (key, value) in flatten_config(config) {
        match existing.params.get(&key) {
            None => missing.push(json!({"key": key, "value": value})),
            Some(old) if *old != value => pushed.notes.push(format!(
                "param {key}: MLflow has {old:?}, config.ron has {value:?} (MLflow params \
                 cannot change)"
            )),
            Some(_) => {}
        }
    }
    for chunk in missing.chunks(MAX_PARAMS) {
        log_batch(client, &pushed.mlflow_run_id, json!({"params": chunk}))?;
    }
    pushed.params_logged = missing.len();
    Ok(())
}

/// metrics.jsonl's steps after the last one pushed, as metric histories.
fn log_steps(
    client: &MlflowClient,
    pushed: &mut RunPushed,
    existing: &Existing,
    dir: &Path,
    start_ms: i64,
    tags: &mut Tags,
) -> Result<(), MlflowError> {
    let path = dir.join(METRICS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let last: Option<i64> = existing
        .tags
        .get(PUSHED_STEP_TAG)
        .and_then(|s| s.parse().ok());
    let mut metrics = Vec::new();
    let mut newest = last;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A last line cut short by a training still writing is taken next time.
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            pushed.notes.push(format!(
                "{} line {}: not JSON, skipped",
                path.display(),
                i + 1
            ));
            continue;
        };
        let Some(step) = entry["step"].as_i64() else {
            continue;
        };
        if last.is_some_and(|l| step <= l) {
            continue;
        }
        let elapsed = entry["elapsed_s"].as_f64().unwrap_or(0.0);
        let timestamp = start_ms + (elapsed * 1000.0) as i64;
        for key in STEP_METRICS {
            if let Some(value) = entry[key].as_f64().filter(|v| v.is_finite()) {
                metrics.push(
                    json!({"key": key, "value": value, "timestamp": timestamp, "step": step}),
                );
            }
        }
        newest = Some(newest.map_or(step, |n| n.max(step)));
    }
    for chunk in metrics.chunks(MAX_METRICS) {
        log_batch(client, &pushed.mlflow_run_id, json!({"metrics": chunk}))?;
    }
    pushed.metrics_logged += metrics.len();
    if let Some(n) = newest {
        tags.set(PUSHED_STEP_TAG, n.to_string());
    }
    Ok(())
}

/// eval.json's corpus metrics (`eval.rouge1`, with `eval.rouge1.low` and `.high`) and the bias
/// audit's slice counts, each sent when its file differs from the one pushed before.
fn log_reports(
    client: &MlflowClient,
    pushed: &mut RunPushed,
    existing: &Existing,
    dir: &Path,
    tags: &mut Tags,
) -> Result<(), MlflowError> {
    let now = now_ms();
    let metric =
        |key: String, value: f64| json!({"key": key, "value": value, "timestamp": now, "step": 0});
    let mut metrics = Vec::new();
    let eval_path = dir.join(EVAL_FILE);
    if let Some((eval, sha)) = read_json(&eval_path, MAX_EVAL_BYTES)? {
        if existing.tags.get(EVAL_TAG) != Some(&sha) {
            let mut flat = Vec::new();
            flatten_corpus("eval", &eval["corpus"], &mut flat);
            if let Some(n) = eval["n"].as_f64() {
                flat.push(("eval.n".into(), n));
            }
            metrics.extend(flat.into_iter().map(|(k, v)| metric(k, v)));
        }
        tags.set(EVAL_TAG, sha);
        if let Some(split) = eval["split"].as_str() {
            tags.set("lablens.eval_split", split.to_string());
        }
        for (key, value) in [
            ("lablens.base_model_sha256", &eval["model"]["sha256"]),
            ("lablens.dataset_sha256", &eval["data_sha256"]),
            ("lablens.adapter_sha256", &eval["adapter_sha256"]),
        ] {
            if let Some(v) = value.as_str() {
                tags.set(key, v.to_string());
            }
        }
    }
    if let Some((bias, sha)) = read_json(&dir.join(BIAS_FILE), MAX_BIAS_BYTES)? {
        let slices = bias["slices"].as_array().cloned().unwrap_or_default();
        let flagged = slices
            .iter()
            .filter(|s| s["flagged"] == json!(true))
            .count();
        if existing.tags.get(BIAS_TAG) != Some(&sha) {
            metrics.push(metric("bias.flagged_slices".into(), flagged as f64));
            metrics.push(metric("bias.slices".into(), slices.len() as f64));
        }
        tags.set(BIAS_TAG, sha);
    }
    for chunk in metrics.chunks(MAX_METRICS) {
        log_batch(client, &pushed.mlflow_run_id, json!({"metrics": chunk}))?;
    }
    pushed.metrics_logged += metrics.len();
    Ok(())
}

/// `eval.json`'s corpus as metric names and values: an interval `{value, low, high}` gives
/// `name`, `name.low` and `name.high`; ROUGE's `fmeasure` is the metric itself.
pub fn flatten_corpus(prefix: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    let Some(obj) = value.as_object() else {
        if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
            out.push((prefix.to_string(), v));
        }
        return;
    };
    if let Some(v) = obj.get("value").and_then(Value::as_f64) {
        out.push((prefix.to_string(), v));
        for end in ["low", "high"] {
            if let Some(e) = obj.get(end).and_then(Value::as_f64) {
                out.push((format!("{prefix}.{end}"), e));
            }
        }
        return;
    }
    for (key, inner) in obj {
        let name = if key == "fmeasure" {
            prefix.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        flatten_corpus(&name, inner, out);
    }
}

fn lineage_tags(source: &RunSource, config: &TrainConfig, tags: &mut Tags) {
    tags.set(RUN_ID_TAG, source.id.to_string());
    tags.set("lablens.version", env!("CARGO_PKG_VERSION").to_string());
    tags.set("lablens.base_model", config.model.clone());
    tags.set("lablens.dataset", config.dataset.clone());
    tags.set("mlflow.runName", source.id.to_string());
    tags.set("mlflow.source.name", "lablens".to_string());
    tags.set("mlflow.source.type", "LOCAL".to_string());
}

/// The files sent as artifacts: the adapter folder, eval.json, bias.json, predictions.jsonl.
fn artifact_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let adapter = dir.join(ADAPTER_DIR);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&adapter)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| !n.starts_with('.')) {
            files.push((path, format!("{ADAPTER_DIR}/{name}")));
        }
    }
    for name in [EVAL_FILE, BIAS_FILE, PREDICTIONS_FILE] {
        let path = dir.join(name);
        if path.is_file() {
            files.push((path, name.to_string()));
        }
    }
    files
}

fn upload_artifacts(
    client: &MlflowClient,
    pushed: &mut RunPushed,
    existing: &Existing,
    dir: &Path,
    tags: &mut Tags,
) -> Result<(), MlflowError> {
    let files = artifact_files(dir);
    let mut listing = String::new();
    for (path, name) in &files {
        let (bytes, sha) = sha256_file(path)
            .map_err(|e| MlflowError::Usage(format!("{}: {e}", path.display())))?;
        listing.push_str(&format!("{name} {bytes} {sha}\n"));
    }
    let digest = sha256_hex(listing.as_bytes());
    if existing.tags.get(ARTIFACTS_TAG) != Some(&digest) {
        let root = pushed.artifact_uri[PROXIED.len()..]
            .trim_matches('/')
            .to_string();
        for (path, name) in &files {
            let bytes = std::fs::read(path)
                .map_err(|e| MlflowError::Usage(format!("{}: {e}", path.display())))?;
            client.put_artifact(&format!("{root}/{name}"), &bytes)?;
            pushed.artifacts_uploaded += 1;
        }
    }
    tags.set(ARTIFACTS_TAG, digest);
    Ok(())
}

/// Marks the MLflow run as the lablens run ended: FINISHED, FAILED or KILLED.
fn finish(
    client: &MlflowClient,
    pushed: &RunPushed,
    existing: &Existing,
    dir: &Path,
) -> Result<(), MlflowError> {
    let status_path = dir.join(STATUS_FILE);
    let status = std::fs::read_to_string(&status_path)
        .ok()
        .and_then(|t| serde_json::from_str::<crate::train::run::StatusFile>(&t).ok());
    let ended = match status.map(|s| s.status) {
        Some(RunStatus::Finished) => "FINISHED",
        Some(RunStatus::Failed) => "FAILED",
        Some(RunStatus::Stopped) => "KILLED",
        // A registered version's folder has no status: it was registered from a finished run.
        None if !dir.join(METRICS_FILE).exists() => "FINISHED",
        _ => return Ok(()),
    };
    if existing.status != ended || pushed.created {
        client.post(
            "runs/update",
            &json!({"run_id": pushed.mlflow_run_id, "status": ended, "end_time": now_ms()}),
        )?;
    }
    Ok(())
}
