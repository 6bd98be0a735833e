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
        spec: ModelSpec::new(crate::model::load::TINY),
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
    let reference = crate::model::load::load(&ModelSpec::new(crate::model::load::TINY))
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
