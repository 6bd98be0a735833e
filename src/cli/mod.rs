//! The command line: argument parsing and exit codes. Human progress goes to stderr, the
//! machine-readable result (`--json`) to stdout. Exit codes: 0 success, 1 the job failed,
//! 2 bad input or usage; `registry promote` and `pipeline` add 3 (a gate failed) and 4 (worse
//! than production).

mod bias_command;
mod commands;
mod doctor_command;
mod eval_command;
mod explain_command;
mod metrics_command;
mod mlflow_command;
mod model_commands;
mod pipeline_command;
mod pretrain_command;
mod progress;
mod registry_command;
mod reviews_command;
mod serve_command;
mod train_command;

use crate::data::load::{DuplicateIds, LoadOptions, ReadLimits};
use crate::data::record::Task;
use crate::model::generation::GenerationParams;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "lablens",
    version,
    about = "Fine-tune and audit clinical text simplification models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Open the workbench window (the default without a subcommand).
    Gui {
        /// A project folder or its project.ron; default: the last project, else projects/demo.
        #[arg(long)]
        project: Option<PathBuf>,
    },
    /// Write a synthetic dataset (JSONL) for a task.
    GenData {
        /// discharge, soap or qa.
        #[arg(long)]
        task: String,
        #[arg(long, default_value_t = 100)]
        n: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Make one group's references noisier, e.g. `ethnicity:Hispanic=0.6` or `65+=0.5`.
        #[arg(long)]
        disparity: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check a dataset: schema, missing fields, duplicates, lengths, PHI, demographics.
    /// Exits 1 when a check fails, 2 when the file cannot be read.
    Validate {
        data: PathBuf,
        /// Task for records that do not name one (discharge, soap, qa).
        #[arg(long)]
        task: Option<String>,
        #[arg(long, default_value_t = 4000)]
        max_input_words: usize,
        #[arg(long, default_value_t = 1500)]
        max_target_words: usize,
        #[command(flatten)]
        read: ReadArgs,
        #[arg(long)]
        json: bool,
    },
    /// Split a dataset by patient into train / validation / test JSONL files.
    Split {
        data: PathBuf,
        /// Train, validation and test percentages.
        #[arg(long, default_value = "70,15,15")]
        ratios: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
        #[arg(long)]
        json: bool,
    },
    /// Train the embedded tiny model from scratch: a BPE tokenizer and a small Llama decoder on
    /// dataset records rendered as chat conversations, written as a Hugging Face folder.
    Pretrain {
        /// A dataset file (JSONL or CSV); repeat for several.
        #[arg(long, required = true)]
        corpus: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 300)]
        steps: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Token ids and pieces of a text, as the model's tokenizer splits it.
    Tokenize {
        #[command(flatten)]
        model: ModelOpts,
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Teacher-forced loss and perplexity per record: over the target given the templated input
    /// (the training loss), or with --raw over tokens 2..n of each `{"id", "text"}` line.
    Score {
        #[command(flatten)]
        model: ModelOpts,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        raw: bool,
        #[arg(long)]
        json: bool,
    },
    /// Generate after a prompt or for every record of a dataset (chat template applied unless --raw).
    Generate {
        #[command(flatten)]
        model: ModelOpts,
        #[arg(long, conflicts_with = "data")]
        prompt: Option<String>,
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        raw: bool,
        /// Always take the most likely token (the default when no temperature is given).
        #[arg(long)]
        greedy: bool,
        #[arg(long, default_value_t = 256)]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[arg(long)]
        top_k: Option<usize>,
        #[arg(long)]
        top_p: Option<f64>,
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Keep generating past the end-of-sequence token (for benchmarks).
        #[arg(long)]
        ignore_eos: bool,
        /// Records of --data generated together (each gets what it would alone).
        #[arg(long, default_value_t = crate::eval::job::DEFAULT_BATCH)]
        batch_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Train a LoRA adapter on a project's dataset (a new run, or --resume one).
    Train {
        #[command(flatten)]
        args: train_command::TrainArgs,
        #[arg(long)]
        json: bool,
    },
    /// Generate over a split with a run's adapter (or --base), score every output, and write
    /// predictions.jsonl and eval.json; resumable from the last finished batch.
    Eval {
        #[command(flatten)]
        args: eval_command::EvalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Bias audit of a run's (or --base) predictions: a metric by gender, age group, ethnicity
    /// and their intersections, with intervals, permutation tests, q-values and flags; writes
    /// bias.json beside predictions.jsonl. --counterfactual swaps demographic mentions too.
    Bias {
        #[command(flatten)]
        args: bias_command::BiasArgs,
        #[arg(long)]
        json: bool,
    },
    /// Which parts of a record's input drove the model's output: LIME (words, sentences or
    /// sections), gradient x input saliency, section importance or input-length sensitivity;
    /// writes explain/<record>.json under the run (or base/).
    Explain {
        #[command(flatten)]
        args: explain_command::ExplainArgs,
        #[arg(long)]
        json: bool,
    },
    /// Train, evaluate on the test split, audit for bias, register, check the gates and promote
    /// when better, in one command for CI; pipeline.json in the run folder records each stage.
    /// Exit 0 promoted or registered, 3 a gate failed, 4 worse than production, 1 a job failed,
    /// 2 bad input; --resume RUN goes on from the stages finished.
    Pipeline {
        #[command(flatten)]
        args: pipeline_command::PipelineArgs,
        #[arg(long)]
        json: bool,
    },
    /// List a project's training runs with their status.
    Runs {
        #[arg(long)]
        project: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Metrics of prediction/reference pairs (no model): ROUGE, BLEU, reading level, and with a
    /// source medication faithfulness and safety flags; QA accuracy for task qa.
    Metrics {
        /// JSONL of {"id", "prediction", "reference", "source"?, "task"?}.
        #[arg(long)]
        pred: PathBuf,
        /// Task of lines that do not name one (discharge, soap or qa).
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Times the four stemmed ROUGE variants over a JSONL of pairs (for scripts/bench-rouge.sh).
    #[command(hide = true)]
    BenchRouge {
        #[arg(long)]
        pairs: PathBuf,
    },
    /// Clinician reviews of a run, unblinded: mean ratings and flag rates per model, agreement.
    /// With --choose, the records reviewers of the run see.
    Reviews {
        #[arg(long)]
        project: PathBuf,
        #[arg(long)]
        run: String,
        /// Also write the reviews (newest line of each) as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Reviewers of this run see only these records, in this order: a file of record ids,
        /// one a line (blank lines and lines starting with # are skipped).
        #[arg(long, conflicts_with = "choose_all")]
        choose: Option<PathBuf>,
        /// Remove the choice: reviewers see every record again.
        #[arg(long)]
        choose_all: bool,
        #[arg(long)]
        json: bool,
    },
    /// The project's model registry: versions of trained adapters, aliases such as production
    /// moved through quality gates, rollback and the history of every move.
    Registry {
        #[command(subcommand)]
        command: registry_command::RegistryCommand,
    },
    /// Send the project's runs and registry to an MLflow tracking server (REST API): `push`.
    Mlflow {
        #[command(subcommand)]
        command: mlflow_command::MlflowCommand,
    },
    /// Serve the project's model (and a run's or a registry alias's adapter) over an
    /// OpenAI-compatible HTTP API with clinical endpoints, until SIGINT or SIGTERM.
    Serve {
        #[command(flatten)]
        args: serve_command::ServeArgs,
        #[arg(long)]
        json: bool,
    },
    /// Whether this build and machine can run models on a GPU: the GPUs, their memory, the driver,
    /// bf16, and a short forward and backward pass of a model on the device against the CPU;
    /// says what to do when a check fails (exit 1).
    Doctor {
        /// auto (the first GPU, else the CPU), cpu or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// The model the pass runs: a Hugging Face folder, a .gguf file, or `tiny`.
        #[arg(long, default_value = "tiny")]
        model: PathBuf,
        /// auto (bf16 on a GPU), f32 or bf16.
        #[arg(long, default_value = "auto")]
        dtype: String,
        #[arg(long)]
        json: bool,
    },
    /// Render every panel of a project (default: the demo project) to PNG files.
    Screenshots {
        #[arg(long, default_value = "screenshots")]
        out: PathBuf,
        #[arg(long)]
        project: Option<PathBuf>,
        /// The window's size in points, WIDTHxHEIGHT (default: the workbench's, 1400x880).
        #[arg(long, default_value = "1400x880", value_parser = window_size)]
        size: [f32; 2],
    },
}

/// `1024x768` → `[1024.0, 768.0]`.
fn window_size(text: &str) -> Result<[f32; 2], String> {
    let parsed = text.split_once('x').and_then(|(w, h)| {
        let (w, h) = (w.trim().parse::<f32>().ok()?, h.trim().parse::<f32>().ok()?);
        (w >= 800.0 && h >= 500.0 && w <= 8192.0 && h <= 8192.0).then_some([w, h])
    });
    parsed.ok_or_else(|| {
        format!("{text:?}: expected WIDTHxHEIGHT in points, at least 800x500 (like 1024x768)")
    })
}

/// The model options shared by tokenize, score and generate.
#[derive(clap::Args, Debug)]
pub struct ModelOpts {
    /// A Hugging Face model folder, a .gguf file, or `tiny` for the embedded model.
    #[arg(long)]
    pub model: PathBuf,
    /// Load GGUF weights as f32 instead of keeping them quantized.
    #[arg(long)]
    pub dequantize: bool,
    /// auto, cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto (bf16 on a GPU, f32 on the CPU), f32 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Fold the adapter into the base weights before running (PEFT's merge_and_unload): no
    /// low-rank products per token; a quantized base becomes dense.
    #[arg(long, requires = "adapter")]
    pub merge: bool,
}

impl ModelOpts {
    fn args(self) -> model_commands::ModelArgs {
        model_commands::ModelArgs {
            model: self.model,
            dequantize: self.dequantize,
            device: self.device,
            dtype: self.dtype,
            adapter: self.adapter,
            merge: self.merge,
        }
    }
}

/// How a dataset file is read: what to do with a record whose id an earlier one has, and the
/// bounds on what is held.
#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// refuse (the repeat is skipped and reported) or rename (kept as ID~2, ID~3, reported).
    #[arg(long = "duplicate-ids", default_value = "refuse", value_parser = parse_duplicate_ids)]
    pub duplicate_ids: DuplicateIds,
    /// The largest file read, in MiB (it is held whole while it parses).
    #[arg(long, default_value_t = ReadLimits::default().max_file_mb,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_file_mb: u64,
    /// The largest text field of a record, in MiB; a record with a larger one is reported and
    /// skipped.
    #[arg(long, default_value_t = ReadLimits::default().max_field_mb,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_field_mb: u64,
}

impl ReadArgs {
    /// How to load, with `default_task` for records that name none.
    pub fn load_options(&self, default_task: Option<Task>) -> LoadOptions {
        let limits = ReadLimits {
            max_file_mb: self.max_file_mb,
            max_field_mb: self.max_field_mb,
        };
        limits.apply(LoadOptions {
            default_task,
            duplicate_ids: self.duplicate_ids,
            ..LoadOptions::default()
        })
    }
}

fn parse_duplicate_ids(text: &str) -> Result<DuplicateIds, String> {
    DuplicateIds::parse(text).ok_or_else(|| format!("{text:?}: expected refuse or rename"))
}

/// An error with its exit code: 1 for a failed job, 2 for bad input or usage.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

/// Parses the process arguments, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, usage errors with exit 2.
            e.print().ok();
            return e.exit_code();
        }
    };
    match run(cli.command.unwrap_or(CliCommand::Gui { project: None })) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code
        }
    }
}

pub fn run(command: CliCommand) -> Result<(), CliError> {
    match command {
        CliCommand::Gui { project } => crate::app::run(project).map_err(CliError::failed),
        CliCommand::GenData {
            task,
            n,
            seed,
            out,
            disparity,
            json,
        } => commands::gen_data(&task, n, seed, &out, disparity.as_deref(), json),
        CliCommand::Validate {
            data,
            task,
            max_input_words,
            max_target_words,
            read,
            json,
        } => commands::validate(
            &data,
            task.as_deref(),
            (max_input_words, max_target_words),
            &read,
            json,
        ),
        CliCommand::Split {
            data,
            ratios,
            seed,
            out,
            read,
            json,
        } => commands::split(&data, &ratios, seed, &out, &read, json),
        CliCommand::Pretrain {
            corpus,
            out,
            steps,
            seed,
            json,
        } => pretrain_command::pretrain_cmd(&corpus, &out, steps, seed, json),
        CliCommand::Tokenize { model, text, json } => {
            model_commands::tokenize(&model.args(), &text, json)
        }
        CliCommand::Score {
            model,
            data,
            raw,
            json,
        } => model_commands::score(&model.args(), &data, raw, json),
        CliCommand::Generate {
            model,
            prompt,
            data,
            raw,
            greedy,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            seed,
            ignore_eos,
            batch_size,
            json,
        } => {
            let params = GenerationParams {
                max_new_tokens,
                temperature: if greedy { 0.0 } else { temperature },
                top_k,
                top_p,
                repetition_penalty,
                seed,
            };
            let g = model_commands::GenerateArgs {
                prompt,
                data,
                raw,
                params,
                ignore_eos,
                batch_size,
            };
            model_commands::generate_cmd(&model.args(), &g, json)
        }
        CliCommand::Train { args, json } => train_command::train_cmd(&args, json),
        CliCommand::Bias { args, json } => bias_command::bias_cmd(&args, json),
        CliCommand::Explain { args, json } => explain_command::explain_cmd(&args, json),
        CliCommand::Pipeline { args, json } => pipeline_command::pipeline_cmd(&args, json),
        CliCommand::Runs { project, json } => train_command::runs_cmd(&project, json),
        CliCommand::Eval { args, json } => eval_command::eval_cmd(&args, json),
        CliCommand::Metrics { pred, task, json } => {
            metrics_command::metrics_cmd(&pred, task.as_deref(), json)
        }
        CliCommand::BenchRouge { pairs } => metrics_command::bench_rouge_cmd(&pairs),
        CliCommand::Reviews {
            project,
            run,
            csv,
            choose,
            choose_all,
            json,
        } => {
            let choice = match (choose, choose_all) {
                (Some(file), _) => reviews_command::Choice::Records(file),
                (None, true) => reviews_command::Choice::All,
                (None, false) => reviews_command::Choice::Keep,
            };
            reviews_command::reviews_cmd(&project, &run, csv.as_deref(), &choice, json)
        }
        CliCommand::Registry { command } => registry_command::registry_cmd(&command),
        CliCommand::Mlflow { command } => mlflow_command::mlflow_cmd(&command),
        CliCommand::Serve { args, json } => serve_command::serve_cmd(&args, json),
        CliCommand::Doctor {
            device,
            model,
            dtype,
            json,
        } => doctor_command::doctor_cmd(&device, &model, &dtype, json),
        CliCommand::Screenshots { out, project, size } => {
            crate::app::screenshots(project, &out, size).map_err(CliError::failed)
        }
    }
}
