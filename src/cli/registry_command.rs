//! `lablens registry`: a project's registered models. `add` registers a run as the next version,
//! `list` and `show` read them, `promote` moves an alias through the quality gates and the
//! degradation check, `rollback` moves it back, `history` lists the moves. Beyond the usual exit
//! codes: 3 when a gate refused a promotion, 4 when the candidate is worse than production.

use super::CliError;
use super::commands::open_project;
use super::progress::job_err;
use crate::project::OpenProject;
use crate::registry::aliases::read_state;
use crate::registry::gates::{GateResult, metric};
use crate::registry::promote::{Moved, Promotion, Refused, promote, rollback};
use crate::registry::version::{VersionRecord, read_version, verify_files};
use crate::registry::{Listing, RegisteredModel, default_model_name, listing, models, register};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;

/// The exit code of a promotion a gate refused.
pub const EXIT_GATE_FAILED: i32 = 3;
/// The exit code of a promotion refused as worse than production.
pub const EXIT_DEGRADED: i32 = 4;

#[derive(clap::Subcommand, Debug)]
pub enum RegistryCommand {
    /// Register a run's final adapter, with its evaluation and bias audit, as the next version
    /// of a model.
    Add {
        #[arg(long)]
        project: PathBuf,
        #[arg(long)]
        run: String,
        /// The registered model; default: the project folder's name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The versions of the project's registered models: metrics, gates, bias verdict, aliases.
    List {
        #[arg(long)]
        project: PathBuf,
        /// Only this model.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One version: lineage, metrics with intervals, gates, and its files checked against the
    /// SHA-256 recorded when it was registered (exit 2 when one changed).
    Show {
        #[arg(long)]
        project: PathBuf,
        name: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        version: u32,
        #[arg(long)]
        json: bool,
    },
    /// Move an alias to a version. `production` moves only when every gate of project.ron
    /// passes (exit 3 otherwise) and the version is not worse than the one in production on
    /// the same records (exit 4), unless --force with a --reason.
    Promote {
        #[arg(long)]
        project: PathBuf,
        name: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        version: u32,
        #[arg(long)]
        alias: String,
        /// Why; recorded in the history.
        #[arg(long)]
        reason: Option<String>,
        /// Move even though a check fails (needs --reason).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Move an alias back to the version it named before its last move.
    Rollback {
        #[arg(long)]
        project: PathBuf,
        name: String,
        #[arg(long)]
        alias: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Every move of the model's aliases: when, who, from, to, why, forced, the gates then.
    History {
        #[arg(long)]
        project: PathBuf,
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn registry_cmd(command: &RegistryCommand) -> Result<(), CliError> {
    match command {
        RegistryCommand::Add {
            project,
            run,
            name,
            note,
            json,
        } => add_cmd(
            &open_project(project)?,
            run,
            name.as_deref(),
            note.as_deref(),
            *json,
        ),
        RegistryCommand::List {
            project,
            name,
            json,
        } => list_cmd(&open_project(project)?, name.as_deref(), *json),
        RegistryCommand::Show {
            project,
            name,
            version,
            json,
        } => show_cmd(&open_project(project)?, name, *version, *json),
        RegistryCommand::Promote {
            project,
            name,
            version,
            alias,
            reason,
            force,
            json,
        } => {
            let project = open_project(project)?;
            let model = RegisteredModel::existing(&project.dir, name).map_err(job_err)?;
            let promotion = Promotion {
                version: *version,
                alias,
                reason: reason.as_deref(),
                force: *force,
            };
            let moved = promote(&project, &model, &promotion).map_err(job_err)?;
            report_move(&moved, *json)
        }
        RegistryCommand::Rollback {
            project,
            name,
            alias,
            reason,
            json,
        } => {
            let project = open_project(project)?;
            let model = RegisteredModel::existing(&project.dir, name).map_err(job_err)?;
            let moved = rollback(&project, &model, alias, reason).map_err(job_err)?;
            report_move(&moved, *json)
        }
        RegistryCommand::History {
            project,
            name,
            json,
        } => history_cmd(&open_project(project)?, name, *json),
    }
}

fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn add_cmd(
    project: &OpenProject,
    run: &str,
    name: Option<&str>,
    note: Option<&str>,
    json_out: bool,
) -> Result<(), CliError> {
    let name = name.map_or_else(|| default_model_name(&project.dir), str::to_string);
    let model = RegisteredModel::new(&project.dir, &name).map_err(job_err)?;
    let made = register(project, &model, run, note).map_err(job_err)?;
    for n in &made.notes {
        eprintln!("note: {n}");
    }
    let r = &made.record;
    eprintln!(
        "registered run {} as {} version {} ({})",
        r.run,
        r.model,
        r.version,
        made.dir.display()
    );
    if json_out {
        return print_json(&json!({
            "model": r.model, "version": r.version, "dir": made.dir, "record": r,
            "notes": made.notes,
        }));
    }
    print_version(project, r);
    Ok(())
}

/// `0.4123 [0.4011, 0.4232]` for the project's primary metric of a version, `-` without it.
fn primary_value(project: &OpenProject, r: &VersionRecord) -> (String, String) {
    let name = &project.project.registry.primary_metric;
    let def = metric(name).or_else(|| metric("rouge1"));
    let value = def
        .and_then(|d| r.measure(d))
        .map_or("-".into(), |m| match m.interval {
            Some([low, high]) => format!("{:.4} [{low:.4}, {high:.4}]", m.value),
            None => format!("{:.4}", m.value),
        });
    (def.map_or("rouge1", |d| d.name).to_string(), value)
}

fn list_cmd(project: &OpenProject, name: Option<&str>, json_out: bool) -> Result<(), CliError> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => models(&project.dir),
    };
    let listings = names
        .iter()
        .map(|n| {
            let model = RegisteredModel::existing(&project.dir, n)?;
            listing(&model)
        })
        .collect::<Result<Vec<Listing>, _>>()
        .map_err(job_err)?;
    for l in &listings {
        for n in &l.notes {
            eprintln!("note: {n}");
        }
    }
    if json_out {
        return print_json(&json!({"project": project.dir, "models": listings}));
    }
    if listings.is_empty() {
        println!(
            "{}: no registered model yet; register a run with `lablens registry add`",
            project.dir.display()
        );
    }
    for l in &listings {
        println!("{} ({} versions)", l.name, l.versions.len());
        for r in &l.versions {
            let (metric_name, value) = primary_value(project, r);
            let (passed, total) = r.gates_passed();
            let aliases: Vec<&str> = l
                .aliases
                .iter()
                .filter(|(_, v)| **v == r.version)
                .map(|(a, _)| a.as_str())
                .collect();
            println!(
                "  version {:<3} run {}  {}  {}  {metric_name} {value}  gates {passed}/{total}  \
                 bias: {}{}{}",
                r.version,
                r.run,
                r.created,
                r.user,
                r.bias.describe(),
                if aliases.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", aliases.join(", "))
                },
                r.note
                    .as_deref()
                    .map_or(String::new(), |n| format!("  {n:?}"))
            );
        }
    }
    Ok(())
}

fn show_cmd(
    project: &OpenProject,
    name: &str,
    version: u32,
    json_out: bool,
) -> Result<(), CliError> {
    let model = RegisteredModel::existing(&project.dir, name).map_err(job_err)?;
    let state = read_state(&model).map_err(job_err)?;
    if !state.versions.contains(&version) {
        return Err(CliError::usage(format!(
            "{name} has no version {version} ({} versions)",
            state.versions.len()
        )));
    }
    let record = read_version(&model, version).map_err(job_err)?;
    let dir = model.version_dir(version);
    let changed = verify_files(&dir, &record);
    let aliases: Vec<&String> = state
        .aliases
        .iter()
        .filter(|(_, v)| **v == version)
        .map(|(a, _)| a)
        .collect();
    for n in &state.notes {
        eprintln!("note: {n}");
    }
    if json_out {
        print_json(&json!({
            "model": name, "version": record, "dir": dir, "aliases": aliases,
            "files_intact": changed.is_empty(), "changed": changed, "notes": state.notes,
        }))?;
    } else {
        print_version(project, &record);
        println!(
            "aliases: {}",
            if aliases.is_empty() {
                "none".to_string()
            } else {
                aliases
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{}: files changed since the version was registered: {}",
            dir.display(),
            changed.join("; ")
        )))
    }
}

fn print_version(project: &OpenProject, r: &VersionRecord) {
    println!("{} version {} (run {})", r.model, r.version, r.run);
    println!(
        "  created {} by {}{}",
        r.created,
        r.user,
        r.note
            .as_deref()
            .map_or(String::new(), |n| format!(": {n}"))
    );
    let b = &r.base_model;
    println!(
        "  base model {}{}",
        b.source,
        b.sha256
            .as_deref()
            .map_or(String::new(), |s| format!(" (sha256 {s})"))
    );
    let d = &r.dataset;
    println!(
        "  dataset {} (sha256 {}), split {:?} seed {}; evaluated on {} records of {}",
        d.name,
        d.sha256.as_deref().unwrap_or("-"),
        d.split_ratios,
        d.split_seed,
        d.evaluated_records,
        d.evaluated_split
    );
    let (metric_name, value) = primary_value(project, r);
    println!("  {metric_name} {value}");
    if let Some(s) = r.safety_flags_per_example {
        println!(
            "  safety flags per output {:.4} [{:.4}, {:.4}]",
            s.value, s.low, s.high
        );
    }
    println!("  bias: {}", r.bias.describe());
    print_gates("gates when registered", &r.gates);
    for f in &r.files {
        println!("  {} ({} bytes, sha256 {})", f.path, f.bytes, f.sha256);
    }
}

fn print_gates(title: &str, gates: &[GateResult]) {
    if gates.is_empty() {
        println!("  {title}: project.ron defines none");
    } else {
        println!("  {title}:");
        for g in gates {
            println!("    {}", g.describe());
        }
    }
}

/// Prints a promotion's or a rollback's result; a refused promotion exits 3 or 4.
fn report_move(m: &Moved, json_out: bool) -> Result<(), CliError> {
    for n in &m.notes {
        eprintln!("note: {n}");
    }
    if json_out {
        print_json(m)?;
    } else {
        let version = |v: Option<u32>| v.map_or("no version".into(), |v| format!("version {v}"));
        let (from, to) = (version(m.from), version(Some(m.to)));
        match (m.moved, m.rollback, m.forced) {
            (false, _, _) => println!("{} {}: stays at {from}, {to} refused", m.model, m.alias),
            (true, true, _) => println!("{} {} rolled back: {from} → {to}", m.model, m.alias),
            (true, false, forced) => println!(
                "{} {}: {from} → {to}{}",
                m.model,
                m.alias,
                if forced { " (forced)" } else { "" }
            ),
        }
        print_gates("gates", &m.gates);
        if let Some(d) = &m.degradation {
            println!("  against production: {}", d.describe());
        }
    }
    let Some(refused) = m.refused.filter(|_| !m.moved) else {
        return Ok(());
    };
    let (code, why) = match refused {
        Refused::Gates => {
            let failed: Vec<String> = m
                .gates
                .iter()
                .filter(|g| !g.passed())
                .map(GateResult::describe)
                .collect();
            (
                EXIT_GATE_FAILED,
                format!("gates failed: {}", failed.join("; ")),
            )
        }
        Refused::Degraded => (
            EXIT_DEGRADED,
            m.degradation
                .as_ref()
                .map_or("worse than production".into(), |d| d.describe()),
        ),
    };
    Err(CliError {
        code,
        message: format!(
            "{} {} not moved to version {}: {why}; --force --reason TEXT overrides",
            m.model, m.alias, m.to
        ),
    })
}

fn history_cmd(project: &OpenProject, name: &str, json_out: bool) -> Result<(), CliError> {
    let model = RegisteredModel::existing(&project.dir, name).map_err(job_err)?;
    let state = read_state(&model).map_err(job_err)?;
    for n in &state.notes {
        eprintln!("note: {n}");
    }
    let moves = &state.history.moves;
    if json_out {
        let lines: Vec<serde_json::Value> = moves
            .iter()
            .map(|(line, m)| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("line".into(), json!(line));
                }
                v
            })
            .collect();
        return print_json(&json!({
            "model": name, "moves": lines, "aliases": state.aliases,
            "torn_line": state.history.torn, "notes": state.notes,
        }));
    }
    if moves.is_empty() {
        println!("{name}: no alias has been moved yet");
    }
    for (_, m) in moves {
        println!(
            "{}  {:<12} {} → {}  by {}{}{}{}",
            m.when,
            m.alias,
            m.from.map_or("-".into(), |v| v.to_string()),
            m.to,
            m.who,
            if m.rollback { "  rollback" } else { "" },
            if m.forced { "  FORCED" } else { "" },
            m.reason
                .as_deref()
                .map_or(String::new(), |r| format!("  {r:?}"))
        );
    }
    Ok(())
}
