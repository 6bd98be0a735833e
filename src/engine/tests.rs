use super::*;
use std::sync::atomic::AtomicUsize;

struct CountingNotifier(Arc<AtomicUsize>);

impl Notifier for CountingNotifier {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn custom(
    name: &str,
    work: impl FnOnce(&JobContext) -> Result<String, JobError> + Send + 'static,
) -> Command {
    Command::Custom {
        name: name.into(),
        work: Box::new(move |ctx, _| work(ctx)),
    }
}

/// Events until the job's terminal event (Finished, Failed or Cancelled).
fn events_until_done(engine: &Engine) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = engine.recv_timeout(Duration::from_secs(10)) {
        let terminal = matches!(
            e,
            Event::Finished { .. } | Event::Failed { .. } | Event::Cancelled { .. }
        );
        out.push(e);
        if terminal {
            break;
        }
    }
    out
}

#[test]
fn custom_job_reports_start_result_and_finish() {
    let notified = Arc::new(AtomicUsize::new(0));
    let engine = Engine::start(CountingNotifier(Arc::clone(&notified)));
    let job = engine
        .submit(custom("add", |ctx| {
            ctx.progress("adding", 1, 2);
            Ok("3".into())
        }))
        .expect("idle engine accepts a job");
    let events = events_until_done(&engine);
    assert!(matches!(events[0], Event::Started { job: j, .. } if j == job));
    assert!(matches!(
        events[1],
        Event::Progress {
            done: 1,
            total: 2,
            ..
        }
    ));
    assert!(matches!(&events[2], Event::Message { text, .. } if text == "3"));
    assert!(matches!(events[3], Event::Finished { .. }));
    assert!(notified.load(Ordering::Relaxed) >= 4);
}

#[test]
fn a_panicking_job_becomes_failed_and_the_engine_keeps_working() {
    let engine = Engine::start(NoNotifier);
    engine.submit(custom("boom", |_| panic!("index out of range")));
    let events = events_until_done(&engine);
    match events.last() {
        Some(Event::Failed { error, name, .. }) => {
            assert!(error.contains("index out of range"), "{error}");
            assert_eq!(name, "boom");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(engine.submit(custom("ok", |_| Ok("fine".into()))).is_some());
    assert!(matches!(
        events_until_done(&engine).last(),
        Some(Event::Finished { .. })
    ));
}

#[test]
fn a_second_job_is_refused_with_busy_not_queued() {
    let engine = Engine::start(NoNotifier);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    engine.submit(custom("slow", move |_| {
        release_rx.recv().ok();
        Ok(String::new())
    }));
    assert!(engine.is_busy());
    assert_eq!(engine.submit(custom("second", |_| Ok(String::new()))), None);
    release_tx.send(()).expect("release");
    let events = events_until_done(&engine);
    let busy = events.iter().find_map(|e| match e {
        Event::Busy { running, refused } => Some((running.clone(), refused.clone())),
        _ => None,
    });
    assert_eq!(busy, Some(("slow".to_string(), "second".to_string())));
    // Only one Started: the refused job never ran.
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::Started { .. }))
        .count();
    assert_eq!(started, 1);
    assert!(!engine.is_busy());
}

#[test]
fn cancel_stops_a_running_job() {
    let engine = Engine::start(NoNotifier);
    engine.submit(custom("spin", |ctx| {
        loop {
            ctx.check()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }));
    std::thread::sleep(Duration::from_millis(20));
    engine.cancel();
    assert!(matches!(
        events_until_done(&engine).last(),
        Some(Event::Cancelled { .. })
    ));
}

/// A job that reports what the engine's loaded model is: its path and parameter count.
fn describe_loaded_model() -> Command {
    Command::Custom {
        name: "which model".into(),
        work: Box::new(|_, model| {
            Ok(model.map_or("none".into(), |m| {
                format!("{} {}", m.info.path.display(), m.llama.parameter_count())
            }))
        }),
    }
}

fn message_of(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::Message { text, .. } => Some(text.clone()),
        _ => None,
    })
}

fn load_tiny(engine: &Engine) -> ModelInfo {
    engine.submit(Command::LoadModel {
        spec: ModelSpec::new(crate::model::loading::TINY),
    });
    let events = events_until_done(engine);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Progress {
                done: 0,
                total: 1,
                ..
            }
        )),
        "{events:?}"
    );
    events
        .into_iter()
        .find_map(|e| match e {
            Event::ModelLoaded { info, .. } => Some(info),
            _ => None,
        })
        .expect("the tiny model loads")
}

#[test]
fn loads_the_tiny_model_reports_its_numbers_and_keeps_it() {
    let engine = Engine::start(NoNotifier);
    let info = load_tiny(&engine);
    // 4096·192 embeddings + 4 layers of 393,600 + the final norm (head tied), as pretraining
    // recorded in assets/models/tiny-clinical/training.json.
    assert_eq!(info.parameters, 2_361_024);
    let reference = crate::model::loading::load(&ModelSpec::new(crate::model::loading::TINY))
        .expect("tiny loads directly");
    assert_eq!(info.parameters, reference.llama.parameter_count());
    assert_eq!(info.name, "tiny-clinical");
    assert_eq!(info.source, ModelSourceKind::Embedded);
    assert_eq!(info.architecture, "llama");
    assert_eq!(
        (info.layers, info.hidden_size, info.heads, info.kv_heads),
        (4, 192, 6, 2)
    );
    assert_eq!((info.vocab_size, info.context), (4096, 1024));
    assert_eq!(info.quantization, "f32");
    assert_eq!(info.device, "cpu");
    assert!(info.chat_template_found);

    engine.submit(describe_loaded_model());
    let text = message_of(&events_until_done(&engine)).expect("message");
    assert_eq!(text, format!("{} 2361024", info.path.display()));
}

#[test]
fn a_corrupt_gguf_fails_naming_the_file_and_the_earlier_model_stays() {
    let engine = Engine::start(NoNotifier);
    let tiny = load_tiny(&engine);
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("ward-model.gguf");
    std::fs::write(&broken, b"this is not a GGUF file at all").expect("write");
    engine.submit(Command::LoadModel {
        spec: ModelSpec::new(&broken),
    });
    let events = events_until_done(&engine);
    match events.last() {
        Some(Event::Failed { error, name, .. }) => {
            assert!(error.contains("ward-model.gguf"), "{error}");
            assert!(error.contains("not a readable GGUF file"), "{error}");
            // One line even when RUST_BACKTRACE makes candle append a backtrace.
            assert_eq!(error.lines().count(), 1, "{error}");
            assert_eq!(name, "Load ward-model.gguf");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ModelLoaded { .. }))
    );
    engine.submit(describe_loaded_model());
    let text = message_of(&events_until_done(&engine)).expect("message");
    assert_eq!(text, format!("{} {}", tiny.path.display(), tiny.parameters));
}

/// A project over the first 40 records of the sample discharge set, 80% for training.
pub(crate) fn small_project(dir: &std::path::Path) -> PathBuf {
    crate::test_support::discharge_project(dir, 40, (80.0, 20.0, 0.0));
    dir.to_path_buf()
}

/// The base model over four records, two a batch, eight new tokens each.
fn base_of_four(project_dir: &std::path::Path) -> EvalRequest {
    EvalRequest {
        project_dir: project_dir.to_path_buf(),
        target: crate::eval::job::target::Target::Base,
        options: crate::eval::job::EvalOptions {
            limit: Some(4),
            batch: 2,
            params: crate::model::generation::GenerationParams {
                max_new_tokens: 8,
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

#[test]
fn an_evaluation_reports_progress_and_writes_its_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    crate::test_support::discharge_project(tmp.path(), 24, (50.0, 0.0, 50.0));
    let engine = Engine::start(NoNotifier);
    engine.submit(Command::Evaluate(Box::new(base_of_four(tmp.path()))));
    let events = events_until_done(&engine);
    let done: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { done, total: 4, .. } => Some(*done),
            _ => None,
        })
        .collect();
    assert_eq!(done, [0, 2, 4], "{events:?}");
    let summary = events.iter().find_map(|e| match e {
        Event::Evaluated { summary, .. } => Some(summary),
        _ => None,
    });
    assert_eq!(summary.map(|s| s.n), Some(4));
    assert_eq!(summary.map(|s| s.model_reused), Some(false));
    assert!(tmp.path().join("base/predictions.jsonl").is_file());
    assert!(tmp.path().join("base/eval.json").is_file());
    // With the project's model loaded, the evaluation uses it instead of loading another.
    load_tiny(&engine);
    engine.submit(Command::Evaluate(Box::new(base_of_four(tmp.path()))));
    let reused = events_until_done(&engine)
        .into_iter()
        .find_map(|e| match e {
            Event::Evaluated { summary, .. } => Some(summary.model_reused),
            _ => None,
        });
    assert_eq!(reused, Some(true));
}

/// A configuration that takes a few milliseconds a step on the tiny model.
fn fast_config(max_steps: usize) -> crate::train::TrainConfig {
    crate::train::TrainConfig {
        max_seq_len: 96,
        micro_batch: 2,
        max_steps: Some(max_steps),
        eval_every: 0,
        eval_records: 4,
        checkpoint_every: 0,
        ..crate::train::TrainConfig::default()
    }
}

/// An engine training `config` on a small project in `dir`, and the run's control.
fn start_training(
    dir: &std::path::Path,
    config: crate::train::TrainConfig,
) -> (Engine, Arc<crate::job::Control>) {
    let engine = Engine::start(NoNotifier);
    let control = Arc::new(crate::job::Control::default());
    engine.submit(Command::Train(Box::new(TrainRequest {
        project_dir: small_project(dir),
        config,
        resume: None,
        control: Arc::clone(&control),
    })));
    (engine, control)
}

#[test]
fn a_training_job_streams_its_steps_and_cancel_stops_it_at_a_checkpoint_even_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, control) = start_training(dir.path(), fast_config(100_000));
    let mut steps = Vec::new();
    let mut progress_eta = false;
    let mut validated_first = false;
    while steps.len() < 3 {
        match engine.recv_timeout(Duration::from_secs(60)) {
            Some(Event::Train {
                event: TrainEvent::Step(m),
                ..
            }) => steps.push(m.step),
            // The first validation pass is its own phase, before any step.
            Some(Event::Progress { stage, .. }) if stage.starts_with("validating before") => {
                validated_first |= steps.is_empty();
            }
            Some(Event::Progress { total, eta, .. }) => {
                assert_eq!(total, 100_000);
                progress_eta |= eta.is_some();
            }
            Some(Event::Failed { error, .. }) => panic!("{error}"),
            Some(_) => {}
            None => panic!("no step within 60 s"),
        }
    }
    assert_eq!(steps, [1, 2, 3]);
    assert!(progress_eta, "steps report an ETA");
    assert!(
        validated_first,
        "the first validation pass reports its progress"
    );
    control.pause();
    std::thread::sleep(Duration::from_millis(200));
    engine.cancel();
    let events = events_until_done(&engine);
    let summary = events
        .iter()
        .find_map(|e| match e {
            Event::Trained { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("a summary");
    assert_eq!(summary.status, crate::train::run::RunStatus::Stopped);
    assert!(summary.steps >= 3 && summary.steps < 100_000);
    let run = crate::train::run::RunDir::open(dir.path(), &summary.run_id).expect("run");
    assert_eq!(run.checkpoints().last(), Some(&summary.steps));
    assert!(matches!(events.last(), Some(Event::Finished { .. })));
    assert!(!engine.is_busy());
}

#[test]
fn a_bad_training_configuration_fails_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::train::TrainConfig {
        lr: -1.0,
        ..fast_config(3)
    };
    let (engine, _control) = start_training(dir.path(), config);
    match events_until_done(&engine).last() {
        Some(Event::Failed { error, name, .. }) => {
            assert_eq!(
                error,
                "invalid configuration: lr: must be above 0 and below 1"
            );
            assert_eq!(name, "Train on discharge");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(crate::train::run::list_runs(dir.path()).is_empty());
}

/// Writes into `out` a PEFT adapter for the tiny model whose B matrices are not zero, so that it
/// changes outputs.
pub(crate) fn tiny_adapter(out: &std::path::Path) {
    let mut model =
        crate::model::loading::load(&ModelSpec::new(crate::model::loading::TINY)).expect("tiny");
    let lora = crate::model::adapters::LoraConfig {
        r: 4,
        ..Default::default()
    };
    let vars = crate::model::adapters::attach(&mut model.llama, &lora, 7).expect("attach");
    for (name, var) in vars.iter().filter(|(n, _)| n.ends_with("lora_B.weight")) {
        let ones = var.as_tensor().ones_like().expect(name);
        var.set(&(ones * 0.05).expect(name)).expect(name);
    }
    std::fs::create_dir_all(out).expect("mkdir");
    crate::model::adapters::save_peft(&model.llama, &lora, "tiny", out).expect("save");
}

/// The streamed texts and the final outputs of a generation job, by output.
fn generate(engine: &Engine, adapters: Vec<Option<PathBuf>>) -> (Vec<Vec<String>>, Vec<String>) {
    let n = adapters.len();
    engine.submit(Command::Generate(Box::new(GenerateRequest {
        task: Some(crate::data::record::Task::Discharge),
        input: "Diagnosis: community-acquired pneumonia. Treated with antibiotics.".into(),
        params: crate::model::generation::GenerationParams {
            max_new_tokens: 6,
            ..Default::default()
        },
        adapters,
    })));
    let mut streamed = vec![Vec::new(); n];
    let mut finals = vec![String::new(); n];
    for e in events_until_done(engine) {
        match e {
            Event::Token { output, text, .. } => streamed[output].push(text),
            Event::Generated { output, result, .. } => finals[output] = result.text,
            Event::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    (streamed, finals)
}

#[test]
fn generation_streams_the_base_and_the_adapter_output_and_leaves_the_base_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let adapter = dir.path().join("adapter");
    tiny_adapter(&adapter);
    let engine = Engine::start(NoNotifier);
    load_tiny(&engine);
    let (streamed, finals) = generate(&engine, vec![None, Some(adapter)]);
    for (tokens, text) in streamed.iter().zip(&finals) {
        assert!((1..=6).contains(&tokens.len()), "{tokens:?}");
        assert_eq!(tokens.last(), Some(text));
        assert!(tokens.windows(2).all(|w| w[1].starts_with(w[0].trim_end())));
    }
    assert_ne!(finals[0], finals[1], "the adapter changes the output");
    let (_, again) = generate(&engine, vec![None]);
    assert_eq!(
        again[0], finals[0],
        "the base model is unchanged after the adapter ran"
    );
}

#[test]
fn generation_without_a_model_fails_readably() {
    let engine = Engine::start(NoNotifier);
    engine.submit(Command::Generate(Box::new(GenerateRequest {
        task: None,
        input: "hello".into(),
        params: Default::default(),
        adapters: vec![None],
    })));
    assert!(matches!(
        events_until_done(&engine).last(),
        Some(Event::Failed { error, .. }) if error == "no model is loaded: load one in the sidebar"
    ));
}

#[test]
fn a_playground_prompt_longer_than_the_context_is_trimmed_not_refused() {
    let engine = Engine::start(NoNotifier);
    load_tiny(&engine);
    engine.submit(Command::Generate(Box::new(GenerateRequest {
        task: Some(crate::data::record::Task::Discharge),
        // Some 4,000 tokens: four times the embedded model's context.
        input: "The patient was admitted with chest pain and treated. ".repeat(400),
        params: crate::model::generation::GenerationParams {
            max_new_tokens: 4,
            ..Default::default()
        },
        adapters: vec![None],
    })));
    let generated = events_until_done(&engine)
        .into_iter()
        .find_map(|e| match e {
            Event::Generated { result, .. } => Some(result),
            Event::Failed { error, .. } => panic!("{error}"),
            _ => None,
        })
        .expect("an output");
    assert!(generated.input_cut, "{generated:?}");
    assert!((1..=4).contains(&generated.new_tokens), "{generated:?}");
}
