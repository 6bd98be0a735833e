//! `lablens reviews`: the clinician reviews of a run, unblinded: counts, mean rating and flag
//! rates per model, agreement between reviewers (Cohen's kappa), optionally as CSV.

use super::CliError;
use crate::project::predictions::run_dir;
use crate::project::reviews::{REVIEWS_FILE, ReviewFlag, read_reviews, summarize, write_csv};
use serde_json::json;
use std::path::Path;

fn kappa(k: Option<f64>) -> String {
    k.map_or("-".into(), |x| format!("{x:.3}"))
}

pub fn reviews_cmd(
    project: &Path,
    run: &str,
    csv: Option<&Path>,
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
        let value = json!({"file": path, "summary": summary, "skipped": skipped});
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?
        );
        return Ok(());
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
