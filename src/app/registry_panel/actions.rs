//! Register, Promote and Roll back: the forms the panel fills in, the confirmation each shows
//! (naming the gates that will be checked, and for production the degradation check), and the
//! work itself, done by the registry functions `lablens registry` calls.

use super::{Loaded, RegistryPanel};
use crate::project::OpenProject;
use crate::registry::promote::{Moved, Promotion, promote, rollback};
use crate::registry::{PRODUCTION, RegisteredModel, default_model_name, register};
use std::path::Path;

/// An action on the registry, as the user confirmed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Register {
        run: String,
        name: String,
        note: String,
    },
    Promote {
        name: String,
        version: u32,
        alias: String,
        reason: String,
        force: bool,
    },
    Rollback {
        name: String,
        alias: String,
        reason: String,
    },
}

/// What an action did.
#[derive(Debug, Clone)]
pub enum ActionOutcome {
    Registered {
        name: String,
        version: u32,
        run: String,
        notes: Vec<String>,
    },
    /// A promotion or a rollback, moved or refused.
    Moved(Box<Moved>),
}

/// Does `action` on the registry of the project in `dir`.
pub fn perform(dir: &Path, action: &Action) -> Result<ActionOutcome, String> {
    let project = OpenProject::open(dir).map_err(|e| e.to_string())?;
    let text = |e: crate::job::JobError| e.to_string();
    match action {
        Action::Register { run, name, note } => {
            let model = RegisteredModel::new(dir, name).map_err(text)?;
            let note = Some(note.trim()).filter(|n| !n.is_empty());
            let done = register(&project, &model, run, note).map_err(text)?;
            Ok(ActionOutcome::Registered {
                name: name.clone(),
                version: done.record.version,
                run: run.clone(),
                notes: done.notes,
            })
        }
        Action::Promote {
            name,
            version,
            alias,
            reason,
            force,
        } => {
            let model = RegisteredModel::existing(dir, name).map_err(text)?;
            let promotion = Promotion {
                version: *version,
                alias,
                reason: Some(reason.as_str()),
                force: *force,
            };
            let moved = promote(&project, &model, &promotion).map_err(text)?;
            Ok(ActionOutcome::Moved(Box::new(moved)))
        }
        Action::Rollback {
            name,
            alias,
            reason,
        } => {
            let model = RegisteredModel::existing(dir, name).map_err(text)?;
            let moved = rollback(&project, &model, alias, reason).map_err(text)?;
            Ok(ActionOutcome::Moved(Box::new(moved)))
        }
    }
}

/// A form being filled in before its action is confirmed.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Register {
        run: Option<String>,
        name: String,
        note: String,
    },
    Promote {
        version: u32,
        alias: String,
        reason: String,
        force: bool,
    },
    Rollback {
        alias: String,
        reason: String,
    },
}

impl Form {
    /// Register a run of the project: the newest one with an evaluation.
    pub fn register(panel: &RegistryPanel) -> Form {
        let loaded = panel.loaded.as_ref();
        let name = panel
            .state
            .model
            .clone()
            .or_else(|| loaded.map(|l| default_model_name(&l.dir)))
            .unwrap_or_else(|| "default".into());
        Form::Register {
            run: loaded.and_then(|l| l.runs.last().cloned()),
            name,
            note: String::new(),
        }
    }

    /// Promote the selected version to production.
    pub fn promote(version: u32) -> Form {
        Form::Promote {
            version,
            alias: PRODUCTION.into(),
            reason: String::new(),
            force: false,
        }
    }

    pub fn rollback() -> Form {
        Form::Rollback {
            alias: PRODUCTION.into(),
            reason: String::new(),
        }
    }

    /// The action the form asks for, or why it cannot be confirmed yet.
    pub fn action(&self, model: Option<&str>) -> Result<Action, String> {
        let model = || {
            model
                .map(str::to_string)
                .ok_or_else(|| "no registered model is chosen".to_string())
        };
        match self {
            Form::Register { run, name, note } => Ok(Action::Register {
                run: run
                    .clone()
                    .ok_or("choose a run with an adapter and eval.json")?,
                name: name.trim().to_string(),
                note: note.clone(),
            }),
            Form::Promote {
                version,
                alias,
                reason,
                force,
            } => {
                if *force && reason.trim().is_empty() {
                    return Err("forcing needs a reason: the history records it".into());
                }
                Ok(Action::Promote {
                    name: model()?,
                    version: *version,
                    alias: alias.trim().to_string(),
                    reason: reason.clone(),
                    force: *force,
                })
            }
            Form::Rollback { alias, reason } => {
                if reason.trim().is_empty() {
                    return Err("say why the alias goes back".into());
                }
                Ok(Action::Rollback {
                    name: model()?,
                    alias: alias.trim().to_string(),
                    reason: reason.clone(),
                })
            }
        }
    }
}

/// The gates a move checks, in words: `rouge1 >= 0.3 (low end of its 95% interval), fkgl <= 12`.
fn gate_list(loaded: &Loaded) -> String {
    match &loaded.gates {
        Err(e) => format!("(the project's gates cannot be read: {e})"),
        Ok(gates) if gates.is_empty() => "none (project.ron defines no gates)".into(),
        Ok(gates) => gates
            .iter()
            .map(|g| {
                let end = if g.lower_bound {
                    " (worse end of its 95% interval)"
                } else {
                    ""
                };
                format!(
                    "{} {} {}{end}",
                    g.metric.name,
                    g.compare.symbol(),
                    g.threshold
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What confirming the form will check and do, in sentences.
pub fn confirmation(form: &Form, panel: &RegistryPanel) -> Vec<String> {
    let Some(loaded) = &panel.loaded else {
        return Vec::new();
    };
    let current = panel.current();
    let aliases = current.map(|m| &m.listing.aliases);
    let gates = gate_list(loaded);
    match form {
        Form::Register { run, name, .. } => vec![
            format!(
                "Registers run {} as the next version of {name}: its adapter, eval.json, \
                 predictions and bias audit are copied and never change.",
                run.as_deref().unwrap_or("-")
            ),
            format!("The gates evaluated and recorded with it: {gates}."),
        ],
        Form::Promote { version, alias, .. } => {
            let alias = alias.trim();
            let from = aliases.and_then(|a| a.get(alias)).copied();
            let mut lines = vec![format!(
                "Moves {alias} from {} to version {version}.",
                from.map_or("nothing".into(), |v| format!("version {v}"))
            )];
            if alias == PRODUCTION {
                lines.push(format!("Checks the gates: {gates}."));
                if let (Some(from), Some((metric, drop))) = (from, loaded.settings) {
                    lines.push(format!(
                        "And the degradation check: {} of version {version} against version \
                         {from} on the same test records (paired), refused when more than \
                         {:.1}% worse.",
                        metric.name,
                        drop * 100.0
                    ));
                }
                lines.push("A failed check refuses the move unless forced with a reason.".into());
            } else {
                lines.push(format!(
                    "{alias} moves whatever the gates say; they are evaluated and recorded: {gates}."
                ));
            }
            lines
        }
        Form::Rollback { alias, .. } => {
            let alias = alias.trim();
            let target = current.and_then(|m| m.history.rollback_target(alias));
            let from = aliases.and_then(|a| a.get(alias)).copied();
            vec![
                match (from, target) {
                    (Some(from), Some(to)) => format!(
                        "Moves {alias} back from version {from} to version {to}, the version it \
                         named before."
                    ),
                    (Some(from), None) => format!(
                        "{alias} named no version before version {from}: there is nothing to \
                         roll back to."
                    ),
                    (None, _) => format!("This model has no alias {alias}."),
                },
                format!("The gates evaluated and recorded with the move: {gates}."),
            ]
        }
    }
}
