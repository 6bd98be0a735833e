//! `pipeline.json` in the run folder: the pipeline's settings, each stage's status, times and
//! result, and what it came to. Written atomically after every stage, so a pipeline killed at any
//! moment leaves a whole file that says which stages finished, and `--resume` reads it back.

use super::super::files::{MIB, json_error, now_rfc3339, read_bounded};
use super::super::{PRODUCTION, check_name};
use crate::job::JobError;
use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const PIPELINE_FILE: &str = "pipeline.json";
/// The layout of pipeline.json this program writes and reads.
const FORMAT: u32 = 1;
const MAX_PIPELINE_BYTES: u64 = 4 * MIB;
/// What `lablens eval` generates at most per record by default, and so the pipeline too.
pub const MAX_NEW_TOKENS: usize = 256;

/// The stages, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    Train,
    Eval,
    Bias,
    Register,
    Gates,
    Promote,
}

impl StageName {
    pub const ALL: [StageName; 6] = [
        StageName::Train,
        StageName::Eval,
        StageName::Bias,
        StageName::Register,
        StageName::Gates,
        StageName::Promote,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageName::Train => "train",
            StageName::Eval => "eval",
            StageName::Bias => "bias",
            StageName::Register => "register",
            StageName::Gates => "gates",
            StageName::Promote => "promote",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Not reached yet (a stage before it failed, or the pipeline was killed).
    Pending,
    /// Under way, or killed while under way.
    Running,
    Done,
    /// The job failed (`error` says why), a gate failed, or the promotion was refused.
    Failed,
    /// Not needed: no `--promote-to`, or a gate failed before the promotion.
    Skipped,
}

/// One stage as pipeline.json records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: StageName,
    pub status: StageStatus,
    /// RFC 3339, UTC.
    pub started: Option<String>,
    pub finished: Option<String>,
    pub elapsed_s: Option<f64>,
    /// What the stage produced: the training summary, the evaluation's corpus metrics, the
    /// audit's verdict, the version registered, the gates, the alias move.
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Why it was skipped, or that it was found done by an earlier start.
    pub note: Option<String>,
}

/// What the pipeline came to, and the exit code that says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Registered and the alias moved to the new version (exit 0).
    Promoted,
    /// Registered; no alias to move (exit 0).
    Registered,
    /// Registered, a gate failed, the alias not moved (exit 3).
    GateFailed,
    /// Registered, worse than production, not promoted (exit 4).
    Degraded,
    /// A stage's job failed (exit 1, or 2 for bad input).
    Failed,
}

/// The exit codes beyond 0, 1 and 2.
pub const EXIT_GATE_FAILED: i32 = 3;
pub const EXIT_DEGRADED: i32 = 4;

impl Outcome {
    pub fn exit_code(self, bad_input: bool) -> i32 {
        match self {
            Outcome::Promoted | Outcome::Registered => 0,
            Outcome::GateFailed => EXIT_GATE_FAILED,
            Outcome::Degraded => EXIT_DEGRADED,
            Outcome::Failed if bad_input => 2,
            Outcome::Failed => 1,
        }
    }
}

/// What the pipeline was asked to do beyond training; a resumed pipeline keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The registered model the run becomes a version of.
    pub model: String,
    /// The alias moved to the new version when it passes.
    pub promote_to: Option<String>,
    pub note: Option<String>,
    /// Records of the test split evaluated (all without).
    pub eval_limit: Option<usize>,
    pub eval_batch: usize,
    pub max_new_tokens: usize,
}

/// The settings a command line gives: `None` where it gave nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    pub model: Option<String>,
    pub promote_to: Option<String>,
    pub note: Option<String>,
    pub eval_limit: Option<usize>,
    pub eval_batch: Option<usize>,
    pub max_new_tokens: Option<usize>,
}

impl Given {
    /// The settings of a new pipeline: what was given, else the defaults (the model named like
    /// the project folder, `lablens eval`'s batch and token limit).
    pub fn settings(&self, default_model: &str) -> Result<Settings, JobError> {
        let s = Settings {
            model: self.model.clone().unwrap_or_else(|| default_model.into()),
            promote_to: self.promote_to.clone(),
            note: self.note.clone(),
            eval_limit: self.eval_limit,
            eval_batch: self.eval_batch.unwrap_or(crate::eval::job::DEFAULT_BATCH),
            max_new_tokens: self.max_new_tokens.unwrap_or(MAX_NEW_TOKENS),
        };
        check_name("--register", &s.model)?;
        if let Some(alias) = &s.promote_to {
            check_name("--promote-to", alias)?;
        }
        if s.eval_batch == 0 || s.max_new_tokens == 0 || s.eval_limit == Some(0) {
            return Err(JobError::Usage(
                "--limit, --batch and --max-new-tokens must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    /// A resumed pipeline's settings: the recorded ones; an option given with another value
    /// than the recorded one is refused, naming it.
    pub fn resumed(&self, recorded: &Settings, run: &str) -> Result<Settings, JobError> {
        let differs = |option: &str, given: String, was: String| {
            JobError::Usage(format!(
                "{option}: the pipeline of run {run} was started with {was}, not {given}; leave \
                 it out to resume, or start a new pipeline"
            ))
        };
        let show = |v: &Option<String>| v.as_deref().map_or("none".into(), |v| format!("{v:?}"));
        if let Some(m) = self.model.as_ref().filter(|m| **m != recorded.model) {
            return Err(differs(
                "--register",
                format!("{m:?}"),
                show(&Some(recorded.model.clone())),
            ));
        }
        if self.promote_to.is_some() && self.promote_to != recorded.promote_to {
            return Err(differs(
                "--promote-to",
                show(&self.promote_to),
                show(&recorded.promote_to),
            ));
        }
        if self.note.is_some() && self.note != recorded.note {
            return Err(differs("--note", show(&self.note), show(&recorded.note)));
        }
        let number = |v: Option<usize>| v.map_or("none".into(), |v| v.to_string());
        if self.eval_limit.is_some() && self.eval_limit != recorded.eval_limit {
            return Err(differs(
                "--limit",
                number(self.eval_limit),
                number(recorded.eval_limit),
            ));
        }
        if let Some(b) = self.eval_batch.filter(|b| *b != recorded.eval_batch) {
            return Err(differs(
                "--batch",
                b.to_string(),
                recorded.eval_batch.to_string(),
            ));
        }
        if let Some(t) = self
            .max_new_tokens
            .filter(|t| *t != recorded.max_new_tokens)
        {
            return Err(differs(
                "--max-new-tokens",
                t.to_string(),
                recorded.max_new_tokens.to_string(),
            ));
        }
        Ok(recorded.clone())
    }
}

/// `pipeline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub format: u32,
    pub run: String,
    pub run_dir: PathBuf,
    pub started: String,
    pub updated: String,
    /// How many times the pipeline of this run was started (1, then one more per resume).
    pub starts: u32,
    pub settings: Settings,
    pub stages: Vec<Stage>,
    /// The version registered, the gates' results, the alias move and the comparison with
    /// production, once known.
    pub version: Option<u32>,
    pub gates: Vec<super::super::gates::GateResult>,
    pub gates_passed: Option<bool>,
    pub alias: Option<AliasResult>,
    pub degradation: Option<super::super::compare::Degradation>,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i32>,
    /// Whether this start began a stage: one that did not (another process holds the run) leaves
    /// the file as it was.
    #[serde(skip)]
    pub began: bool,
}

/// Where the pipeline left the alias it was asked to move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasResult {
    pub alias: String,
    pub from: Option<u32>,
    pub to: u32,
    pub moved: bool,
}

impl PipelineRecord {
    pub fn new(run: &str, run_dir: &Path, settings: Settings) -> PipelineRecord {
        let now = now_rfc3339();
        PipelineRecord {
            format: FORMAT,
            run: run.into(),
            run_dir: run_dir.to_path_buf(),
            started: now.clone(),
            updated: now,
            starts: 1,
            settings,
            stages: StageName::ALL
                .iter()
                .map(|&name| Stage {
                    name,
                    status: StageStatus::Pending,
                    started: None,
                    finished: None,
                    elapsed_s: None,
                    result: None,
                    error: None,
                    note: None,
                })
                .collect(),
            version: None,
            gates: Vec::new(),
            gates_passed: None,
            alias: None,
            degradation: None,
            outcome: None,
            exit_code: None,
            began: false,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.run_dir.join(PIPELINE_FILE)
    }

    pub fn stage(&self, name: StageName) -> &Stage {
        let i = StageName::ALL.iter().position(|n| *n == name).unwrap_or(0);
        &self.stages[i]
    }

    fn stage_mut(&mut self, name: StageName) -> &mut Stage {
        let i = StageName::ALL.iter().position(|n| *n == name).unwrap_or(0);
        &mut self.stages[i]
    }

    pub fn is_done(&self, name: StageName) -> bool {
        self.stage(name).status == StageStatus::Done
    }

    /// Whether the pipeline moves `production` (what the degradation check guards).
    pub fn guards_production(&self) -> bool {
        self.settings.promote_to.as_deref() == Some(PRODUCTION)
    }

    /// Marks `name` under way (from now) and writes the file.
    pub fn begin(&mut self, name: StageName) -> Result<Instant, JobError> {
        self.began = true;
        let stage = self.stage_mut(name);
        stage.status = StageStatus::Running;
        stage.started = Some(now_rfc3339());
        stage.finished = None;
        stage.error = None;
        stage.note = None;
        self.write()?;
        Ok(Instant::now())
    }

    /// Ends `name` with `status` and what it produced, and writes the file.
    pub fn end(
        &mut self,
        name: StageName,
        status: StageStatus,
        since: Option<Instant>,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), JobError> {
        let stage = self.stage_mut(name);
        stage.status = status;
        stage.finished = Some(now_rfc3339());
        stage.elapsed_s = since.map(|s| s.elapsed().as_secs_f64()).or(stage.elapsed_s);
        if result.is_some() {
            stage.result = result;
        }
        stage.error = error;
        self.write()
    }

    /// Marks `name` skipped, saying why.
    pub fn skip(&mut self, name: StageName, why: &str) -> Result<(), JobError> {
        let stage = self.stage_mut(name);
        stage.status = StageStatus::Skipped;
        stage.note = Some(why.into());
        stage.result = None;
        self.write()
    }

    /// Notes on a stage found done by an earlier start.
    pub fn note(&mut self, name: StageName, note: &str) {
        self.stage_mut(name).note = Some(note.into());
    }

    /// Writes pipeline.json atomically.
    pub fn write(&mut self) -> Result<(), JobError> {
        self.updated = now_rfc3339();
        let path = self.path();
        let json = serde_json::to_vec_pretty(self).map_err(|e| JobError::file(&path, e))?;
        write_atomic(&path, &json).map_err(|e| JobError::file(&path, e))
    }
}

/// The run's pipeline.json, `None` when the run has none (it was trained by `lablens train`).
pub fn read_record(run_dir: &Path) -> Result<Option<PipelineRecord>, JobError> {
    let path = run_dir.join(PIPELINE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(&path, MAX_PIPELINE_BYTES)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut record: PipelineRecord =
        serde_json::from_str(&text).map_err(|e| json_error(&path, None, &text, &e))?;
    let stages: Vec<StageName> = record.stages.iter().map(|s| s.name).collect();
    if record.format != FORMAT || stages != StageName::ALL {
        return Err(JobError::file(
            &path,
            "not a pipeline.json this program wrote (another format or other stages); start a \
             new pipeline",
        ));
    }
    // The folder may have moved since (a copied project): it is where it was read from.
    record.run_dir = run_dir.to_path_buf();
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> Given {
        Given {
            promote_to: Some("production".into()),
            eval_limit: Some(24),
            ..Given::default()
        }
    }

    #[test]
    fn a_new_pipeline_takes_the_evals_defaults_and_refuses_bad_names() {
        let s = given().settings("demo").expect("settings");
        assert_eq!(
            (s.model.as_str(), s.eval_batch),
            ("demo", crate::eval::job::DEFAULT_BATCH)
        );
        assert_eq!(s.max_new_tokens, MAX_NEW_TOKENS);
        let bad = Given {
            promote_to: Some("../prod".into()),
            ..Given::default()
        };
        let e = bad.settings("demo").expect_err("a path is no alias");
        assert!(e.to_string().contains("--promote-to"), "{e}");
        let zero = Given {
            max_new_tokens: Some(0),
            ..Given::default()
        };
        assert!(zero.settings("demo").is_err());
    }

    #[test]
    fn a_resumed_pipeline_keeps_its_settings_and_refuses_other_ones() {
        let recorded = given().settings("demo").expect("settings");
        // Nothing given, or the same again: the recorded settings.
        assert_eq!(
            Given::default().resumed(&recorded, "r1").ok(),
            Some(recorded.clone())
        );
        assert_eq!(
            given().resumed(&recorded, "r1").ok(),
            Some(recorded.clone())
        );
        let other = Given {
            promote_to: Some("staging".into()),
            ..Given::default()
        };
        let e = other.resumed(&recorded, "r1").expect_err("another alias");
        assert!(e.to_string().contains("--promote-to"), "{e}");
        assert!(e.to_string().contains("run r1"), "{e}");
        let fewer = Given {
            eval_limit: Some(5),
            ..Given::default()
        };
        let e = fewer.resumed(&recorded, "r1").expect_err("another limit");
        assert!(e.to_string().starts_with("--limit: "), "{e}");
    }

    #[test]
    fn outcomes_have_their_exit_codes() {
        assert_eq!(Outcome::Promoted.exit_code(false), 0);
        assert_eq!(Outcome::Registered.exit_code(false), 0);
        assert_eq!(Outcome::GateFailed.exit_code(false), 3);
        assert_eq!(Outcome::Degraded.exit_code(false), 4);
        assert_eq!(Outcome::Failed.exit_code(false), 1);
        assert_eq!(Outcome::Failed.exit_code(true), 2);
    }

    #[test]
    fn the_record_is_written_after_each_stage_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = given().settings("demo").expect("settings");
        let mut r = PipelineRecord::new("r1", dir.path(), settings);
        let since = r.begin(StageName::Train).expect("write");
        let read = read_record(dir.path()).expect("read").expect("there");
        assert_eq!(read.stage(StageName::Train).status, StageStatus::Running);
        r.end(
            StageName::Train,
            StageStatus::Done,
            Some(since),
            Some(serde_json::json!({"steps": 3})),
            None,
        )
        .expect("write");
        r.skip(StageName::Promote, "no --promote-to")
            .expect("write");
        let read = read_record(dir.path()).expect("read").expect("there");
        assert!(read.is_done(StageName::Train));
        assert_eq!(
            read.stage(StageName::Train).result,
            Some(serde_json::json!({"steps": 3}))
        );
        assert_eq!(read.stage(StageName::Promote).status, StageStatus::Skipped);
        assert_eq!(read.stage(StageName::Eval).status, StageStatus::Pending);
        std::fs::write(dir.path().join(PIPELINE_FILE), "{\"format\": 1").expect("torn");
        assert!(read_record(dir.path()).is_err(), "a torn file is reported");
        assert!(
            read_record(&dir.path().join("none"))
                .expect("read")
                .is_none()
        );
    }
}
