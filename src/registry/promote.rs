//! Moving an alias: `registry promote` (to a version, through the project's gates and, when
//! `production` moves over a version it already names, the degradation check) and `registry
//! rollback` (back to the version the alias named before its last standing move). Each holds
//! the model's lock from reading the registry to writing the move, and refuses a version whose
//! files changed since it was registered.

use super::aliases::{AliasMove, read_state, record_move};
use super::compare::{Degradation, compare};
use super::files::{now_rfc3339, user};
use super::gates::{GateResult, check_gates, check_settings, evaluate};
use super::version::{read_version, verify_files};
use super::{PRODUCTION, RegisteredModel, check_name, version_list};
use crate::job::JobError;
use crate::project::{OpenProject, PROJECT_FILE};
use serde::Serialize;

/// What `registry promote` asks.
#[derive(Debug, Clone, Copy)]
pub struct Promotion<'a> {
    pub version: u32,
    pub alias: &'a str,
    pub reason: Option<&'a str>,
    /// Move even though a gate or the degradation check fails (a reason is required).
    pub force: bool,
}

/// Why a promotion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refused {
    /// A gate failed (or could not be measured).
    Gates,
    /// The candidate is worse than production by more than the project allows.
    Degraded,
}

/// What a promotion or a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub model: String,
    pub alias: String,
    pub from: Option<u32>,
    pub to: u32,
    /// Whether the alias moved: a refused promotion leaves it where it was.
    pub moved: bool,
    pub refused: Option<Refused>,
    /// A failed check was overridden with `--force`.
    pub forced: bool,
    pub rollback: bool,
    pub reason: Option<String>,
    pub gates: Vec<GateResult>,
    pub degradation: Option<Degradation>,
    pub notes: Vec<String>,
}

fn given(reason: Option<&str>) -> Option<String> {
    reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

/// Moves `promotion.alias` to `promotion.version`, unless a check refuses it.
pub fn promote(
    project: &OpenProject,
    model: &RegisteredModel,
    promotion: &Promotion,
) -> Result<Moved, JobError> {
    check_name("--alias", promotion.alias)?;
    let reason = given(promotion.reason);
    if promotion.force && reason.is_none() {
        return Err(JobError::Usage(
            "--force needs --reason: the history records why a check was overridden".into(),
        ));
    }
    let file = project.dir.join(PROJECT_FILE);
    let gates = check_gates(&file, &project.project.gates)?;
    let (primary, max_drop) = check_settings(&file, &project.project.registry)?;
    let lock = model.lock("registry promote")?;
    let state = read_state(model)?;
    let mut notes = state.notes.clone();
    notes.extend(lock.took_over.clone());
    let version = promotion.version;
    let from = state.aliases.get(promotion.alias).copied();
    if from == Some(version) {
        return Err(JobError::Usage(format!(
            "{} already names version {version} of {}",
            promotion.alias, model.name
        )));
    }
    let record = checked_version(model, &state.versions, version)?;
    let results = evaluate(&gates, |m| record.measure(m));
    let guarded = promotion.alias == PRODUCTION;
    let degradation = match from {
        Some(current) if guarded => Some(compare(model, current, version, primary, max_drop)?),
        _ => None,
    };
    let refused = if guarded && results.iter().any(|g| !g.passed()) {
        Some(Refused::Gates)
    } else if degradation.as_ref().is_some_and(|d| d.degraded) {
        Some(Refused::Degraded)
    } else {
        None
    };
    let moved = refused.is_none() || promotion.force;
    let m = AliasMove {
        alias: promotion.alias.to_string(),
        from,
        to: version,
        who: user(),
        when: now_rfc3339(),
        reason,
        forced: refused.is_some() && promotion.force,
        rollback: false,
        gates: results,
        degradation,
    };
    if moved {
        record_move(model, &state, &m)?;
    }
    Ok(outcome(model, m, moved, refused, notes))
}

/// Moves `alias` back to the version it named before its last standing move.
pub fn rollback(
    project: &OpenProject,
    model: &RegisteredModel,
    alias: &str,
    reason: &str,
) -> Result<Moved, JobError> {
    check_name("--alias", alias)?;
    let reason = given(Some(reason))
        .ok_or_else(|| JobError::Usage("--reason: say why the alias goes back".into()))?;
    let gates = check_gates(&project.dir.join(PROJECT_FILE), &project.project.gates)?;
    let lock = model.lock("registry rollback")?;
    let state = read_state(model)?;
    let mut notes = state.notes.clone();
    notes.extend(lock.took_over.clone());
    let Some(&from) = state.aliases.get(alias) else {
        return Err(JobError::Usage(format!(
            "nothing to roll back: {} has no alias {alias:?} (it has {})",
            model.name,
            if state.aliases.is_empty() {
                "none".to_string()
            } else {
                state.aliases.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )));
    };
    let to = state.history.rollback_target(alias).ok_or_else(|| {
        JobError::Usage(format!(
            "nothing to roll back to: {alias} named no version of {} before version {from}",
            model.name
        ))
    })?;
    let record = checked_version(model, &state.versions, to)?;
    let m = AliasMove {
        alias: alias.to_string(),
        from: Some(from),
        to,
        who: user(),
        when: now_rfc3339(),
        reason: Some(reason),
        forced: false,
        rollback: true,
        gates: evaluate(&gates, |g| record.measure(g)),
        degradation: None,
    };
    record_move(model, &state, &m)?;
    Ok(outcome(model, m, true, None, notes))
}

/// Version `version`'s record, refused when it is not registered or its files changed.
fn checked_version(
    model: &RegisteredModel,
    versions: &[u32],
    version: u32,
) -> Result<super::version::VersionRecord, JobError> {
    if !versions.contains(&version) {
        return Err(JobError::Usage(format!(
            "{} has no version {version} (the versions are {})",
            model.name,
            version_list(versions)
        )));
    }
    let record = read_version(model, version)?;
    let changed = verify_files(&model.version_dir(version), &record);
    if !changed.is_empty() {
        return Err(JobError::file(
            &model.version_dir(version),
            format!(
                "the version is not as it was registered, so no alias moves to it: {}",
                changed.join("; ")
            ),
        ));
    }
    Ok(record)
}

fn outcome(
    model: &RegisteredModel,
    m: AliasMove,
    moved: bool,
    refused: Option<Refused>,
    notes: Vec<String>,
) -> Moved {
    Moved {
        model: model.name.clone(),
        alias: m.alias,
        from: m.from,
        to: m.to,
        moved,
        refused,
        forced: m.forced,
        rollback: m.rollback,
        reason: m.reason,
        gates: m.gates,
        degradation: m.degradation,
        notes,
    }
}
