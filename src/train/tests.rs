use super::run::{METRICS_FILE, RunStatus, list_runs, read_jsonl};
use super::*;
use crate::job::Control;
use crate::project::OpenProject;
use std::path::Path;

fn project(dir: &Path, n: usize) -> OpenProject {
    crate::test_support::discharge_project(dir, n, (80.0, 20.0, 0.0))
}

fn small_config(max_steps: usize) -> TrainConfig {
    TrainConfig {
        max_seq_len: 96,
        micro_batch: 2,
        grad_accum: 2,
        max_steps: Some(max_steps),
        lr: 1e-3,
        warmup_steps: 3,
        eval_every: 0,
        eval_records: 6,
        checkpoint_every: 10,
        ..TrainConfig::default()
    }
}

/// Step → training loss, from a run's metrics.
fn losses(dir: &Path) -> Vec<(u64, f64)> {
    read_jsonl(&dir.join(METRICS_FILE))
        .iter()
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

/// A new run of `cfg`, uninterrupted.
fn fresh_run(p: &OpenProject, cfg: &TrainConfig) -> Result<TrainSummary, TrainError> {
    fresh_run_with(p, cfg, &Control::default(), &mut |_| {})
}

fn stop_at(control: &Control, step: usize) -> impl FnMut(TrainEvent) + '_ {
    move |e| {
        if matches!(e, TrainEvent::Step(m) if m.step == step) {
            control.stop();
        }
    }
}

/// A new run of `cfg` stopped after `step`, then resumed to its end.
fn stop_and_resume(
    p: &OpenProject,
    cfg: &TrainConfig,
    step: usize,
) -> Result<TrainSummary, TrainError> {
    let control = Control::default();
    let first = train(
        p,
        cfg,
        &RunOptions::default(),
        &control,
        &mut stop_at(&control, step),
    )?;
    assert_eq!((first.status, first.steps), (RunStatus::Stopped, step));
    let resume = RunOptions {
        resume: Some(first.run_id.clone()),
        ..RunOptions::default()
    };
    train(p, cfg, &resume, &Control::default(), &mut |_| {})
}

#[test]
fn a_stopped_run_resumes_exactly_where_it_was() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 60);
    let cfg = small_config(32);
    let whole = fresh_run(&p, &cfg)?;
    assert_eq!((whole.status, whole.steps), (RunStatus::Finished, 32));

    let second = stop_and_resume(&p, &cfg, 12)?;
    assert_eq!((second.status, second.steps), (RunStatus::Finished, 32));

    let (a, b) = (losses(&whole.run_dir), losses(&second.run_dir));
    assert_eq!(a.len(), 32);
    assert_eq!(b.len(), 32);
    for ((sa, la), (sb, lb)) in a.iter().zip(&b).skip(12) {
        assert_eq!(sa, sb);
        assert!((la - lb).abs() < 1e-5, "step {sa}: {la} vs {lb}");
    }
    assert!(
        second
            .run_dir
            .join("adapter/adapter_model.safetensors")
            .is_file()
    );
    let statuses: Vec<RunStatus> = list_runs(&p.dir).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Finished, RunStatus::Finished]);
    Ok(())
}

#[test]
fn lora_dropout_changes_the_updates_and_a_stopped_run_resumes_to_the_same_losses()
-> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 40);
    let plain = small_config(10);
    let cfg = TrainConfig {
        lora: crate::model::adapters::LoraConfig {
            dropout: 0.1,
            ..plain.lora.clone()
        },
        ..plain.clone()
    };
    let whole = fresh_run(&p, &cfg)?;
    let without = fresh_run(&p, &plain)?;
    let (a, c) = (losses(&whole.run_dir), losses(&without.run_dir));
    assert_eq!(a.len(), 10);
    // B starts at zero, so the first loss cannot tell; the updates differ from then on.
    assert!((a[0].1 - c[0].1).abs() < 1e-6);
    assert!(
        a.iter()
            .zip(&c)
            .skip(1)
            .all(|(x, y)| (x.1 - y.1).abs() > 1e-6),
        "{a:?} vs {c:?}"
    );

    let second = stop_and_resume(&p, &cfg, 4)?;
    for ((sa, la), (sb, lb)) in a.iter().zip(&losses(&second.run_dir)).skip(4) {
        assert_eq!(sa, sb);
        assert!((la - lb).abs() < 1e-5, "step {sa}: {la} vs {lb}");
    }
    Ok(())
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 40);
    let cfg = TrainConfig {
        checkpoint_every: 2,
        ..small_config(8)
    };
    let control = Control::default();
    let first = train(
        &p,
        &cfg,
        &RunOptions::default(),
        &control,
        &mut stop_at(&control, 4),
    )?;
    // Poison the adapter of the checkpoint the run resumes from.
    let weights = first
        .run_dir
        .join("checkpoints/step-4/adapter_model.safetensors");
    let device = candle_core::Device::Cpu;
    let mut tensors = candle_core::safetensors::load(&weights, &device).expect("load adapter");
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("lora_B.weight") {
            *t = (t.ones_like().expect("ones") * f64::NAN).expect("nan");
        }
    }
    candle_core::safetensors::save(&tensors, &weights).expect("save adapter");
    let resume = RunOptions {
        resume: Some(first.run_id.clone()),
        ..RunOptions::default()
    };
    let err = train(&p, &cfg, &resume, &Control::default(), &mut |_| {})
        .expect_err("a NaN loss must fail the run");
    assert!(matches!(err, TrainError::Diverged { step: 5, .. }), "{err}");
    assert!(
        err.to_string().contains("last good checkpoint (step 4)"),
        "{err}"
    );
    assert!(
        first
            .run_dir
            .join("checkpoints/step-4/state.json")
            .is_file()
    );
    assert_eq!(list_runs(&p.dir)[0].status, RunStatus::Failed);
    Ok(())
}

#[test]
fn bad_configurations_and_data_are_refused_before_a_run_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 20);
    let bad = TrainConfig {
        lr: -1.0,
        ..small_config(2)
    };
    let err = fresh_run(&p, &bad).expect_err("invalid lr");
    assert!(err.to_string().contains("lr: must be above 0"), "{err}");
    assert!(list_runs(&p.dir).is_empty());
    let missing = TrainConfig {
        dataset: "soap".into(),
        ..small_config(2)
    };
    let err = fresh_run(&p, &missing).expect_err("unknown dataset");
    assert!(err.to_string().contains("no dataset \"soap\""), "{err}");
    assert!(err.is_bad_input());
    assert!(list_runs(&p.dir).is_empty());
}

#[test]
fn the_quick_demo_preset_lowers_the_validation_loss_of_the_embedded_model() -> Result<(), TrainError>
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 300);
    // The preset, shortened: its full 80 steps take the loss 45% down (see the README).
    let cfg = TrainConfig {
        max_steps: Some(24),
        eval_every: 0,
        eval_records: 16,
        ..TrainConfig::preset("quick-demo").expect("preset")
    };
    assert_validation_loss_falls(&fresh_run(&p, &cfg)?);
    Ok(())
}

/// The run's last validation loss is at least 15% below its first (the base model's).
fn assert_validation_loss_falls(run: &TrainSummary) {
    let evals: Vec<f64> = read_jsonl(&run.run_dir.join(METRICS_FILE))
        .iter()
        .filter_map(|v| v["val_loss"].as_f64())
        .collect();
    let (base, last) = (evals[0], evals[evals.len() - 1]);
    assert!(last < 0.85 * base, "validation loss {base} -> {last}");
}

/// The precision a GPU trains in by default: a bf16 base under f32 adapters, through candle's
/// ops rather than the fused f32 CPU ones. `LABLENS_TEST_DEVICE=cuda:0` runs it on a GPU.
#[test]
fn bf16_training_lowers_the_validation_loss_of_the_embedded_model() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 300);
    let cfg = TrainConfig {
        max_steps: Some(24),
        eval_every: 0,
        eval_records: 16,
        device: std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into()),
        dtype: "bf16".into(),
        ..TrainConfig::preset("quick-demo").expect("preset")
    };
    let run = fresh_run(&p, &cfg)?;
    assert_validation_loss_falls(&run);
    let adapter = candle_core::safetensors::load(
        run.run_dir.join("adapter/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .map_err(|e| TrainError::Model(e.to_string()))?;
    assert!(
        adapter
            .values()
            .all(|t| t.dtype() == candle_core::DType::F32)
    );
    Ok(())
}

/// A run that a live process holds is not resumed beside it (the rows of the two would
/// interleave in metrics.jsonl), and nothing of the run changes; once free it resumes.
#[test]
fn a_run_in_use_is_not_resumed_beside_itself() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 40);
    let cfg = small_config(8);
    let control = Control::default();
    let first = train(
        &p,
        &cfg,
        &RunOptions::default(),
        &control,
        &mut stop_at(&control, 4),
    )?;
    let before = std::fs::read(first.run_dir.join(METRICS_FILE)).expect("metrics");
    let held = crate::store::lock::FolderLock::acquire(&first.run_dir, "train").expect("lock");
    let resume = RunOptions {
        resume: Some(first.run_id.clone()),
        ..RunOptions::default()
    };
    let refused = train(&p, &cfg, &resume, &Control::default(), &mut |_| {});
    let Err(TrainError::Busy(message)) = &refused else {
        panic!("{refused:?}");
    };
    assert!(message.contains("is in use by process"), "{message}");
    assert!(message.contains("(train, since"), "{message}");
    assert_eq!(
        std::fs::read(first.run_dir.join(METRICS_FILE)).expect("metrics"),
        before
    );
    drop(held);
    let resumed = train(&p, &cfg, &resume, &Control::default(), &mut |_| {})?;
    assert_eq!((resumed.status, resumed.steps), (RunStatus::Finished, 8));
    Ok(())
}

/// A best step that no regular checkpoint falls on is checkpointed when validation picks it, so
/// the final adapter is its copy and status.json never names a checkpoint that is not there.
#[test]
fn the_best_step_has_its_checkpoint_and_the_final_adapter_is_it() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 40);
    let cfg = TrainConfig {
        eval_every: 2,
        checkpoint_every: 100,
        ..small_config(10)
    };
    let mut events = Vec::new();
    let run = train(
        &p,
        &cfg,
        &RunOptions::default(),
        &Control::default(),
        &mut |e| events.push(e),
    )?;
    assert_eq!(run.status, RunStatus::Finished);
    let checkpointed: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Checkpoint { step } => Some(*step),
            _ => None,
        })
        .collect();
    let bests: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Eval {
                step, best: true, ..
            } if *step > 0 => Some(*step),
            _ => None,
        })
        .collect();
    assert!(!bests.is_empty());
    for step in &bests {
        assert!(
            checkpointed.contains(step),
            "best step {step}: {checkpointed:?}"
        );
    }
    let best = run.best_step.expect("a best step");
    let checkpoint = run
        .run_dir
        .join("checkpoints")
        .join(format!("step-{best}"))
        .join(crate::model::adapters::ADAPTER_WEIGHTS);
    let final_weights = run
        .run_dir
        .join(super::run::ADAPTER_DIR)
        .join(crate::model::adapters::ADAPTER_WEIGHTS);
    assert_eq!(
        std::fs::read(&checkpoint).expect("the best checkpoint"),
        std::fs::read(&final_weights).expect("the final adapter")
    );
    let leftovers: Vec<String> = std::fs::read_dir(&run.run_dir)
        .expect("run dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.ends_with(".old"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

/// A newest checkpoint that cannot be read gives way to the one before it, and the run says so.
#[test]
fn a_corrupt_newest_checkpoint_resumes_from_the_one_before() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 40);
    let cfg = TrainConfig {
        checkpoint_every: 4,
        ..small_config(12)
    };
    let control = Control::default();
    let first = train(
        &p,
        &cfg,
        &RunOptions::default(),
        &control,
        &mut stop_at(&control, 6),
    )?;
    let newest = first.run_dir.join("checkpoints").join("step-6");
    assert!(newest.is_dir(), "a checkpoint at the stop");
    std::fs::write(newest.join(super::run::OPTIMIZER_FILE), b"torn").expect("corrupt");
    let resume = RunOptions {
        resume: Some(first.run_id.clone()),
        ..RunOptions::default()
    };
    let mut notes = Vec::new();
    let mut from = None;
    let resumed = train(&p, &cfg, &resume, &Control::default(), &mut |e| {
        if let TrainEvent::Started {
            notes: n,
            resumed_from,
            ..
        } = e
        {
            notes = n;
            from = resumed_from;
        }
    })?;
    assert_eq!(from, Some(4));
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("checkpoint step-6 could not be read")),
        "{notes:?}"
    );
    assert_eq!((resumed.status, resumed.steps), (RunStatus::Finished, 12));
    Ok(())
}

#[test]
fn the_first_validation_pass_reports_its_progress_and_stops_when_asked() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 60);
    let cfg = TrainConfig {
        micro_batch: 1,
        ..small_config(2)
    };
    let mut events = Vec::new();
    fresh_run_with(&p, &cfg, &Control::default(), &mut |e| events.push(e))?;
    let first_step = events
        .iter()
        .position(|e| matches!(e, TrainEvent::Step(_)))
        .expect("a step");
    let before: Vec<(usize, usize, usize, bool)> = events[..first_step]
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Validating {
                step,
                done,
                total,
                eta_s,
            } => Some((*step, *done, *total, eta_s.is_some())),
            _ => None,
        })
        .collect();
    let total = before.first().expect("validation before training").2;
    assert!(total > 1, "{before:?}");
    let expected: Vec<(usize, usize, usize, bool)> =
        (0..=total).map(|done| (0, done, total, done > 0)).collect();
    assert_eq!(
        before, expected,
        "one report per micro-batch, an ETA after the first"
    );
    assert!(matches!(
        events[first_step - 1],
        TrainEvent::Eval { step: 0, .. }
    ));
    assert_eq!(
        super::validating_text(0, 3, 8),
        "validating before training: 3 of 8 examples"
    );

    // A stop during the first pass ends the run there, resumable, before any step.
    let control = Control::default();
    let stopped = fresh_run_with(&p, &cfg, &control, &mut |e| {
        if matches!(e, TrainEvent::Validating { done: 1, .. }) {
            control.stop();
        }
        assert!(
            !matches!(e, TrainEvent::Step(_) | TrainEvent::Eval { .. }),
            "{e:?}"
        );
    })?;
    assert_eq!((stopped.status, stopped.steps), (RunStatus::Stopped, 0));
    assert!(stopped.run_dir.join("checkpoints").join("step-0").is_dir());
    Ok(())
}

fn fresh_run_with(
    p: &OpenProject,
    cfg: &TrainConfig,
    control: &Control,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary, TrainError> {
    train(p, cfg, &RunOptions::default(), control, on_event)
}

#[test]
fn a_presets_learning_rate_is_the_one_for_the_models_size() -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 30);
    let cfg = TrainConfig {
        lr: 1e-3,
        ..small_config(1)
    };
    let opts = RunOptions {
        suited_lr: true,
        ..RunOptions::default()
    };
    let mut notes = Vec::new();
    let run = train(&p, &cfg, &opts, &Control::default(), &mut |e| {
        if let TrainEvent::Started { notes: n, .. } = e {
            notes = n;
        }
    })?;
    let written = session::read_config(&run.run_dir.join(run::CONFIG_FILE))?;
    assert_eq!(written.lr, 5e-3, "the embedded model's rate, recorded");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("learning rate 5e-3: the presets' rate for a model of ")),
        "{notes:?}"
    );
    let kept = fresh_run(&p, &cfg)?;
    let written = session::read_config(&kept.run_dir.join(run::CONFIG_FILE))?;
    assert_eq!(written.lr, 1e-3, "a rate the user set stays");
    Ok(())
}
