//! The model registry of a project (`registry/<model>/` in the project folder): numbered versions
//! that never change once written (`version-N/`: the run's adapter and reports, and
//! `version.json` with the lineage, the measurements and the gate results), aliases naming the
//! version that serves (`aliases.ron`), and the history of every alias move (`history.jsonl`).
//! Every write is atomic and made under the model folder's lock, so that two registrations never
//! share a number and a process killed at any moment leaves every version and the history whole.
//! `pipeline` runs train → eval → bias → register → gates → promote in one go, for CI.

mod add;
pub mod aliases;
pub mod compare;
mod files;
pub mod gates;
pub mod mlflow;
pub mod pipeline;
pub mod promote;
pub mod version;

#[cfg(test)]
mod tests;

pub use add::{Registered, register};

use crate::job::JobError;
use crate::store::lock::{FolderLock, LockError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const REGISTRY_DIR: &str = "registry";
/// The alias whose moves must pass the gates and the degradation check.
pub const PRODUCTION: &str = "production";
const VERSION_PREFIX: &str = "version-";
/// How long a registry command waits for another one to finish with the model's folder.
const LOCK_WAIT: Duration = Duration::from_secs(300);

/// A registered model: its folder under the project's `registry/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredModel {
    pub name: String,
    pub dir: PathBuf,
}

/// Refuses a model or alias name that is not a plain folder-safe word (`--name`, `--alias`).
pub fn check_name(option: &str, name: &str) -> Result<(), JobError> {
    let plain = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(JobError::Usage(format!(
            "{option}: {name:?} is not a name the registry takes: 1 to 64 letters, digits, '-', \
             '_' or '.', starting with a letter or digit"
        )))
    }
}

/// `1, 2, 3`, or `none`.
fn version_list(versions: &[u32]) -> String {
    if versions.is_empty() {
        return "none".into();
    }
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name a registration takes without `--name`: the project folder's, else `default`.
pub fn default_model_name(project_dir: &Path) -> String {
    project_dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| check_name("--name", n).is_ok())
        .unwrap_or_else(|| "default".into())
}

/// The names of the project's registered models, sorted.
pub fn models(project_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project_dir.join(REGISTRY_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| check_name("--name", n).is_ok())
        .collect();
    names.sort();
    names
}

impl RegisteredModel {
    /// The model `name` of the project, registered or about to be.
    pub fn new(project_dir: &Path, name: &str) -> Result<RegisteredModel, JobError> {
        check_name("--name", name)?;
        Ok(RegisteredModel {
            name: name.to_string(),
            dir: project_dir.join(REGISTRY_DIR).join(name),
        })
    }

    /// The model `name`, which must have been registered.
    pub fn existing(project_dir: &Path, name: &str) -> Result<RegisteredModel, JobError> {
        let model = RegisteredModel::new(project_dir, name)?;
        if !model.dir.is_dir() {
            let known = models(project_dir);
            return Err(JobError::Usage(format!(
                "no registered model {name:?} in {} ({}); register a run with `lablens registry add`",
                project_dir.join(REGISTRY_DIR).display(),
                if known.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("it has {}", known.join(", "))
                }
            )));
        }
        Ok(model)
    }

    pub fn version_dir(&self, version: u32) -> PathBuf {
        self.dir.join(format!("{VERSION_PREFIX}{version}"))
    }

    /// The numbers of the versions written whole, ascending (a version folder appears by a
    /// rename once complete; hidden folders are the unfinished ones).
    pub fn versions(&self) -> Vec<u32> {
        let mut found: Vec<u32> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name();
                let n: u32 = name.to_str()?.strip_prefix(VERSION_PREFIX)?.parse().ok()?;
                (n > 0 && name.to_str() == Some(&format!("{VERSION_PREFIX}{n}"))).then_some(n)
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// The model folder's lock, waited for while another registry command holds it.
    fn lock(&self, what: &str) -> Result<FolderLock, JobError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| JobError::file(&self.dir, e))?;
        let started = Instant::now();
        loop {
            match FolderLock::acquire(&self.dir, what) {
                Ok(lock) => return Ok(lock),
                Err(e @ LockError::Busy { .. }) if started.elapsed() >= LOCK_WAIT => {
                    return Err(JobError::Busy(e.to_string()));
                }
                Err(LockError::Busy { .. }) => std::thread::sleep(Duration::from_millis(50)),
                Err(e @ LockError::Io { .. }) => return Err(JobError::file(&self.dir, e)),
            }
        }
    }
}

/// A registered model as `registry list` shows it: every version's record, the aliases, and
/// what reading found worth saying.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    pub name: String,
    pub dir: PathBuf,
    pub versions: Vec<version::VersionRecord>,
    pub aliases: BTreeMap<String, u32>,
    pub notes: Vec<String>,
}

/// Reads the model's versions and aliases; a file that is not what the registry wrote is an
/// error naming it.
pub fn listing(model: &RegisteredModel) -> Result<Listing, JobError> {
    let state = aliases::read_state(model)?;
    let versions = state
        .versions
        .iter()
        .map(|&v| version::read_version(model, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Listing {
        name: model.name.clone(),
        dir: model.dir.clone(),
        versions,
        aliases: state.aliases,
        notes: state.notes,
    })
}
