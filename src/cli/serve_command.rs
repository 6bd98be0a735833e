//! `lablens serve`: the project's model (and runs' and registry aliases' adapters) behind an
//! OpenAI-compatible HTTP API until SIGINT or SIGTERM.

use super::CliError;
use super::commands::open_project;
use super::progress::job_err;
use crate::serve::models::{AdapterSource, plan};
use crate::serve::{ServeError, ServeEvent, ServeOptions, serve, stop_on_signals};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The project folder.
    #[arg(long)]
    pub project: PathBuf,
    /// The base model instead of the project's: a Hugging Face folder, a .gguf file or `tiny`.
    #[arg(long, conflicts_with_all = ["run", "registry"])]
    pub model: Option<PathBuf>,
    /// Serve this run's adapter too (its final adapter, else its last checkpoint), on the model
    /// it was trained on; repeat for several runs. A request's `model` picks one by the run's
    /// id; requests that name none get the first adapter given.
    #[arg(long)]
    pub run: Vec<String>,
    /// Serve the registered version an alias names, as NAME@ALIAS (like demo@production), under
    /// that id; repeat for several. With --run, on the same base model.
    #[arg(long)]
    pub registry: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Every request must send `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Generations at once, waiting or running; more are answered 429.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_concurrency: u64,
    /// Waiting requests generated together.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_batch: u64,
}

pub fn serve_cmd(args: &ServeArgs, json_out: bool) -> Result<(), CliError> {
    let project = open_project(&args.project)?;
    let mut sources: Vec<AdapterSource> =
        args.run.iter().cloned().map(AdapterSource::Run).collect();
    for alias in &args.registry {
        sources.push(AdapterSource::registry(alias).map_err(job_err)?);
    }
    let plan = plan(&project, args.model.as_deref(), &sources).map_err(job_err)?;
    let options = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone(),
        max_concurrency: args.max_concurrency as usize,
        max_batch: args.max_batch as usize,
        max_body_bytes: crate::serve::MAX_BODY_BYTES,
    };
    let mut report = |event: ServeEvent| match event {
        ServeEvent::Listening(address) => {
            eprintln!(
                "listening on http://{address}; loading the model (GET /health answers 503 until it is ready)"
            )
        }
        ServeEvent::Ready {
            address, models, ..
        } => {
            let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            eprintln!(
                "ready on http://{address}: models {}; API docs at http://{address}/docs",
                ids.join(", ")
            );
            if json_out {
                println!(
                    "{}",
                    json!({"url": format!("http://{address}"), "models": ids})
                );
            }
        }
        ServeEvent::Stopping { in_flight } => {
            eprintln!("stopping: finishing {in_flight} request(s) in flight")
        }
    };
    serve(plan, options, stop_on_signals(), &mut report).map_err(|e| match e {
        ServeError::Bind { .. } => CliError::usage(e.to_string()),
        ServeError::Load(_) => CliError::failed(e.to_string()),
    })
}
