//! `lablens reviews`: the clinician reviews of a run, unblinded: counts, mean rating and flag
//! rates per model, agreement between reviewers (Cohen's kappa), optionally as CSV; and the
//! choice of the records its reviewers see.

use super::CliError;
use crate::project::predictions::{PREDICTIONS_FILE, parse_predictions, run_dir};
use crate::project::reviews::{
    REVIEWS_FILE, ReviewFlag, clear_review_set, read_review_set, read_reviews, review_set_path,
    summarize, write_csv, write_review_set,
};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What `--choose` / `--choose-all` ask of the records reviewers see.
pub enum Choice {
    Keep,
    /// The ids in this file.
    Records(PathBuf),
    All,
}

/// Bounds on the files read here: lists of ids and a run's predictions.
const MAX_IDS_BYTES: u64 = 16 << 20;
const MAX_PREDICTIONS_BYTES: u64 = 1 << 30;

/// The ids of `file`, one a line, each one the run's predictions hold, none twice.
fn read_choice(file: &Path, run_dir: &Path) -> Result<Vec<String>, CliError> {
    let usage = |m: String| CliError::usage(format!("--choose: {}: {m}", file.display()));
    let bytes = crate::data::load::read_bounded(file, MAX_IDS_BYTES)
        .map_err(|e| CliError::usage(format!("--choose: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| usage(format!("not UTF-8 text ({e})")))?;
    let predictions = run_dir.join(PREDICTIONS_FILE);
    let evaluated =
        crate::data::load::read_bounded(&predictions, MAX_PREDICTIONS_BYTES).map_err(|e| {
            CliError::usage(format!(
                "--choose: the run has no readable predictions: {e}"
            ))
        })?;
    let (rows, _) = parse_predictions(&evaluated);
    let known: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        let line = i + 1;
        if !known.contains(id) {
            return Err(usage(format!(
                "line {line}: {id:?} is not a record of {}",
                predictions.display()
            )));
        }
        if !seen.insert(id.to_string()) {
            return Err(usage(format!("line {line}: {id:?} is chosen twice")));
        }
        ids.push(id.to_string());
    }
    if ids.is_empty() {
        return Err(usage("no record ids in it".into()));
    }
    Ok(ids)
}

fn kappa(k: Option<f64>) -> String {
    k.map_or("-".into(), |x| format!("{x:.3}"))
}

pub fn reviews_cmd(
    project: &Path,
    run: &str,
    csv: Option<&Path>,
    choice: &Choice,
    json_out: bool,
) -> Result<(), CliError> {
    let project = super::commands::open_project(project)?;
    let dir = run_dir(&project.dir, run);
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "--run: no run {run:?} in {}",
            project.dir.display()
        )));
    }
    let path = dir.join(REVIEWS_FILE);
    let set_path = review_set_path(&path);
    match choice {
        Choice::Keep => {}
        Choice::Records(file) => {
            let ids = read_choice(file, &dir)?;
            write_review_set(&set_path, &ids).map_err(|e| CliError::failed(e.to_string()))?;
            eprintln!(
                "reviewers of {run} will see {} chosen records ({})",
                ids.len(),
                set_path.display()
            );
        }
        Choice::All => {
            clear_review_set(&set_path).map_err(|e| CliError::failed(e.to_string()))?;
            eprintln!("reviewers of {run} will see every record");
        }
    }
    let chosen = read_review_set(&set_path).map_err(|e| CliError::usage(e.to_string()))?;
    let (lines, issues) = read_reviews(&path).map_err(|e| CliError::usage(e.to_string()))?;
    for issue in &issues {
        eprintln!("{}: skipped {issue}", path.display());
    }
    let summary = summarize(&lines);
    if let Some(out) = csv {
        let n = write_csv(out, &lines).map_err(|e| CliError::failed(e.to_string()))?;
        eprintln!("wrote {n} reviews to {}", out.display());
    }
    if json_out {
        let skipped: Vec<_> = issues
            .iter()
            .map(|i| json!({"line": i.line, "message": i.message}))
            .collect();
        let value = json!({
            "file": path, "summary": summary, "skipped": skipped,
            "chosen_records": chosen,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?
        );
        return Ok(());
    }
    if let Some(ids) = &chosen {
        println!(
            "reviewers see {} chosen records ({})",
            ids.len(),
            set_path.display()
        );
    }
    if lines.is_empty() {
        println!("{}: no reviews yet", path.display());
        return Ok(());
    }
    println!(
        "{} reviews ({} lines with corrections) by {} of {} records; {} with both versions rated",
        summary.reviews,
        summary.lines,
        summary.reviewers.join(", "),
        summary.records,
        summary.complete
    );
    for s in &summary.sources {
        let flags: Vec<String> = ReviewFlag::ALL
            .iter()
            .map(|f| format!("{} {:.0}%", f.name(), s.flag_rates[f] * 100.0))
            .collect();
        println!(
            "{}: {} rated, mean rating {}; {}",
            s.source,
            s.rated,
            s.mean_rating.map_or("-".into(), |x| format!("{x:.2}")),
            flags.join(", ")
        );
    }
    for a in &summary.agreement {
        let flags: Vec<String> = ReviewFlag::ALL
            .iter()
            .map(|f| format!("{} {}", f.name(), kappa(a.flag_kappa[f])))
            .collect();
        println!(
            "{} vs {}: {} outputs rated by both, same rating {}, kappa ratings {}; flags: {}",
            a.reviewers[0],
            a.reviewers[1],
            a.outputs,
            a.exact.map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
            kappa(a.rating_kappa),
            flags.join(", ")
        );
    }
    Ok(())
}
