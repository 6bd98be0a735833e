//! Pushing a project to a real MLflow tracking server through its REST API: one experiment per
//! project, one MLflow run per lablens run (params, metric histories, eval and bias metrics,
//! lineage tags, artifacts), and with the registry its models, versions and aliases. Pushing
//! again sends only what the server does not have yet.

pub mod client;
mod fields;
pub mod models;
pub mod runs;

pub use client::{MlflowClient, MlflowError};
pub use fields::flatten_config;
pub use models::ModelPushed;
pub use runs::{RunPushed, RunSource};

use crate::project::OpenProject;
use crate::registry::{Listing, RegisteredModel, listing};
use crate::train::run::{RunDir, list_runs};
use fields::tag;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Which runs to push.
pub enum RunSelection {
    One(String),
    All,
    /// Only those the registry's versions came from (with `registry`).
    None,
}

pub struct PushRequest<'a> {
    pub runs: RunSelection,
    pub registry: bool,
    /// The experiment's name; the project's name by default.
    pub experiment: Option<&'a str>,
}

/// What a push did, as `lablens mlflow push --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub experiment_created: bool,
    pub runs: Vec<RunPushed>,
    pub models: Vec<ModelPushed>,
}

/// The experiment named `name`, created when the server has none.
fn experiment(client: &MlflowClient, name: &str) -> Result<(String, bool), MlflowError> {
    match client.get("experiments/get-by-name", &[("experiment_name", name)]) {
        Ok(found) => Ok((
            found["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            false,
        )),
        Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => {
            let made = client.post(
                "experiments/create",
                &json!({"name": name, "tags": [tag("lablens.project", name)]}),
            )?;
            Ok((
                made["experiment_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                true,
            ))
        }
        Err(e) => Err(e),
    }
}

/// The ids of the runs selected; a run asked for by id must exist.
fn selected_runs(project: &OpenProject, runs: &RunSelection) -> Result<Vec<String>, MlflowError> {
    Ok(match runs {
        RunSelection::One(run) => {
            let dir = RunDir::open(&project.dir, run).map_err(|e| {
                MlflowError::Usage(format!(
                    "--run {run}: no such run of {} ({e})",
                    project.dir.display()
                ))
            })?;
            vec![dir.id]
        }
        RunSelection::All => list_runs(&project.dir).into_iter().map(|r| r.id).collect(),
        RunSelection::None => Vec::new(),
    })
}

/// Every registered model of the project with its listing, read before anything is sent.
fn registered(project: &OpenProject) -> Result<Vec<(RegisteredModel, Listing)>, MlflowError> {
    crate::registry::models(&project.dir)
        .iter()
        .map(|name| {
            let model = RegisteredModel::existing(&project.dir, name)?;
            let listed = listing(&model)?;
            Ok((model, listed))
        })
        .collect::<Result<Vec<_>, crate::job::JobError>>()
        .map_err(|e| MlflowError::Usage(e.to_string()))
}

/// Pushes the project's runs (and with `registry` its registered models) to the server.
pub fn push(
    client: &MlflowClient,
    project: &OpenProject,
    request: &PushRequest,
) -> Result<PushReport, MlflowError> {
    let ids = selected_runs(project, &request.runs)?;
    let listings = if request.registry {
        registered(project)?
    } else {
        Vec::new()
    };
    let name = request.experiment.unwrap_or(&project.project.name);
    let (experiment_id, experiment_created) = experiment(client, name)?;
    let mut pushed: BTreeMap<String, RunPushed> = BTreeMap::new();
    for id in &ids {
        let dir = project.dir.join(crate::train::run::RUNS_DIR).join(id);
        let run = runs::push_run(client, &experiment_id, &RunSource { id, dir: &dir })?;
        pushed.insert(id.clone(), run);
    }
    let mut models = Vec::new();
    for (model, listing) in &listings {
        let mut run_of = |record: &crate::registry::version::VersionRecord| {
            if !pushed.contains_key(&record.run) {
                // The run folder when it is still there, else the version's own copy of it.
                let run_dir = project
                    .dir
                    .join(crate::train::run::RUNS_DIR)
                    .join(&record.run);
                let dir = if run_dir.is_dir() {
                    run_dir
                } else {
                    model.version_dir(record.version)
                };
                let source = RunSource {
                    id: &record.run,
                    dir: &dir,
                };
                let run = runs::push_run(client, &experiment_id, &source)?;
                pushed.insert(record.run.clone(), run);
            }
            let run = &pushed[&record.run];
            Ok(models::PushedRun {
                mlflow_run_id: run.mlflow_run_id.clone(),
                artifact_uri: run.artifact_uri.clone(),
            })
        };
        models.push(models::push_model(client, listing, &mut run_of)?);
    }
    Ok(PushReport {
        tracking_uri: client.uri().to_string(),
        experiment: name.to_string(),
        experiment_id,
        experiment_created,
        runs: pushed.into_values().collect(),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::TrainConfig;

    #[test]
    fn nested_config_fields_become_dotted_params() {
        let params: BTreeMap<String, String> = flatten_config(&TrainConfig::default())
            .into_iter()
            .collect();
        assert!(params.contains_key("lora.r"), "{params:?}");
        assert!(params["lora.target_modules"].starts_with('['));
        assert!(params.keys().all(|k| !k.starts_with('.')));
    }

    #[test]
    fn corpus_intervals_become_a_metric_and_its_ends() {
        let corpus = json!({"rouge1": {"fmeasure": {"value": 0.4, "low": 0.3, "high": 0.5},
                                       "recall": {"value": 0.2, "low": 0.1, "high": 0.3}},
                            "bleu": {"value": 12.0, "low": 8.0, "high": 16.0}});
        let mut out = Vec::new();
        runs::flatten_corpus("eval", &corpus, &mut out);
        let got: BTreeMap<String, f64> = out.into_iter().collect();
        assert_eq!(got["eval.rouge1"], 0.4);
        assert_eq!(got["eval.rouge1.low"], 0.3);
        assert_eq!(got["eval.rouge1.recall.high"], 0.3);
        assert_eq!(got["eval.bleu.high"], 16.0);
        assert_eq!(got.len(), 9);
    }
}
