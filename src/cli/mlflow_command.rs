//! `lablens mlflow push`: a project's runs, and with `--registry` its registered models, sent to
//! an MLflow tracking server. Exit 1 when the server is down or refuses, 2 for bad input (no such
//! run, a tracking URI that is not `http://HOST:PORT`).

use super::CliError;
use super::commands::open_project;
use crate::registry::mlflow::{
    MlflowClient, MlflowError, PushReport, PushRequest, RunSelection, push,
};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum MlflowCommand {
    /// Send runs (params, metric histories, eval and bias metrics, tags, artifacts) and with
    /// --registry the registered models, versions and aliases to an MLflow tracking server.
    /// Pushing again sends only what the server does not have yet.
    Push {
        #[arg(long)]
        project: PathBuf,
        /// One run, by id.
        #[arg(long, conflicts_with = "all")]
        run: Option<String>,
        /// Every run of the project.
        #[arg(long)]
        all: bool,
        /// The registry's models, versions and aliases too (with the runs they came from).
        #[arg(long)]
        registry: bool,
        /// The tracking server, http://HOST:PORT.
        #[arg(long)]
        tracking_uri: String,
        /// The MLflow experiment; default: the project's name.
        #[arg(long)]
        experiment: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn mlflow_cmd(command: &MlflowCommand) -> Result<(), CliError> {
    let MlflowCommand::Push {
        project,
        run,
        all,
        registry,
        tracking_uri,
        experiment,
        json,
    } = command;
    let runs = match (run, all) {
        (Some(run), _) => RunSelection::One(run.clone()),
        (None, true) => RunSelection::All,
        (None, false) if *registry => RunSelection::None,
        (None, false) => {
            return Err(CliError::usage(
                "mlflow push: say what to push: --run R, --all, or --registry",
            ));
        }
    };
    if experiment.as_deref().is_some_and(|e| e.trim().is_empty()) {
        return Err(CliError::usage(
            "--experiment: an MLflow experiment needs a name",
        ));
    }
    let client = MlflowClient::new(tracking_uri).map_err(mlflow_err)?;
    let project = open_project(project)?;
    let request = PushRequest {
        runs,
        registry: *registry,
        experiment: experiment.as_deref(),
    };
    let report = push(&client, &project, &request).map_err(mlflow_err)?;
    if *json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::failed(e.to_string()))?;
        println!("{text}");
    }
    describe(&report);
    Ok(())
}

fn mlflow_err(e: MlflowError) -> CliError {
    if e.is_usage() {
        CliError::usage(e.to_string())
    } else {
        CliError::failed(e.to_string())
    }
}

fn describe(report: &PushReport) {
    eprintln!(
        "experiment {:?} (id {}{}) at {}",
        report.experiment,
        report.experiment_id,
        if report.experiment_created {
            ", created"
        } else {
            ""
        },
        report.tracking_uri
    );
    for run in &report.runs {
        eprintln!(
            "run {} → MLflow run {}{}: {} params, {} metric values, {} tags, {} artifacts sent",
            run.run,
            run.mlflow_run_id,
            if run.created { " (created)" } else { "" },
            run.params_logged,
            run.metrics_logged,
            run.tags_set,
            run.artifacts_uploaded
        );
        for note in &run.notes {
            eprintln!("  note: {note}");
        }
    }
    for model in &report.models {
        let versions: Vec<String> = model
            .versions
            .iter()
            .map(|(l, m)| format!("{l}→{m}"))
            .collect();
        eprintln!(
            "model {}{}: versions {} ({} created), {} aliases set, {} removed",
            model.name,
            if model.created { " (created)" } else { "" },
            if versions.is_empty() {
                "none".into()
            } else {
                versions.join(", ")
            },
            model.versions_created,
            model.aliases_set,
            model.aliases_removed
        );
    }
}
