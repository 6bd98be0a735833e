//! Aliases and their history: `aliases.ron` maps each alias (`production`, `staging`, any name)
//! to a version, and `history.jsonl` keeps every move of an alias, one JSON object a line (from,
//! to, who, when, why, whether a failed check was overridden, the gates then). A move is written
//! to the history first and to `aliases.ron` after, each atomically: the history is the record,
//! and a move whose `aliases.ron` write a kill prevented is taken as done (and `aliases.ron`
//! completed by the next move). A last history line cut short is reported and not trusted; any
//! other line or alias that is not what the registry wrote is an error naming its file and line.

use super::compare::Degradation;
use super::files::{MIB, json_error, read_bounded, read_text};
use super::gates::GateResult;
use super::version::{VersionRecord, read_version, verify_files};
use super::{RegisteredModel, check_name, version_list};
use crate::job::JobError;
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const ALIASES_FILE: &str = "aliases.ron";
pub const HISTORY_FILE: &str = "history.jsonl";
const MAX_ALIASES_BYTES: u64 = MIB;
const MAX_HISTORY_BYTES: u64 = 64 * MIB;

/// The version `alias` names in `model`, with its record: refused, naming the aliases there
/// are, when the alias is unknown, and naming the file when one of the version's files changed
/// since it was registered.
pub fn aliased_version(
    model: &RegisteredModel,
    alias: &str,
) -> Result<(u32, VersionRecord), JobError> {
    let state = read_state(model)?;
    let version = *state.aliases.get(alias).ok_or_else(|| {
        let known: Vec<&str> = state.aliases.keys().map(String::as_str).collect();
        JobError::Usage(format!(
            "{} has no alias {alias:?} (its aliases: {})",
            model.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })?;
    let record = read_version(model, version)?;
    if let Some(changed) = verify_files(&model.version_dir(version), &record).first() {
        return Err(JobError::Usage(changed.clone()));
    }
    Ok((version, record))
}

/// One move of an alias: a line of history.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub alias: String,
    /// The version it named before (`null` for its first move).
    pub from: Option<u32>,
    pub to: u32,
    pub who: String,
    /// RFC 3339, UTC.
    pub when: String,
    pub reason: Option<String>,
    /// A failed gate or degradation check was overridden with `--force`.
    pub forced: bool,
    /// The move undid an earlier one (`registry rollback`).
    #[serde(default)]
    pub rollback: bool,
    /// The project's gates evaluated on the version moved to.
    #[serde(default)]
    pub gates: Vec<GateResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degradation: Option<Degradation>,
}

/// The history as read: its whole lines, and a last line cut short by a write that did not end.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Each move with its line number.
    pub moves: Vec<(usize, AliasMove)>,
    /// The line number of a last line cut short (not trusted, dropped by the next move).
    pub torn: Option<usize>,
    /// The bytes of the whole lines, kept as they are when a move is added.
    kept: Vec<u8>,
}

impl History {
    /// The moves of `alias`, oldest first.
    pub fn of<'a>(&'a self, alias: &'a str) -> impl Iterator<Item = &'a (usize, AliasMove)> {
        self.moves.iter().filter(move |(_, m)| m.alias == alias)
    }

    /// The version each alias was moved to last, with that move's line.
    fn last_moves(&self) -> BTreeMap<&str, (usize, &AliasMove)> {
        self.moves
            .iter()
            .map(|(line, m)| (m.alias.as_str(), (*line, m)))
            .collect()
    }

    /// The version `alias` goes back to on a rollback: the one it held before the move that put
    /// its version there (moves undone by earlier rollbacks are passed over, so repeated
    /// rollbacks walk back in time); `None` when there is none.
    pub fn rollback_target(&self, alias: &str) -> Option<u32> {
        let mut standing: Vec<&AliasMove> = Vec::new();
        for (_, m) in self.of(alias) {
            if m.rollback {
                standing.pop();
            } else {
                standing.push(m);
            }
        }
        standing.last().and_then(|m| m.from)
    }
}

/// Reads history.jsonl (none yet: no moves).
pub fn read_history(model: &RegisteredModel) -> Result<History, JobError> {
    let path = model.dir.join(HISTORY_FILE);
    if !path.exists() {
        return Ok(History::default());
    }
    let bytes = read_bounded(&path, MAX_HISTORY_BYTES)?;
    let mut history = History::default();
    let mut standing: BTreeMap<String, u32> = BTreeMap::new();
    let mut at = 0;
    let pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    for (i, raw) in pieces.iter().enumerate() {
        let line = i + 1;
        let last = i + 1 == pieces.len();
        let end = at + raw.len() + usize::from(!last);
        let text = String::from_utf8_lossy(raw);
        if text.trim().is_empty() {
            at = end;
            continue;
        }
        let parsed = serde_json::from_str::<AliasMove>(&text);
        let m = match parsed {
            Ok(m) => m,
            // A last line without its newline: a write that did not finish.
            Err(_) if last => {
                history.torn = Some(line);
                break;
            }
            Err(e) => return Err(json_error(&path, Some(line), &text, &e)),
        };
        check_move(&path, line, &m, &mut standing)?;
        history.moves.push((line, m));
        at = end;
    }
    history.kept = bytes[..at.min(bytes.len())].to_vec();
    Ok(history)
}

/// Refuses a move that does not follow from the ones before it.
fn check_move(
    path: &Path,
    line: usize,
    m: &AliasMove,
    standing: &mut BTreeMap<String, u32>,
) -> Result<(), JobError> {
    let wrong = |field: &str, message: String| {
        JobError::file(
            path,
            format!("line {line}, field {field:?}: {message}; the history was edited by hand"),
        )
    };
    check_name("alias", &m.alias).map_err(|e| wrong("alias", e.to_string()))?;
    let before = standing.get(&m.alias).copied();
    if m.from != before {
        let was = before.map_or("no version".into(), |v| format!("version {v}"));
        return Err(wrong(
            "from",
            format!(
                "{} named {was} after the lines before it, not {:?}",
                m.alias, m.from
            ),
        ));
    }
    if m.from == Some(m.to) || m.to == 0 {
        return Err(wrong("to", format!("{} is not a move", m.to)));
    }
    standing.insert(m.alias.clone(), m.to);
    Ok(())
}

/// What a registered model's folder holds: its versions, its history and where each alias
/// stands.
#[derive(Debug, Clone)]
pub struct State {
    pub versions: Vec<u32>,
    pub history: History,
    /// Each alias and its version.
    pub aliases: BTreeMap<String, u32>,
    /// What reading found worth saying (a torn history line, a move aliases.ron lacks).
    pub notes: Vec<String>,
}

/// Reads the versions, the history and aliases.ron, and checks that they agree.
pub fn read_state(model: &RegisteredModel) -> Result<State, JobError> {
    // Read before the history, which a move writes first: aliases.ron is then never ahead of it.
    let path = model.dir.join(ALIASES_FILE);
    let text = read_text(&path, MAX_ALIASES_BYTES)?.unwrap_or_default();
    let history = read_history(model)?;
    let mut notes = Vec::new();
    if let Some(line) = history.torn {
        notes.push(format!(
            "{}: line {line} was cut short by a write that did not finish; it is not trusted \
             and the next move drops it",
            model.dir.join(HISTORY_FILE).display()
        ));
    }
    let written: BTreeMap<String, u32> = if text.trim().is_empty() {
        BTreeMap::new()
    } else {
        crate::project::from_ron(&text)
            .map(|(map, _)| map)
            .map_err(|e| {
                JobError::file(
                    &path,
                    format!(
                        "line {}, column {}: {}",
                        e.span.start.line, e.span.start.col, e.code
                    ),
                )
            })?
    };
    // Versions are only ever added: listed after the files that name them, every version they
    // name is seen even while another command registers and promotes.
    let versions = model.versions();
    let line_of = |alias: &str| {
        let quoted = format!("\"{alias}\"");
        text.lines()
            .position(|l| l.contains(&quoted))
            .map_or(0, |i| i + 1)
    };
    for (alias, version) in &written {
        let wrong = |message: String| {
            JobError::file(
                &path,
                format!("line {}, alias {alias:?}: {message}", line_of(alias)),
            )
        };
        check_name("alias", alias).map_err(|e| wrong(e.to_string()))?;
        if !versions.contains(version) {
            return Err(wrong(format!(
                "names version {version}, which does not exist (the versions are {})",
                version_list(&versions)
            )));
        }
    }
    let mut aliases = BTreeMap::new();
    let last = history.last_moves();
    for (alias, (line, m)) in &last {
        let said = written.get(*alias).copied();
        // Behind the history: a move written to it whose aliases.ron write had not happened
        // when the file was read, or never happened (the process was stopped).
        let behind =
            said != Some(m.to) && history.of(alias).any(|(_, earlier)| earlier.from == said);
        if behind {
            notes.push(format!(
                "{alias}: the move to version {} ({HISTORY_FILE} line {line}) is recorded but \
                 {ALIASES_FILE} does not have it yet; it is taken as done",
                m.to
            ));
        } else if said != Some(m.to) {
            return Err(JobError::file(
                &path,
                format!(
                    "line {}, alias {alias:?}: names {}, but {HISTORY_FILE} line {line} moved it \
                     to version {}; one of them was edited by hand",
                    line_of(alias),
                    said.map_or("no version".into(), |v| format!("version {v}")),
                    m.to
                ),
            ));
        }
        if !versions.contains(&m.to) {
            return Err(JobError::file(
                &model.dir.join(HISTORY_FILE),
                format!(
                    "line {line}: moves {alias} to version {}, which does not exist (the \
                     versions are {})",
                    m.to,
                    version_list(&versions)
                ),
            ));
        }
        aliases.insert(alias.to_string(), m.to);
    }
    if let Some(alias) = written.keys().find(|a| !last.contains_key(a.as_str())) {
        return Err(JobError::file(
            &path,
            format!(
                "line {}, alias {alias:?}: {HISTORY_FILE} has no move of it; it was edited by hand",
                line_of(alias)
            ),
        ));
    }
    Ok(State {
        versions,
        history,
        aliases,
        notes,
    })
}

/// Records `m` (the caller holds the model's lock and read `state` under it): the history
/// line first, then aliases.ron.
pub fn record_move(model: &RegisteredModel, state: &State, m: &AliasMove) -> Result<(), JobError> {
    let history_path = model.dir.join(HISTORY_FILE);
    let mut bytes = state.history.kept.clone();
    if bytes.last().is_some_and(|&b| b != b'\n') {
        bytes.push(b'\n');
    }
    let line = serde_json::to_string(m).map_err(|e| JobError::file(&history_path, e))?;
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    write_atomic(&history_path, &bytes).map_err(|e| JobError::file(&history_path, e))?;
    let mut aliases = state.aliases.clone();
    aliases.insert(m.alias.clone(), m.to);
    let path = model.dir.join(ALIASES_FILE);
    let text = ron::ser::to_string_pretty(&aliases, ron::ser::PrettyConfig::default())
        .map_err(|e| JobError::file(&path, e))?;
    write_atomic(&path, format!("{text}\n").as_bytes()).map_err(|e| JobError::file(&path, e))
}
