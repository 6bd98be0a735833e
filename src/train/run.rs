//! A run folder: `config.ron`, `status.json`, `metrics.jsonl`, `checkpoints/step-N/` and the
//! final `adapter/`. Every file that matters is written atomically and a checkpoint folder
//! appears whole (written beside, then renamed), so a run killed at any moment resumes from
//! its last checkpoint with nothing corrupt.

use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RUNS_DIR: &str = "runs";
pub const CONFIG_FILE: &str = "config.ron";
pub const STATUS_FILE: &str = "status.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const ADAPTER_DIR: &str = "adapter";
pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub status: RunStatus,
    /// The process that wrote `Running`, to tell a live run from a killed one.
    pub pid: u32,
    pub message: String,
    pub step: usize,
    pub total_steps: usize,
    pub best_step: Option<usize>,
    pub best_val_loss: Option<f64>,
    pub elapsed_s: f64,
}

/// Where a run resumes: everything the loop needs besides the adapter and the optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    pub step: usize,
    pub epoch: usize,
    /// Micro-batches of the epoch's plan already consumed.
    pub batch_index: usize,
    pub train_tokens: usize,
    pub train_seconds: f64,
    pub elapsed_s: f64,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<usize>,
    pub evals_since_best: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RunError {
    pub path: PathBuf,
    pub message: String,
}

pub(crate) fn run_err(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub dir: PathBuf,
}

impl RunDir {
    /// A new run folder under `project_dir/runs/`, named by the UTC time, holding `config`
    /// from the moment it appears (it is filled under a hidden name, then renamed).
    pub fn create(project_dir: &Path, config: &str) -> Result<RunDir, RunError> {
        let runs = project_dir.join(RUNS_DIR);
        std::fs::create_dir_all(&runs).map_err(|e| run_err(&runs, e))?;
        let stamp = crate::store::utc_stamp(std::time::SystemTime::now());
        let tmp = runs.join(format!(".{stamp}-{}.partial", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| run_err(&tmp, e))?;
        write_atomic(&tmp.join(CONFIG_FILE), config.as_bytes()).map_err(|e| run_err(&tmp, e))?;
        let mut n = 0;
        loop {
            let id = if n == 0 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = runs.join(&id);
            if dir.exists() {
                n += 1;
                continue;
            }
            std::fs::rename(&tmp, &dir).map_err(|e| run_err(&dir, e))?;
            return Ok(RunDir { id, dir });
        }
    }

    /// An existing run, by id (under the project) or by path.
    pub fn open(project_dir: &Path, run: &str) -> Result<RunDir, RunError> {
        let by_id = project_dir.join(RUNS_DIR).join(run);
        let dir = if by_id.is_dir() {
            by_id
        } else {
            PathBuf::from(run)
        };
        if !dir.join(CONFIG_FILE).is_file() {
            return Err(run_err(&dir, "not a run folder (no config.ron)"));
        }
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.to_string());
        Ok(RunDir { id, dir })
    }

    pub fn write_status(&self, status: &StatusFile) -> Result<(), RunError> {
        let path = self.dir.join(STATUS_FILE);
        let text = serde_json::to_string_pretty(status).map_err(|e| run_err(&path, e))?;
        write_atomic(&path, text.as_bytes()).map_err(|e| run_err(&path, e))
    }

    pub fn read_status(&self) -> Option<StatusFile> {
        let text = std::fs::read_to_string(self.dir.join(STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Appends one JSON line to `name` (metrics and the like); a line cut short by a kill is
    /// skipped by readers and dropped on resume.
    pub fn append_line(&self, name: &str, value: &serde_json::Value) -> Result<(), RunError> {
        let path = self.dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| run_err(&path, e))?;
        writeln!(f, "{value}").map_err(|e| run_err(&path, e))
    }

    /// Rewrites `metrics.jsonl` keeping the complete lines of steps up to `step` (none without
    /// one), for a resume from the checkpoint of that step.
    pub fn truncate_metrics(&self, step: Option<usize>) -> Result<(), RunError> {
        let path = self.dir.join(METRICS_FILE);
        let kept: Vec<serde_json::Value> = read_jsonl(&path)
            .into_iter()
            .filter(|v| {
                v["step"]
                    .as_u64()
                    .zip(step)
                    .is_some_and(|(s, last)| s as usize <= last)
            })
            .collect();
        let text: String = kept.iter().map(|v| format!("{v}\n")).collect();
        write_atomic(&path, text.as_bytes()).map_err(|e| run_err(&path, e))
    }

    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.dir.join(CHECKPOINTS_DIR).join(format!("step-{step}"))
    }

    /// Steps of the complete checkpoints, ascending.
    pub fn checkpoints(&self) -> Vec<usize> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(CHECKPOINTS_DIR)) else {
            return Vec::new();
        };
        let mut steps: Vec<usize> = entries
            .flatten()
            .filter(|e| e.path().join(STATE_FILE).is_file())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
            .collect();
        steps.sort_unstable();
        steps
    }

    /// Makes a checkpoint folder appear whole: `fill` writes into a fresh temporary folder that
    /// is then renamed over `step-N`.
    pub fn write_checkpoint(
        &self,
        step: usize,
        fill: impl FnOnce(&Path) -> Result<(), RunError>,
    ) -> Result<PathBuf, RunError> {
        let target = self.checkpoint_dir(step);
        self.write_dir_whole(&target, fill)?;
        Ok(target)
    }

    /// Makes the folder `target` appear whole: `fill` writes into a fresh `.NAME.partial` beside
    /// it, which then replaces it (the old one is moved aside first and removed after).
    pub fn write_dir_whole(
        &self,
        target: &Path,
        fill: impl FnOnce(&Path) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let parent = target.parent().unwrap_or(&self.dir);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.partial"));
        let old = parent.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| run_err(&tmp, e))?;
        fill(&tmp)?;
        let _ = std::fs::remove_dir_all(&old);
        if target.exists() {
            std::fs::rename(target, &old).map_err(|e| run_err(target, e))?;
        }
        std::fs::rename(&tmp, target).map_err(|e| run_err(target, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Removes the folders a killed process left half written or moved aside (checkpoints and
    /// the final adapter).
    pub fn remove_partial_checkpoints(&self) {
        for dir in [self.dir.join(CHECKPOINTS_DIR), self.dir.clone()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && (name.ends_with(".partial") || name.ends_with(".old")) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Removes checkpoints but the newest `keep` and the `protected` ones.
    pub fn prune_checkpoints(&self, keep: usize, protected: &[usize]) {
        let steps = self.checkpoints();
        let old = steps.len().saturating_sub(keep);
        for step in &steps[..old] {
            if !protected.contains(step) {
                let _ = std::fs::remove_dir_all(self.checkpoint_dir(*step));
            }
        }
    }
}

/// The complete JSON lines of a file (missing file: none).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A run as listed: its status, with a run whose process is gone shown as stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub dir: PathBuf,
    pub status: RunStatus,
    pub message: String,
    pub step: usize,
    pub total_steps: usize,
    pub best_val_loss: Option<f64>,
    pub elapsed_s: f64,
}

/// Every run of the project, oldest first.
pub fn list_runs(project_dir: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(project_dir.join(RUNS_DIR)) else {
        return Vec::new();
    };
    let mut runs: Vec<RunSummary> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().join(CONFIG_FILE).is_file())
        .map(|e| {
            let run = RunDir {
                id: e.file_name().to_string_lossy().into_owned(),
                dir: e.path(),
            };
            summarize(&run)
        })
        .collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    runs
}

fn summarize(run: &RunDir) -> RunSummary {
    let status = run.read_status();
    let (state, message) = match &status {
        Some(s) if s.status == RunStatus::Running && !process_alive(s.pid) => (
            RunStatus::Stopped,
            "interrupted: the process ended without finishing; resume it".to_string(),
        ),
        Some(s) => (s.status, s.message.clone()),
        None => (RunStatus::Stopped, "no status written".to_string()),
    };
    RunSummary {
        id: run.id.clone(),
        dir: run.dir.clone(),
        status: state,
        message,
        step: status.as_ref().map_or(0, |s| s.step),
        total_steps: status.as_ref().map_or(0, |s| s.total_steps),
        best_val_loss: status.as_ref().and_then(|s| s.best_val_loss),
        elapsed_s: status.as_ref().map_or(0.0, |s| s.elapsed_s),
    }
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_appear_whole_and_metrics_truncate_to_a_step() -> Result<(), RunError> {
        let tmp = tempfile::tempdir().map_err(|e| run_err(Path::new("tmp"), e))?;
        let run = RunDir::create(tmp.path(), "()")?;
        let failed = run.write_checkpoint(3, |_| Err(run_err(Path::new("x"), "disk full")));
        assert!(failed.is_err());
        assert!(run.checkpoints().is_empty());
        run.write_checkpoint(3, |d| {
            std::fs::write(d.join(STATE_FILE), "{}").map_err(|e| run_err(d, e))
        })?;
        assert_eq!(run.checkpoints(), [3]);
        for step in 1..=5 {
            run.append_line(
                METRICS_FILE,
                &serde_json::json!({"step": step, "loss": 1.0}),
            )?;
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(run.dir.join(METRICS_FILE))
            .and_then(|mut f| f.write_all(b"{\"step\": 6, \"lo"))
            .map_err(|e| run_err(&run.dir, e))?;
        assert_eq!(read_jsonl(&run.dir.join(METRICS_FILE)).len(), 5);
        run.truncate_metrics(Some(3))?;
        assert_eq!(read_jsonl(&run.dir.join(METRICS_FILE)).len(), 3);
        Ok(())
    }

    #[test]
    fn a_running_status_without_its_process_lists_as_stopped() -> Result<(), RunError> {
        let tmp = tempfile::tempdir().map_err(|e| run_err(Path::new("tmp"), e))?;
        let run = RunDir::create(tmp.path(), "()")?;
        let status = StatusFile {
            status: RunStatus::Running,
            pid: u32::MAX - 1,
            message: String::new(),
            step: 4,
            total_steps: 10,
            best_step: None,
            best_val_loss: None,
            elapsed_s: 1.0,
        };
        run.write_status(&status)?;
        let listed = list_runs(tmp.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, RunStatus::Stopped);
        assert!(listed[0].message.contains("interrupted"));
        run.write_status(&StatusFile {
            pid: std::process::id(),
            ..status
        })?;
        assert_eq!(list_runs(tmp.path())[0].status, RunStatus::Running);
        Ok(())
    }
}
