//! The headless subcommands over the data layer.

use super::CliError;
use crate::data::dataset::{OpenOptions, open_dataset, split_file_names, to_jsonl};
use crate::data::load::LoadOptions;
use crate::data::record::{Split, Task};
use crate::data::split::{SplitSpec, assign_splits, partition};
use crate::data::synth::{Disparity, generate};
use crate::data::validate::Limits;
use crate::job::{Job, Progress};
use crate::project::OpenProject;
use crate::store::write_atomic;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// Opens the project of `--project`, saying on stderr what of `project.ron` it ignored.
pub fn open_project(path: &Path) -> Result<OpenProject, CliError> {
    let project =
        OpenProject::open(path).map_err(|e| CliError::usage(format!("--project: {e}")))?;
    for w in &project.warnings {
        eprintln!("warning: {w}");
    }
    Ok(project)
}

fn parse_task(name: &str) -> Result<Task, CliError> {
    Task::parse(name).ok_or_else(|| {
        CliError::usage(format!(
            "--task: unknown task {name:?}; expected discharge, soap or qa"
        ))
    })
}

fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub fn gen_data(
    task: &str,
    n: usize,
    seed: u64,
    out: &Path,
    disparity: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let task = parse_task(task)?;
    let disparity = disparity
        .map(Disparity::parse)
        .transpose()
        .map_err(|e| CliError::usage(format!("--disparity: {e}")))?;
    let started = Instant::now();
    let records = generate(task, n, seed, disparity.as_ref());
    let bytes = to_jsonl(&records);
    write_atomic(out, &bytes).map_err(|e| CliError::failed(format!("{}: {e}", out.display())))?;
    let affected = records
        .iter()
        .filter(|r| r.meta.contains_key("disparity_applied"))
        .count();
    eprintln!(
        "wrote {} {} records to {} ({:.1} MB) in {:.2}s{}",
        records.len(),
        task,
        out.display(),
        bytes.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        if disparity.is_some() {
            format!("; disparity applied to {affected} records")
        } else {
            String::new()
        }
    );
    if json {
        print_json(&json!({
            "path": out,
            "task": task,
            "records": records.len(),
            "seed": seed,
            "bytes": bytes.len(),
            "disparity_records": affected,
        }))?;
    }
    Ok(())
}

/// How many of a file's load issues a command prints before it only counts the rest.
const ISSUES_SHOWN: usize = 20;

/// Loads a data file for a command, printing each line it skipped (or renamed) to stderr; no
/// usable record is bad input (exit 2).
pub(super) fn load_reported(
    path: &Path,
    options: &LoadOptions,
) -> Result<crate::data::load::LoadedDataset, CliError> {
    let loaded =
        crate::data::load::load_path(path, options).map_err(|e| CliError::usage(e.to_string()))?;
    for issue in loaded.issues.iter().take(ISSUES_SHOWN) {
        eprintln!("{issue}");
    }
    if loaded.issues.len() > ISSUES_SHOWN {
        eprintln!("... and {} more issues", loaded.issues.len() - ISSUES_SHOWN);
    }
    if loaded.records.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no usable records ({} issues)",
            path.display(),
            loaded.issues.len()
        )));
    }
    Ok(loaded)
}

fn open_with_progress(
    path: &Path,
    options: &OpenOptions,
) -> Result<crate::data::dataset::DatasetView, CliError> {
    let started = Instant::now();
    let mut show = |p: &Progress| {
        eprintln!(
            "[{}/{}] {} ({:.2}s)",
            p.done,
            p.total,
            p.stage,
            started.elapsed().as_secs_f64()
        );
    };
    open_dataset(path, options, &mut Job::unstopped(&mut show)).map_err(super::progress::job_err)
}

pub fn validate(
    data: &Path,
    task: Option<&str>,
    (max_input_words, max_target_words): (usize, usize),
    read: &super::ReadArgs,
    json: bool,
) -> Result<(), CliError> {
    let default_task = task.map(parse_task).transpose()?;
    let limits = Limits {
        input_words: (Limits::default().input_words.0, max_input_words),
        target_words: (Limits::default().target_words.0, max_target_words),
    };
    let options = OpenOptions {
        load: read.load_options(default_task),
        limits,
        split: SplitSpec::default(),
    };
    let view = open_with_progress(data, &options)?;
    for issue in view.loaded.issues.iter().take(50) {
        eprintln!("{issue}");
    }
    if view.loaded.issues.len() > 50 {
        eprintln!("... and {} more issues", view.loaded.issues.len() - 50);
    }
    for line in view.report.summary_lines() {
        eprintln!("{line}");
    }
    if json {
        let value = serde_json::to_value(&view.report)
            .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
        print_json(&value)?;
    }
    let failed: Vec<&str> = view
        .report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{}: checks failed: {}",
            data.display(),
            failed.join(", ")
        )))
    }
}

pub fn split(
    data: &Path,
    ratios: &str,
    seed: u64,
    out: &Path,
    read: &super::ReadArgs,
    json: bool,
) -> Result<(), CliError> {
    let ratios = SplitSpec::parse_ratios(ratios).map_err(|e| CliError::usage(e.to_string()))?;
    let spec = SplitSpec { ratios, seed };
    let options = read.load_options(None);
    let loaded = load_reported(data, &options)?;
    let splits = assign_splits(&loaded.records, &spec);
    let parts = partition(&loaded.records, &splits);
    let files = split_file_names(out);
    let mut summary = serde_json::Map::new();
    for ((split, records), file) in Split::ALL.iter().zip(&parts).zip(&files) {
        write_atomic(file, &to_jsonl(records))
            .map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
        let patients: std::collections::HashSet<&str> =
            records.iter().map(|r| r.patient_key()).collect();
        eprintln!(
            "{:<10} {:>6} records {:>6} patients -> {}",
            split.name(),
            records.len(),
            patients.len(),
            file.display()
        );
        summary.insert(
            split.name().to_string(),
            json!({"records": records.len(), "patients": patients.len(), "path": file}),
        );
    }
    let manifest = json!({
        "source": data,
        "source_sha256": loaded.sha256,
        "ratios": spec.ratios,
        "seed": spec.seed,
        "skipped_lines": loaded.issues.len(),
        "splits": summary,
    });
    let manifest_path = out.join("split.json");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
    write_atomic(&manifest_path, text.as_bytes())
        .map_err(|e| CliError::failed(format!("{}: {e}", manifest_path.display())))?;
    if json {
        print_json(&manifest)?;
    }
    Ok(())
}
