use super::*;
use crate::job::{Control, Progress};
use crate::model::loading::{DeviceChoice, ModelSpec, load};

/// Evaluates the base model or a run with nobody watching.
fn quietly(p: &OpenProject, target: &Target, opts: &EvalOptions) -> Result<EvalSummary, JobError> {
    evaluate(p, target, opts, None, &mut Job::unstopped(&mut |_| {}))
}

/// Evaluates the base model, asking it to stop once `done` records are generated.
fn stopped_at(p: &OpenProject, opts: &EvalOptions, done: u64) -> Result<EvalSummary, JobError> {
    let control = Control::new();
    let mut stop = |p: &Progress| {
        if p.done >= done {
            control.stop();
        }
    };
    evaluate(
        p,
        &Target::Base,
        opts,
        None,
        &mut Job::new(&control, &mut stop),
    )
}

fn project(dir: &Path, n: usize) -> OpenProject {
    crate::test_support::discharge_project(dir, n, (50.0, 0.0, 50.0))
}

fn options(limit: usize, batch: usize) -> EvalOptions {
    EvalOptions {
        limit: Some(limit),
        batch,
        params: GenerationParams {
            max_new_tokens: 24,
            ..GenerationParams::default()
        },
        ..EvalOptions::default()
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn the_base_model_is_evaluated_into_predictions_and_a_report() -> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let summary = quietly(&p, &Target::Base, &options(5, 2))?;
    assert_eq!((summary.n, summary.generated_now), (5, 5));
    let dir = tmp.path().join(BASE_DIR);
    let rows = lines(&dir.join(PREDICTIONS_FILE));
    assert_eq!(rows.len(), 5);
    for row in &rows {
        for field in ["id", "input", "reference", "prediction", "task"] {
            assert!(row[field].is_string(), "{field} in {row}");
        }
        let m = &row["metrics"];
        assert!(
            m["rouge1"]["fmeasure"].is_f64() && m["bleu"].is_f64(),
            "{m}"
        );
        assert!(m["meds"]["omitted"].is_array(), "{m}");
        assert!(m["loss"].as_f64().is_some_and(|l| l > 0.0), "{m}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(EVAL_FILE)).expect("eval.json"))
            .expect("json");
    assert_eq!(
        (report["n"].as_u64(), report["split"].as_str()),
        (Some(5), Some("test"))
    );
    let ppl = &report["corpus"]["perplexity"];
    assert!(
        ppl["low"].as_f64() <= ppl["value"].as_f64()
            && ppl["value"].as_f64() <= ppl["high"].as_f64()
    );
    assert!(
        report["data_sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    assert!(!dir.join(PARTIAL_FILE).exists());
    Ok(())
}

#[test]
fn outputs_stopped_at_the_token_limit_are_marked_as_cut() -> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let mut opts = options(5, 2);
    opts.params.max_new_tokens = 2;
    let summary = quietly(&p, &Target::Base, &opts)?;
    let dir = tmp.path().join(BASE_DIR);
    let rows = lines(&dir.join(PREDICTIONS_FILE));
    let cut: Vec<bool> = rows
        .iter()
        .map(|r| r["output_cut"].as_bool().expect("output_cut is a bool"))
        .collect();
    assert!(rows.iter().all(|r| r["input_cut"].is_boolean()));
    let n_cut = cut.iter().filter(|c| **c).count();
    assert!(n_cut >= 1, "two new tokens cut the outputs: {rows:?}");
    assert_eq!(summary.outputs_cut, n_cut);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(EVAL_FILE)).expect("eval.json"))
            .expect("json");
    assert_eq!(report["outputs_cut"].as_u64(), Some(n_cut as u64));
    // The rows the Compare and Review panels read say so too.
    let (read, issues) = crate::project::predictions::parse_predictions(
        &std::fs::read(dir.join(PREDICTIONS_FILE)).expect("read"),
    );
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(read.iter().map(|r| r.output_cut).collect::<Vec<_>>(), cut);
    Ok(())
}

#[test]
fn a_cancelled_evaluation_continues_from_its_last_batch_with_the_same_outputs()
-> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let whole = quietly(&p, &Target::Base, &options(6, 2))?;
    let dir = whole.out_dir.clone();
    let expected = lines(&dir.join(PREDICTIONS_FILE));
    std::fs::remove_dir_all(&dir).expect("clear");

    // Cancel once two batches are through.
    let first = stopped_at(&p, &options(6, 2), 4);
    assert!(
        matches!(first, Err(JobError::Cancelled { done: 4, total: 6 })),
        "{first:?}"
    );
    assert!(!dir.join(PREDICTIONS_FILE).exists());

    let mut resumed_after = None;
    let mut first_seen = |p: &Progress| {
        resumed_after.get_or_insert(p.done);
    };
    let second = evaluate(
        &p,
        &Target::Base,
        &options(6, 2),
        None,
        &mut Job::unstopped(&mut first_seen),
    )?;
    assert_eq!((resumed_after, second.generated_now), (Some(4), 2));
    assert_eq!(lines(&dir.join(PREDICTIONS_FILE)), expected);

    // Other settings start over.
    let other = quietly(&p, &Target::Base, &options(3, 3))?;
    assert_eq!(other.generated_now, 3);
    Ok(())
}

/// Rows of the partial file that repeat an id or name no record of the split are generated
/// again, said in a note, and the report counts each record once.
#[test]
fn a_partial_file_with_repeated_or_unknown_ids_is_not_trusted() -> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let whole = quietly(&p, &Target::Base, &options(4, 2))?;
    let dir = whole.out_dir.clone();
    let expected = lines(&dir.join(PREDICTIONS_FILE));
    std::fs::remove_dir_all(&dir).expect("clear");

    let first = stopped_at(&p, &options(4, 2), 2);
    assert!(
        matches!(first, Err(JobError::Cancelled { done: 2, .. })),
        "{first:?}"
    );
    let partial = dir.join(PARTIAL_FILE);
    let text = std::fs::read_to_string(&partial).expect("partial");
    let first_row: Done = serde_json::from_str(text.lines().next().expect("a row")).expect("row");
    let stranger = Done {
        id: "no-such-record".into(),
        ..first_row.clone()
    };
    let wrong = Done {
        prediction: "a prediction of another record".into(),
        ..first_row
    };
    append_synced(&partial, &[wrong, stranger])?;

    let mut notes = Vec::new();
    let mut noted = |p: &Progress| notes.extend(p.message.clone());
    let second = evaluate(
        &p,
        &Target::Base,
        &options(4, 2),
        None,
        &mut Job::unstopped(&mut noted),
    )?;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("2 rows of the partial predictions")),
        "{notes:?}"
    );
    assert_eq!(second.generated_now, 2);
    assert_eq!(lines(&dir.join(PREDICTIONS_FILE)), expected);
    Ok(())
}

/// A second evaluation of the same folder is refused while the first holds it.
#[test]
fn an_evaluation_in_progress_is_not_run_twice() -> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 12);
    let whole = quietly(&p, &Target::Base, &options(2, 2))?;
    let held = crate::store::lock::FolderLock::acquire(&whole.out_dir, "eval").expect("lock");
    let second = quietly(&p, &Target::Base, &options(2, 2));
    let Err(JobError::Busy(message)) = &second else {
        panic!("{second:?}");
    };
    assert!(message.contains("(eval, since"), "{message}");
    drop(held);
    quietly(&p, &Target::Base, &options(2, 2))?;
    Ok(())
}

#[test]
fn a_kept_model_is_used_and_given_back_as_it_was() -> Result<(), JobError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let fresh = quietly(&p, &Target::Base, &options(4, 2))?;
    assert!(!fresh.model_reused);
    let expected = lines(&fresh.out_dir.join(PREDICTIONS_FILE));
    let mut kept = load(&p.model().spec()).expect("the project's model");
    let context = kept.llama.rope.max_len();
    let lent = evaluate(
        &p,
        &Target::Base,
        &options(4, 2),
        Some(&mut kept),
        &mut Job::unstopped(&mut |_| {}),
    )?;
    assert!(lent.model_reused);
    assert_eq!(lines(&lent.out_dir.join(PREDICTIONS_FILE)), expected);
    assert_eq!(kept.llama.rope.max_len(), context);
    // Another model's weights are not used for it.
    let mut other = load(&ModelSpec {
        device: DeviceChoice::Cpu,
        ..p.model().spec()
    })
    .expect("the same model, on a device named otherwise");
    let loaded = evaluate(
        &p,
        &Target::Base,
        &options(4, 2),
        Some(&mut other),
        &mut Job::unstopped(&mut |_| {}),
    )?;
    assert!(!loaded.model_reused);
    Ok(())
}

#[test]
fn bad_requests_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let err = |target: &Target, opts: &EvalOptions| {
        quietly(&p, target, opts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(&Target::Run("nope".into()), &options(2, 1)).contains("nope"));
    let unknown = EvalOptions {
        dataset: Some("qa".into()),
        ..options(2, 1)
    };
    assert!(err(&Target::Base, &unknown).contains("no dataset \"qa\""));
    let empty = EvalOptions {
        split: Split::Validation,
        ..options(2, 1)
    };
    assert!(err(&Target::Base, &empty).contains("validation split has no records"));
    assert!(err(&Target::Base, &options(2, 0)).contains("--batch"));
}

#[test]
fn a_runs_adapter_is_evaluated_into_the_run_folder() -> Result<(), JobError> {
    use crate::train::{RunOptions, TrainConfig, train};
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = project(tmp.path(), 24);
    let cfg = TrainConfig {
        max_seq_len: 96,
        max_steps: Some(2),
        eval_every: 0,
        ..TrainConfig::default()
    };
    let run = train(
        &p,
        &cfg,
        &RunOptions::default(),
        &Control::default(),
        &mut |_| {},
    )
    .expect("train");
    let summary = quietly(&p, &Target::Run(run.run_id.clone()), &options(2, 2))?;
    assert_eq!(summary.out_dir, run.run_dir);
    assert_eq!(lines(&run.run_dir.join(PREDICTIONS_FILE)).len(), 2);
    // The kept base model gives the same outputs with the run's adapter, and loses it after.
    let expected = lines(&run.run_dir.join(PREDICTIONS_FILE));
    let mut kept = load(&p.model().spec()).expect("the base model");
    let lent = evaluate(
        &p,
        &Target::Run(run.run_id.clone()),
        &options(2, 2),
        Some(&mut kept),
        &mut Job::unstopped(&mut |_| {}),
    )?;
    assert!(lent.model_reused);
    assert_eq!(lines(&run.run_dir.join(PREDICTIONS_FILE)), expected);
    assert!(kept.llama.linears().iter().all(|(_, l)| l.lora.is_none()));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.run_dir.join(EVAL_FILE)).expect("eval.json"))
            .expect("json");
    assert_eq!(report["run"].as_str(), Some(run.run_id.as_str()));
    assert!(
        report["adapter"]
            .as_str()
            .is_some_and(|a| a.ends_with("adapter"))
    );
    assert!(
        report["adapter_sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    // A corrupt adapter is bad input (exit 2 in the CLI), as it is for `score`.
    std::fs::write(
        run.run_dir
            .join("adapter")
            .join(crate::model::adapters::ADAPTER_WEIGHTS),
        b"not safetensors",
    )
    .expect("corrupt");
    let corrupt = quietly(&p, &Target::Run(run.run_id.clone()), &options(2, 2));
    assert!(matches!(corrupt, Err(JobError::Usage(_))), "{corrupt:?}");
    Ok(())
}
