//! `lablens pipeline`, the headless pipeline for a user's CI: train → eval (test split) → bias →
//! register → gates → promote, each stage the very job its own command runs (`train`,
//! `evaluate`, the bias audit, `register`, `promote`), its output in the run folder, and
//! `pipeline.json` beside them after every stage. Resuming a run goes on from the stages
//! finished: training resumes from its last checkpoint, the evaluation from its partial file.

mod record;

pub use record::{
    AliasResult, EXIT_DEGRADED, EXIT_GATE_FAILED, Given, Outcome, PIPELINE_FILE, PipelineRecord,
    Settings, Stage, StageName, StageStatus, read_record,
};

use super::aliases::read_state;
use super::gates::{GateResult, check_gates, check_settings, evaluate};
use super::promote::{Promotion, Refused, promote};
use super::version::{VersionRecord, read_version};
use super::{RegisteredModel, default_model_name, register};
use crate::analysis::bias::BiasOptions;
use crate::analysis::bias::job::{BiasRequest, run as audit};
use crate::data::record::Split;
use crate::eval::job::target::Target;
use crate::eval::job::{EVAL_FILE, EvalOptions, PREDICTIONS_FILE, evaluate as eval_job};
use crate::job::{Control, Job, JobError, Progress};
use crate::project::{OpenProject, PROJECT_FILE};
use crate::store::sha256_file;
use crate::train::run::{ADAPTER_DIR, RunDir, RunStatus};
use crate::train::{RunOptions, TrainConfig, TrainEvent, train};
use serde_json::json;
use std::time::Instant;

/// What `lablens pipeline` was asked.
#[derive(Debug, Clone)]
pub struct PipelineRequest {
    /// The training configuration of a new run (a resumed run keeps its own `config.ron`).
    pub train: TrainConfig,
    /// As `lablens train` takes them; `resume` names the run whose pipeline goes on.
    pub train_options: RunOptions,
    pub given: Given,
}

/// What the pipeline reports while it runs.
#[derive(Debug)]
pub enum PipelineEvent<'a> {
    /// A stage began or ended (or was found done by an earlier start, or skipped).
    Stage {
        stage: StageName,
        status: StageStatus,
        note: Option<&'a str>,
    },
    Train(TrainEvent),
    Progress(&'a Progress),
    /// A line for people: a registry note, a version found registered already.
    Note(&'a str),
}

/// What the pipeline came to: pipeline.json as written last.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub record: PipelineRecord,
    /// The failed stage's job failed on input the user can fix (exit 2 rather than 1).
    pub bad_input: bool,
}

impl PipelineReport {
    pub fn exit_code(&self) -> i32 {
        self.record
            .outcome
            .map_or(1, |o| o.exit_code(self.bad_input))
    }
}

/// The weights file of a run's final adapter.
const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

type OnEvent<'a> = &'a mut dyn FnMut(PipelineEvent);

/// Runs (or resumes) the pipeline. Bad input found before the run folder exists (a gate
/// definition, an option, a configuration) is an error and leaves nothing behind; a stage that
/// fails after it is recorded in pipeline.json and reported with outcome `failed`.
pub fn run_pipeline(
    project: &OpenProject,
    request: &PipelineRequest,
    on_event: OnEvent,
) -> Result<PipelineReport, JobError> {
    let file = project.dir.join(PROJECT_FILE);
    check_gates(&file, &project.project.gates)?;
    check_settings(&file, &project.project.registry)?;
    let default_model = default_model_name(&project.dir);
    let mut record = match &request.train_options.resume {
        Some(id) => {
            let run = RunDir::open(&project.dir, id)
                .map_err(|e| JobError::Usage(format!("--resume: {e}")))?;
            Some(match read_record(&run.dir)? {
                Some(mut r) => {
                    r.settings = request.given.resumed(&r.settings, &run.id)?;
                    r.starts += 1;
                    r.outcome = None;
                    r.exit_code = None;
                    r
                }
                None => {
                    PipelineRecord::new(&run.id, &run.dir, request.given.settings(&default_model)?)
                }
            })
        }
        None => None,
    };
    let settings = match &record {
        Some(r) => r.settings.clone(),
        None => request.given.settings(&default_model)?,
    };
    RegisteredModel::new(&project.dir, &settings.model)?;
    let trained = train_stage(project, request, &settings, &mut record, on_event);
    let Some(mut record) = record else {
        // Training failed before its run folder existed: nothing to record.
        return Err(trained
            .err()
            .unwrap_or_else(|| JobError::Model("training ended without a run folder".into())));
    };
    let result = trained.and_then(|()| {
        let mut p = Pipeline {
            project,
            record: &mut record,
            on_event,
        };
        p.after_training()
    });
    let (outcome, bad_input) = match result {
        Ok(outcome) => (outcome, false),
        // Nothing of this start ran (the run is another process's now): its record stays.
        Err(e) if !record.began => return Err(e),
        Err(e) => {
            if let Some(stage) = record
                .stages
                .iter_mut()
                .find(|s| s.status == StageStatus::Running)
            {
                stage.status = StageStatus::Failed;
                stage.error = Some(e.to_string());
            }
            (Outcome::Failed, e.is_usage())
        }
    };
    record.outcome = Some(outcome);
    record.exit_code = Some(outcome.exit_code(bad_input));
    record.write()?;
    Ok(PipelineReport { record, bad_input })
}

/// Trains the run, or finds it trained; creates the record once the run folder exists.
fn train_stage(
    project: &OpenProject,
    request: &PipelineRequest,
    settings: &Settings,
    record: &mut Option<PipelineRecord>,
    on_event: OnEvent,
) -> Result<(), JobError> {
    if let Some(r) = record.as_mut() {
        let run = RunDir {
            id: r.run.clone(),
            dir: r.run_dir.clone(),
        };
        let finished = run
            .read_status()
            .is_some_and(|s| s.status == RunStatus::Finished)
            && run.dir.join(ADAPTER_DIR).join(ADAPTER_WEIGHTS).is_file();
        if finished {
            if !r.is_done(StageName::Train) {
                let status = run.read_status();
                let result = status.map(|s| {
                    json!({"run_id": run.id, "run_dir": run.dir,
                    "status": s.status, "steps": s.step, "best_step": s.best_step,
                    "best_val_loss": s.best_val_loss, "elapsed_s": s.elapsed_s})
                });
                r.end(StageName::Train, StageStatus::Done, None, result, None)?;
            }
            let note = "finished before this start: not trained again";
            r.note(StageName::Train, note);
            on_event(PipelineEvent::Stage {
                stage: StageName::Train,
                status: StageStatus::Done,
                note: Some(note),
            });
            return Ok(());
        }
    }
    let mut since = None;
    let mut write_error = None;
    let control = Control::default();
    let result = train(
        project,
        &request.train,
        &request.train_options,
        &control,
        &mut |event| {
            if let TrainEvent::Started {
                run_id, run_dir, ..
            } = &event
            {
                let r = record
                    .get_or_insert_with(|| PipelineRecord::new(run_id, run_dir, settings.clone()));
                match r.begin(StageName::Train) {
                    Ok(s) => since = Some(s),
                    Err(e) => write_error = Some(e),
                }
                on_event(PipelineEvent::Stage {
                    stage: StageName::Train,
                    status: StageStatus::Running,
                    note: None,
                });
            }
            on_event(PipelineEvent::Train(event));
        },
    );
    if let Some(e) = write_error {
        return Err(e);
    }
    let summary = result.map_err(JobError::from)?;
    if summary.status != RunStatus::Finished {
        return Err(JobError::Model(format!(
            "training ended {:?} at step {}; resume it with --resume {}",
            summary.status, summary.steps, summary.run_id
        )));
    }
    let Some(r) = record.as_mut() else {
        return Err(JobError::Model("training never started its run".into()));
    };
    let value = serde_json::to_value(&summary).ok();
    r.end(StageName::Train, StageStatus::Done, since, value, None)?;
    on_event(PipelineEvent::Stage {
        stage: StageName::Train,
        status: StageStatus::Done,
        note: None,
    });
    Ok(())
}

/// The stages after training, over the record of a trained run.
struct Pipeline<'a> {
    project: &'a OpenProject,
    record: &'a mut PipelineRecord,
    on_event: OnEvent<'a>,
}

impl Pipeline<'_> {
    fn emit(&mut self, stage: StageName, note: Option<&str>) {
        let status = self.record.stage(stage).status;
        (self.on_event)(PipelineEvent::Stage {
            stage,
            status,
            note,
        });
    }

    fn begin(&mut self, stage: StageName) -> Result<Instant, JobError> {
        let since = self.record.begin(stage)?;
        self.emit(stage, None);
        Ok(since)
    }

    fn end(
        &mut self,
        stage: StageName,
        status: StageStatus,
        since: Instant,
        result: serde_json::Value,
        error: Option<String>,
    ) -> Result<(), JobError> {
        let note = error.clone();
        self.record
            .end(stage, status, Some(since), Some(result), error)?;
        self.emit(stage, note.as_deref());
        Ok(())
    }

    fn skip(&mut self, stage: StageName, why: &str) -> Result<(), JobError> {
        self.record.skip(stage, why)?;
        self.emit(stage, Some(why));
        Ok(())
    }

    /// Whether `stage` was finished by an earlier start (and its `files` are still there).
    fn done_before(&mut self, stage: StageName, files: &[&str]) -> bool {
        let there = files.iter().all(|f| self.record.run_dir.join(f).is_file());
        if self.record.is_done(stage) && there {
            let note = "finished before this start: not run again";
            self.record.note(stage, note);
            self.emit(stage, Some(note));
            return true;
        }
        false
    }

    fn target(&self) -> Target {
        Target::Run(self.record.run.clone())
    }

    fn after_training(&mut self) -> Result<Outcome, JobError> {
        self.eval_stage()?;
        self.bias_stage()?;
        let (model, version) = self.register_stage()?;
        let gates = self.gates_stage(&version)?;
        self.promote_stage(&model, &version, &gates)
    }

    fn eval_stage(&mut self) -> Result<(), JobError> {
        if self.done_before(StageName::Eval, &[EVAL_FILE, PREDICTIONS_FILE]) {
            return Ok(());
        }
        let since = self.begin(StageName::Eval)?;
        let s = &self.record.settings;
        let opts = EvalOptions::with(Split::Test, s.eval_limit, s.eval_batch, s.max_new_tokens);
        let target = self.target();
        let on_event = &mut *self.on_event;
        let mut show = |p: &Progress| on_event(PipelineEvent::Progress(p));
        let summary = eval_job(
            self.project,
            &target,
            &opts,
            None,
            &mut Job::unstopped(&mut show),
        )?;
        let result = json!({"n": summary.n, "split": Split::Test.name(),
            "generated_now": summary.generated_now, "inputs_cut": summary.inputs_cut,
            "outputs_cut": summary.outputs_cut, "records_per_minute": summary.records_per_minute,
            "corpus": summary.corpus, "files": [EVAL_FILE, PREDICTIONS_FILE]});
        self.end(StageName::Eval, StageStatus::Done, since, result, None)
    }

    fn bias_stage(&mut self) -> Result<(), JobError> {
        if self.done_before(StageName::Bias, &[crate::analysis::bias::BIAS_FILE]) {
            return Ok(());
        }
        let since = self.begin(StageName::Bias)?;
        // `lablens bias --project P --run R` with its defaults.
        let request = BiasRequest {
            project_dir: self.project.dir.clone(),
            target: self.target(),
            options: BiasOptions::default(),
            counterfactual: None,
        };
        let on_event = &mut *self.on_event;
        let mut show = |p: &Progress| on_event(PipelineEvent::Progress(p));
        let outcome = audit(&request, None, &mut Job::unstopped(&mut show))?;
        let flagged: Vec<String> = outcome
            .report
            .slices
            .iter()
            .filter(|s| s.flagged)
            .map(|s| s.dims.describe())
            .collect();
        let result = json!({"metric": outcome.report.metric, "records": outcome.report.overall.n,
            "slices": outcome.report.slices.len(), "flagged": flagged,
            "files": [crate::analysis::bias::BIAS_FILE]});
        self.end(StageName::Bias, StageStatus::Done, since, result, None)
    }

    /// Registers the run, or finds the version an earlier start registered from these files.
    fn register_stage(&mut self) -> Result<(RegisteredModel, VersionRecord), JobError> {
        let model = RegisteredModel::new(&self.project.dir, &self.record.settings.model)?;
        let since = self.begin(StageName::Register)?;
        let found = registered_before(&model, self.record)?;
        let (version, notes) = match found {
            Some(v) => {
                let note = format!(
                    "run {} was registered as {} version {} before this start, from the same \
                     eval.json: not registered again",
                    self.record.run, model.name, v.version
                );
                (v, vec![note])
            }
            None => {
                let note = self.record.settings.note.clone();
                let made = register(self.project, &model, &self.record.run, note.as_deref())?;
                (made.record, made.notes)
            }
        };
        for n in &notes {
            (self.on_event)(PipelineEvent::Note(n));
        }
        self.record.version = Some(version.version);
        let result = json!({"model": model.name, "version": version.version,
            "dir": model.version_dir(version.version), "notes": notes});
        self.end(StageName::Register, StageStatus::Done, since, result, None)?;
        Ok((model, version))
    }

    /// The project's gates on what the registered version measured (as `registry promote`
    /// evaluates them).
    fn gates_stage(&mut self, version: &VersionRecord) -> Result<Vec<GateResult>, JobError> {
        let since = self.begin(StageName::Gates)?;
        let file = self.project.dir.join(PROJECT_FILE);
        let checked = check_gates(&file, &self.project.project.gates)?;
        let results = evaluate(&checked, |m| version.measure(m));
        let failed: Vec<String> = results
            .iter()
            .filter(|g| !g.passed())
            .map(GateResult::describe)
            .collect();
        self.record.gates = results.clone();
        self.record.gates_passed = Some(failed.is_empty());
        let (status, error) = if failed.is_empty() {
            (StageStatus::Done, None)
        } else {
            (
                StageStatus::Failed,
                Some(format!("gates failed: {}", failed.join("; "))),
            )
        };
        let result = json!({"passed": failed.is_empty(), "results": results});
        self.end(StageName::Gates, status, since, result, error)?;
        Ok(results)
    }

    fn promote_stage(
        &mut self,
        model: &RegisteredModel,
        version: &VersionRecord,
        gates: &[GateResult],
    ) -> Result<Outcome, JobError> {
        let passed = gates.iter().all(GateResult::passed);
        let Some(alias) = self.record.settings.promote_to.clone() else {
            self.skip(
                StageName::Promote,
                "no --promote-to: the version is registered and no alias moves",
            )?;
            return Ok(if passed {
                Outcome::Registered
            } else {
                Outcome::GateFailed
            });
        };
        let state = read_state(model)?;
        let current = state.aliases.get(&alias).copied();
        if !passed {
            self.record.alias = Some(AliasResult {
                alias: alias.clone(),
                from: current,
                to: version.version,
                moved: false,
            });
            self.skip(
                StageName::Promote,
                &format!("a gate failed: {alias} stays where it was"),
            )?;
            return Ok(Outcome::GateFailed);
        }
        let since = self.begin(StageName::Promote)?;
        if current == Some(version.version) {
            let from = state
                .history
                .of(&alias)
                .last()
                .and_then(|(_, m)| (m.to == version.version).then_some(m.from))
                .flatten();
            self.record.alias = Some(AliasResult {
                alias: alias.clone(),
                from,
                to: version.version,
                moved: true,
            });
            let note = format!(
                "{alias} named version {} before this start",
                version.version
            );
            let result = json!({"alias": alias, "from": from, "to": version.version,
                "moved": true, "note": note});
            self.end(StageName::Promote, StageStatus::Done, since, result, None)?;
            return Ok(Outcome::Promoted);
        }
        let reason = format!("lablens pipeline: run {}", self.record.run);
        let promotion = Promotion {
            version: version.version,
            alias: &alias,
            reason: Some(&reason),
            force: false,
        };
        let moved = promote(self.project, model, &promotion)?;
        for n in &moved.notes {
            (self.on_event)(PipelineEvent::Note(n));
        }
        self.record.alias = Some(AliasResult {
            alias: alias.clone(),
            from: moved.from,
            to: moved.to,
            moved: moved.moved,
        });
        self.record.degradation = moved.degradation.clone();
        let result = serde_json::to_value(&moved).unwrap_or_default();
        let (status, outcome, error) = match (moved.moved, moved.refused) {
            (true, _) => (StageStatus::Done, Outcome::Promoted, None),
            (false, Some(Refused::Degraded)) => (
                StageStatus::Failed,
                Outcome::Degraded,
                Some(format!(
                    "not promoted: {}",
                    moved
                        .degradation
                        .as_ref()
                        .map_or("worse than production".into(), |d| d.describe())
                )),
            ),
            (false, _) => (
                StageStatus::Failed,
                Outcome::GateFailed,
                Some("not promoted: a gate failed".into()),
            ),
        };
        self.end(StageName::Promote, status, since, result, error)?;
        Ok(outcome)
    }
}

/// The version an earlier start of this pipeline registered: one of the run's whose eval.json
/// is the run's (the same SHA-256), so a kill between registering and writing pipeline.json does
/// not register the run twice.
fn registered_before(
    model: &RegisteredModel,
    record: &PipelineRecord,
) -> Result<Option<VersionRecord>, JobError> {
    let eval = record.run_dir.join(EVAL_FILE);
    let (_, sha) = sha256_file(&eval).map_err(|e| JobError::file(&eval, e))?;
    Ok(model.versions().into_iter().rev().find_map(|v| {
        let r = read_version(model, v).ok()?;
        let same = r.run == record.run
            && r.files
                .iter()
                .any(|f| f.path == EVAL_FILE && f.sha256 == sha);
        same.then_some(r)
    }))
}
