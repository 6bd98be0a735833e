//! `lablens doctor`: what a user with a workstation GPU runs first.

use super::CliError;
use crate::model::doctor::{Report, examine};
use crate::model::loading::{DeviceChoice, Precision};
use std::path::Path;

pub fn doctor_cmd(device: &str, model: &Path, dtype: &str, json: bool) -> Result<(), CliError> {
    let choice = DeviceChoice::parse(device).map_err(|e| CliError::usage(e.to_string()))?;
    let precision = Precision::parse(dtype).map_err(|e| CliError::usage(e.to_string()))?;
    let report = examine(&choice, model, precision);
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::failed(e.to_string()))?;
        println!("{text}");
    } else {
        eprint!("{}", render(&report));
    }
    if report.ok() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} of {} checks failed (see above)",
            report.checks.iter().filter(|c| !c.ok).count(),
            report.checks.len()
        )))
    }
}

/// The report for a person: the machine's facts, then one line per check with its advice.
pub fn render(report: &Report) -> String {
    let f = &report.facts;
    let mut out = String::new();
    let unknown = || "unknown".to_string();
    out.push_str(&format!(
        "build:   {}\n",
        if f.cuda_build {
            format!(
                "CUDA, kernels for compute capability {}",
                f.built_for.clone().unwrap_or_else(unknown)
            )
        } else {
            "CPU only".into()
        }
    ));
    out.push_str(&format!(
        "driver:  {} (CUDA {})\n",
        f.driver_version.clone().unwrap_or_else(unknown),
        f.driver_cuda.clone().unwrap_or_else(unknown)
    ));
    if f.gpus.is_empty() {
        out.push_str(&format!(
            "GPUs:    none{}\n",
            f.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    for g in &f.gpus {
        out.push_str(&format!("cuda:{}:  {}\n", g.index, g.summary()));
    }
    out.push_str(&format!("checks on {}:\n", report.device));
    for c in &report.checks {
        out.push_str(&format!(
            "  [{}] {}: {}\n",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        ));
        if let Some(a) = &c.advice {
            out.push_str(&format!("         -> {a}\n"));
        }
    }
    out
}
