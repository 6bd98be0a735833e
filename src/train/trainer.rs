//! The training loop: accumulated micro-batches, the loss on target tokens only (the output
//! head runs at those positions alone), clipping, AdamW, validation, early stopping,
//! checkpoints, and pause / resume / stop that act between optimizer steps.

use super::TrainError;
use super::batches::{MicroBatch, batch_nll, epoch_plan};
use super::config::{TrainConfig, suited_lr};
use super::events::{StepMetrics, TrainEvent, TrainSummary};
use super::optim::{AdamW, Schedule, clip_gradients};
use super::phase_clock::PhaseClock;
use super::run::{
    ADAPTER_DIR, CONFIG_FILE, LoopState, METRICS_FILE, OPTIMIZER_FILE, RunDir, RunStatus,
    STATE_FILE, StatusFile, run_err,
};
use super::session::{
    Data, adapter_and_optimizer, check_memory, load_data, load_model, read_config,
};
use crate::job::Control;
use crate::model::adapters::{safetensors_bytes, save_peft};
use crate::model::loading::LoadedModel;
use crate::model::nn::dropout::DropoutRounds;
use crate::model::tokenizer::example::Example;
use crate::project::OpenProject;
use crate::store::lock::{FolderLock, LockError};
use crate::store::write_atomic;
use candle_core::Tensor;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue this run (an id under the project's `runs/`, or a path).
    pub resume: Option<String>,
    /// Write `batches.jsonl`, for reference runs in other tools.
    pub record_batches: bool,
    /// The learning rate is a preset's, not one the user set: a new run takes the presets'
    /// rate for the loaded model's size (`config::suited_lr`) and says so.
    pub suited_lr: bool,
}

/// Trains (or resumes) a run of `project`; `cfg` is ignored when resuming (the run's own
/// `config.ron` is used).
pub fn train(
    project: &OpenProject,
    cfg: &TrainConfig,
    opts: &RunOptions,
    control: &Control,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary, TrainError> {
    let (resumed, cfg) = match &opts.resume {
        Some(id) => {
            let run = RunDir::open(&project.dir, id)?;
            // Before anything is read: a run still training is not resumed beside itself.
            let lock = lock_run(&run)?;
            let cfg = read_config(&run.dir.join(CONFIG_FILE))?;
            (Some((run, lock)), cfg)
        }
        None => {
            let errors = cfg.check();
            if !errors.is_empty() {
                return Err(TrainError::Config(errors));
            }
            (None, cfg.clone())
        }
    };
    // The model and the data load before a new run folder exists, so bad input leaves none.
    let model = load_model(&cfg)?;
    let mut cfg = cfg;
    let mut lr_note = None;
    if opts.suited_lr && resumed.is_none() {
        let (parameters, lr) = (model.info.parameters, suited_lr(model.info.parameters));
        if lr != cfg.lr {
            lr_note = Some(format!(
                "learning rate {lr:e}: the presets' rate for a model of {:.1} M parameters",
                parameters as f64 / 1e6
            ));
        }
        cfg.lr = lr;
    }
    let mut data = load_data(project, &cfg, &model)?;
    data.notes.extend(lr_note);
    check_memory(&cfg, &model, &data)?;
    let (run, lock) = match resumed {
        Some(held) => held,
        None => {
            let run = RunDir::create(&project.dir, &cfg.to_ron())?;
            let lock = lock_run(&run)?;
            (run, lock)
        }
    };
    let mut looped = Loop::prepare(&cfg, &run, opts, model, data)?;
    looped.data.notes.extend(lock.took_over.clone());
    let result = looped.run(control, on_event);
    let (status, message) = match &result {
        Ok(s) => (*s, String::new()),
        Err(e) => (RunStatus::Failed, e.to_string()),
    };
    looped.write_status(status, &message)?;
    drop(lock);
    result.map(|status| looped.summary(status))
}

/// The run's lock for training, held until the run's last file is written.
fn lock_run(run: &RunDir) -> Result<FolderLock, TrainError> {
    FolderLock::acquire(&run.dir, "train").map_err(|e| match e {
        LockError::Busy { .. } => TrainError::Busy(e.to_string()),
        LockError::Io { .. } => TrainError::Run(run_err(&run.dir, e)),
    })
}

/// A run in progress.
struct Loop<'a> {
    cfg: &'a TrainConfig,
    run: &'a RunDir,
    model: LoadedModel,
    data: Data,
    opt: AdamW,
    dropout: DropoutRounds,
    state: LoopState,
    total_steps: usize,
    resumed_from: Option<usize>,
    record_batches: bool,
    last_loss: Option<f64>,
    last_val: Option<f64>,
    started: Instant,
    elapsed_before: f64,
}

impl<'a> Loop<'a> {
    fn prepare(
        cfg: &'a TrainConfig,
        run: &'a RunDir,
        opts: &RunOptions,
        mut model: LoadedModel,
        mut data: Data,
    ) -> Result<Loop<'a>, TrainError> {
        // A run killed before its first checkpoint starts again from step 0; a checkpoint that
        // cannot be read gives way to the one before it, said in the notes.
        let mut resume_step = None;
        let mut loaded = None;
        if opts.resume.is_some() {
            for step in run.checkpoints().into_iter().rev() {
                match adapter_and_optimizer(&mut model, cfg, Some((run, step))) {
                    Ok(l) => {
                        resume_step = Some(step);
                        loaded = Some(l);
                        break;
                    }
                    Err(e) => data.notes.push(format!(
                        "checkpoint step-{step} could not be read ({e}); resuming from an \
                         earlier one"
                    )),
                }
            }
            if loaded.is_none() && !run.checkpoints().is_empty() {
                return Err(TrainError::Data(format!(
                    "{}: no checkpoint of the run could be read: {}",
                    run.dir.display(),
                    data.notes.last().map_or("", String::as_str)
                )));
            }
        }
        let (opt, state) = match loaded {
            Some(l) => l,
            None => adapter_and_optimizer(&mut model, cfg, None)?,
        };
        let dropout = crate::model::adapters::enable_dropout(&mut model.llama, cfg.lora.dropout);
        if opts.resume.is_some() {
            run.truncate_metrics(resume_step)?;
            run.remove_partial_checkpoints();
        }
        let micro_per_epoch = data.train.len().div_ceil(cfg.micro_batch);
        let steps_per_epoch = micro_per_epoch.div_ceil(cfg.grad_accum);
        let total_steps = cfg.max_steps.unwrap_or(cfg.epochs * steps_per_epoch);
        let state = state.unwrap_or(LoopState {
            step: 0,
            epoch: 0,
            batch_index: 0,
            train_tokens: 0,
            train_seconds: 0.0,
            elapsed_s: 0.0,
            best_val_loss: None,
            best_step: None,
            evals_since_best: 0,
        });
        Ok(Loop {
            elapsed_before: state.elapsed_s,
            cfg,
            run,
            model,
            data,
            opt,
            dropout,
            state,
            total_steps,
            resumed_from: resume_step,
            record_batches: opts.record_batches,
            last_loss: None,
            last_val: None,
            started: Instant::now(),
        })
    }

    fn run(
        &mut self,
        control: &Control,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<RunStatus, TrainError> {
        self.write_status(RunStatus::Running, "")?;
        on_event(TrainEvent::Started {
            run_id: self.run.id.clone(),
            run_dir: self.run.dir.clone(),
            total_steps: self.total_steps,
            resumed_from: self.resumed_from,
            notes: self.data.notes.clone(),
        });
        if self.resumed_from.is_none() {
            // The untrained adapter: a run killed before its first checkpoint still resumes,
            // and validation has the base model's loss to improve on.
            if !self.data.val.is_empty() {
                let Some((val_loss, best)) = self.evaluate(control, on_event)? else {
                    return self.stop_here(on_event);
                };
                on_event(TrainEvent::Eval {
                    step: 0,
                    val_loss,
                    best,
                });
            }
            self.checkpoint()?;
        }
        let lengths: Vec<usize> = self.data.train.iter().map(|e| e.ids.len()).collect();
        let mut plan = epoch_plan(
            &lengths,
            self.cfg.micro_batch,
            self.cfg.seed,
            self.state.epoch,
        );
        while self.state.step < self.total_steps {
            while control.is_paused() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if control.is_stopping() {
                return self.stop_here(on_event);
            }
            let batches = self.next_batches(&mut plan, &lengths);
            let metrics = self.step(&batches)?;
            on_event(TrainEvent::Step(metrics));
            let step = self.state.step;
            let every = |n: usize| n > 0 && step.is_multiple_of(n);
            let last = step == self.total_steps;
            let mut new_best = false;
            if every(self.cfg.eval_every) || (last && !self.data.val.is_empty()) {
                let Some((val_loss, best)) = self.evaluate(control, on_event)? else {
                    return self.stop_here(on_event);
                };
                new_best = best;
                on_event(TrainEvent::Eval {
                    step,
                    val_loss,
                    best,
                });
            }
            let patience_out = self
                .cfg
                .early_stopping_patience
                .is_some_and(|p| self.state.evals_since_best >= p);
            // A new best step is checkpointed at once: the final adapter is its copy.
            if every(self.cfg.checkpoint_every) || last || patience_out || new_best {
                self.checkpoint()?;
                on_event(TrainEvent::Checkpoint { step });
            }
            if patience_out {
                break;
            }
        }
        self.save_final_adapter()?;
        Ok(RunStatus::Finished)
    }

    /// The next `grad_accum` micro-batches, moving to the next epoch's plan when one runs out.
    fn next_batches(&mut self, plan: &mut Vec<Vec<usize>>, lengths: &[usize]) -> Vec<MicroBatch> {
        let pad = self.model.tokenizer.pad_id().unwrap_or(0);
        let mut out = Vec::with_capacity(self.cfg.grad_accum);
        while out.len() < self.cfg.grad_accum {
            if self.state.batch_index >= plan.len() {
                self.state.epoch += 1;
                self.state.batch_index = 0;
                *plan = epoch_plan(
                    lengths,
                    self.cfg.micro_batch,
                    self.cfg.seed,
                    self.state.epoch,
                );
            }
            let rows: Vec<&Example> = plan[self.state.batch_index]
                .iter()
                .map(|&i| &self.data.train[i])
                .collect();
            out.push(MicroBatch::new(&rows, pad));
            self.state.batch_index += 1;
        }
        out
    }

    /// Forward, backward and update over one step's micro-batches.
    fn step(&mut self, batches: &[MicroBatch]) -> Result<StepMetrics, TrainError> {
        let started = Instant::now();
        let step = self.state.step + 1;
        let labelled: usize = batches.iter().map(|b| b.labels.len()).sum();
        let mut grads: Option<Tensor> = None;
        let mut nll_sum = 0f64;
        let mut clock = PhaseClock::new(self.model.llama.device());
        for (micro, b) in batches.iter().enumerate() {
            self.dropout.start(self.cfg.seed, step, micro);
            let nll = batch_nll(&self.model.llama, b);
            self.dropout.stop();
            let nll = nll.map_err(TrainError::compute)?;
            clock.lap("forward");
            let scaled = (&nll / labelled.max(1) as f64).map_err(TrainError::compute)?;
            let store = scaled.backward().map_err(TrainError::compute)?;
            clock.lap("backward");
            // Read after the backward pass is queued: on a GPU, reading waits for the device.
            nll_sum += f64::from(nll.to_scalar::<f32>().map_err(TrainError::compute)?);
            let micro_grads = self.opt.gradients(&store).map_err(TrainError::compute)?;
            grads = Some(match grads {
                Some(sum) => (sum + micro_grads).map_err(TrainError::compute)?,
                None => micro_grads,
            });
        }
        let loss = nll_sum / labelled.max(1) as f64;
        if !loss.is_finite() {
            let kept = self
                .run
                .checkpoints()
                .last()
                .map_or("none yet".to_string(), |s| format!("step {s}"));
            return Err(TrainError::Diverged { step, loss, kept });
        }
        let Some(mut grads) = grads else {
            return Err(TrainError::Compute(format!(
                "step {step} has no micro-batches"
            )));
        };
        let grad_norm = clip_gradients(std::slice::from_mut(&mut grads), self.cfg.max_grad_norm)
            .map_err(TrainError::compute)?;
        let lr = Schedule::of(self.cfg, self.total_steps).rate(step);
        self.opt.step(&grads, lr).map_err(TrainError::compute)?;
        clock.lap("optimizer");
        clock.report(step);
        if self.record_batches {
            let json: Vec<serde_json::Value> = batches.iter().map(MicroBatch::to_hf_json).collect();
            self.run.append_line(
                "batches.jsonl",
                &serde_json::json!({"step": step, "micro_batches": json}),
            )?;
        }
        let tokens: usize = batches.iter().map(MicroBatch::tokens).sum();
        let seconds = started.elapsed().as_secs_f64();
        self.state.step = step;
        self.state.train_tokens += tokens;
        self.state.train_seconds += seconds;
        self.last_loss = Some(loss);
        let metrics = StepMetrics {
            step,
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            elapsed_s: self.elapsed(),
        };
        let line = serde_json::to_value(&metrics).map_err(|e| run_err(&self.run.dir, e))?;
        self.run.append_line(METRICS_FILE, &line)?;
        Ok(metrics)
    }

    /// Stopped by the user: keeps a checkpoint of the step reached.
    fn stop_here(&mut self, on_event: &mut dyn FnMut(TrainEvent)) -> Result<RunStatus, TrainError> {
        self.checkpoint()?;
        on_event(TrainEvent::Checkpoint {
            step: self.state.step,
        });
        Ok(RunStatus::Stopped)
    }

    /// Validation loss (token-weighted, like the training loss); tracks the best. Reports its
    /// progress per micro-batch; `None` when a stop was asked for before it finished (nothing
    /// is recorded then).
    fn evaluate(
        &mut self,
        control: &Control,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<Option<(f64, bool)>, TrainError> {
        let pad = self.model.tokenizer.pad_id().unwrap_or(0);
        let (step, total) = (self.state.step, self.data.val.len());
        let started = Instant::now();
        let mut nll = 0f64;
        let mut count = 0usize;
        let mut done = 0usize;
        on_event(TrainEvent::Validating {
            step,
            done,
            total,
            eta_s: None,
        });
        for chunk in self.data.val.chunks(self.cfg.micro_batch) {
            if control.is_stopping() {
                return Ok(None);
            }
            let rows: Vec<&Example> = chunk.iter().collect();
            let b = MicroBatch::new(&rows, pad);
            let sum = batch_nll(&self.model.llama, &b)
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(TrainError::compute)?;
            nll += f64::from(sum);
            count += b.labels.len();
            done += chunk.len();
            let per_example = started.elapsed().as_secs_f64() / done as f64;
            on_event(TrainEvent::Validating {
                step,
                done,
                total,
                eta_s: Some(per_example * (total - done) as f64),
            });
        }
        let val = nll / count.max(1) as f64;
        let best = self.state.best_val_loss.is_none_or(|b| val < b);
        if best {
            self.state.best_val_loss = Some(val);
            self.state.best_step = Some(self.state.step);
            self.state.evals_since_best = 0;
        } else {
            self.state.evals_since_best += 1;
        }
        self.last_val = Some(val);
        let line = serde_json::json!({"step": self.state.step, "val_loss": val, "best": best});
        self.run.append_line(METRICS_FILE, &line)?;
        Ok(Some((val, best)))
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// Adapter, optimizer and loop state at the current step, appearing whole.
    fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.state.elapsed_s = self.elapsed();
        let opt_state = self.opt.state().map_err(TrainError::compute)?;
        let state_json =
            serde_json::to_string_pretty(&self.state).map_err(|e| run_err(&self.run.dir, e))?;
        let (llama, lora, base) = (&self.model.llama, &self.cfg.lora, self.cfg.model.as_str());
        self.run.write_checkpoint(self.state.step, |dir| {
            save_peft(llama, lora, base, dir).map_err(|e| run_err(dir, e))?;
            let bytes = safetensors_bytes(&opt_state).map_err(|e| run_err(dir, e))?;
            write_atomic(&dir.join(OPTIMIZER_FILE), &bytes).map_err(|e| run_err(dir, e))?;
            write_atomic(&dir.join(STATE_FILE), state_json.as_bytes()).map_err(|e| run_err(dir, e))
        })?;
        // The best adapter is kept for the final one; step 0 for reference runs.
        let mut protected: Vec<usize> = self.state.best_step.into_iter().collect();
        if self.record_batches {
            protected.push(0);
        }
        self.run.prune_checkpoints(2, &protected);
        self.write_status(RunStatus::Running, "")
    }

    /// The final adapter: the best checkpoint's when validation picked one, else the last.
    /// Written whole: a process killed meanwhile leaves the previous adapter/ or none, never a
    /// part of one (evaluation then takes the last checkpoint).
    fn save_final_adapter(&mut self) -> Result<(), TrainError> {
        let target = self.run.dir.join(ADAPTER_DIR);
        let best = self.state.best_step.filter(|s| *s != self.state.step);
        let (llama, lora, base) = (&self.model.llama, &self.cfg.lora, self.cfg.model.as_str());
        self.run.write_dir_whole(&target, |dir| match best {
            Some(best) => {
                let from = self.run.checkpoint_dir(best);
                for name in [
                    crate::model::adapters::ADAPTER_CONFIG,
                    crate::model::adapters::ADAPTER_WEIGHTS,
                ] {
                    let bytes = std::fs::read(from.join(name)).map_err(|e| run_err(&from, e))?;
                    write_atomic(&dir.join(name), &bytes).map_err(|e| run_err(dir, e))?;
                }
                Ok(())
            }
            None => save_peft(llama, lora, base, dir).map_err(|e| run_err(dir, e)),
        })?;
        Ok(())
    }

    fn write_status(&self, status: RunStatus, message: &str) -> Result<(), TrainError> {
        Ok(self.run.write_status(&StatusFile {
            status,
            pid: std::process::id(),
            message: message.to_string(),
            step: self.state.step,
            total_steps: self.total_steps,
            best_step: self.state.best_step,
            best_val_loss: self.state.best_val_loss,
            elapsed_s: self.elapsed(),
        })?)
    }

    fn summary(&self, status: RunStatus) -> TrainSummary {
        TrainSummary {
            run_id: self.run.id.clone(),
            run_dir: self.run.dir.clone(),
            status,
            steps: self.state.step,
            train_tokens: self.state.train_tokens,
            tokens_per_s: self.state.train_tokens as f64 / self.state.train_seconds.max(1e-9),
            final_train_loss: self.last_loss,
            final_val_loss: self.last_val,
            best_step: self.state.best_step,
        }
    }
}
