use super::*;
use crate::app::{AppState, LabLensApp, PanelKind};
use crate::engine::tests::small_project;
use crate::train::run::{METRICS_FILE, RunDir, RunStatus, StatusFile};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_until(h: &mut Harness<'_, LabLensApp>, what: &str, done: impl Fn(&LabLensApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        h.step();
        if done(h.state()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: not reached within 60 s");
}

/// The app over `project` on the Train panel, once its dataset and model have loaded.
fn train_panel_over(project: PathBuf) -> Harness<'static, LabLensApp> {
    let models = project.join("models");
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 950.0))
        .build_eframe(move |cc| {
            LabLensApp::new(&cc.egui_ctx, AppState::default(), Some(project), models)
        });
    wait_until(&mut h, "dataset and model loaded", |app| {
        app.dataset.view().is_some() && app.model.loaded().is_some() && !app.engine.is_busy()
    });
    h.state_mut().state.panel = PanelKind::Train;
    h.run();
    h
}

/// The text a node shows: AccessKit keeps a label's text as its value, other widgets' as their
/// label.
fn shown_text(n: &egui_kittest::Node<'_>) -> Option<String> {
    let node = n.accesskit_node();
    if node.role() == egui::accesskit::Role::Label {
        node.value()
    } else {
        node.label()
    }
}

/// The text box labelled `label` (the label itself is a node of that name too).
fn text_box<'h>(h: &'h Harness<'_, LabLensApp>, label: &'h str) -> egui_kittest::Node<'h> {
    h.get_all_by_label(label)
        .find(|n| n.accesskit_node().role() == egui::accesskit::Role::TextInput)
        .unwrap_or_else(|| panic!("no text box {label}"))
}

/// Replaces the text of the box labelled `label` as a person would: click, select all, type.
fn retype(h: &mut Harness<'_, LabLensApp>, label: &str, text: &str) {
    text_box(h, label).click();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    text_box(h, label).type_text(text);
    h.run();
}

fn start_disabled(h: &Harness<'_, LabLensApp>) -> bool {
    h.get_by_label("Start").accesskit_node().is_disabled()
}

#[test]
fn an_invalid_value_disables_start_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = train_panel_over(small_project(dir.path()));
    assert!(!start_disabled(&h));
    assert!(h.query_by_label_contains("training records").is_some());

    retype(&mut h, "learning rate", "-0.5");
    assert_eq!(h.state().train.form.config().0.lr, -0.5);
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label("learning rate: must be above 0 and below 1")
            .is_some()
    );
    assert!(
        h.query_by_label("Start is disabled: must be above 0 and below 1 (lr)")
            .is_some()
    );

    retype(&mut h, "learning rate", "0.002");
    assert_eq!(h.state().train.form.config().0.lr, 0.002);
    assert!(!start_disabled(&h));
    assert!(h.query_by_label_contains("must be above 0").is_none());
}

fn live_steps(app: &LabLensApp) -> usize {
    app.train.live.as_ref().map_or(0, |l| l.step())
}

#[test]
fn a_run_streams_its_steps_pauses_stops_at_a_checkpoint_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = train_panel_over(small_project(dir.path()));
    let form = &mut h.state_mut().train.form;
    for (label, text) in [
        ("max sequence length", "96"),
        ("micro-batch", "2"),
        ("max steps", "100000"),
        ("validate every", "2"),
        ("validation records", "4"),
        ("checkpoint every", "0"),
    ] {
        form.set_text(label, text);
    }
    h.run();
    h.get_by_label("Start").click();
    wait_until(&mut h, "three steps", |app| live_steps(app) >= 3);
    let live = h.state().train.live.as_ref().expect("live run");
    assert!(live.curves.loss.len() >= 3, "the loss plot has points");
    assert!(
        live.curves.val_loss.len() >= 2,
        "validation at step 0 and 2"
    );
    assert!(h.query_all_by_label_contains("tokens/s").next().is_some());

    // The frame that takes the click drains the steps that came before it, then pauses.
    h.get_by_label("Pause").click();
    h.step();
    let before_pause = live_steps(h.state());
    assert!(h.state().train.is_paused());
    // Only the step under way when Pause was pressed may still finish (slowly, on a loaded
    // machine). The job's spinner keeps repainting: frames are stepped, not run to rest.
    std::thread::sleep(Duration::from_millis(2500));
    h.run_steps(3);
    let paused_at = live_steps(h.state());
    assert!(
        paused_at <= before_pause + 1,
        "{before_pause} → {paused_at}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    h.run_steps(3);
    assert_eq!(live_steps(h.state()), paused_at, "no step while paused");
    assert!(h.query_by_label_contains("(paused)").is_some());
    h.get_by_label("Resume").click();
    wait_until(&mut h, "a step after resuming", |app| {
        live_steps(app) > paused_at
    });
    let row = &h.state().train.runs.rows[0].summary;
    assert_eq!(
        (row.status, row.step),
        (RunStatus::Running, live_steps(h.state())),
        "the Runs table follows the run step by step"
    );

    h.get_by_label("Stop").click();
    // The frame that takes the click, then the next, before the run has written its
    // checkpoint: the button says so.
    h.run_steps(2);
    assert!(h.state().train.is_training(), "still finishing its step");
    assert!(h.query_by_label("Stopping…").is_some());
    assert!(h.query_by_label("Stop").is_none());
    wait_until(&mut h, "the job ended", |app| !app.train.is_training());
    h.run();
    assert!(h.query_by_label("Stopping…").is_none());
    let summary = h.state().train.summary.clone().expect("summary");
    assert_eq!(summary.status, RunStatus::Stopped);
    let run = RunDir::open(dir.path(), &summary.run_id).expect("run folder");
    assert_eq!(run.checkpoints().last(), Some(&summary.steps));
    assert!(
        h.query_by_label_contains("stopped at a checkpoint")
            .is_some()
    );
    let rows = &h.state().train.runs.rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].summary.status, RunStatus::Stopped);

    h.state_mut().train.state.tab = TrainTab::Runs;
    h.run();
    h.get_by_label("Resume").click();
    let stopped_at = summary.steps;
    wait_until(
        &mut h,
        "the run resumed and its earlier curve read",
        |app| {
            app.train.live.as_ref().is_some_and(|l| {
                l.step() > stopped_at && l.curves.loss.points().first().is_some_and(|p| p.x == 1.0)
            })
        },
    );
    let live = h.state().train.live.as_ref().expect("live run");
    assert_eq!(live.run_id, summary.run_id);
    assert_eq!(live.resumed_from, Some(stopped_at));
    h.state().train.stop();
    wait_until(&mut h, "the resumed run stopped", |app| {
        !app.train.is_training()
    });
    let resumed = h.state().train.summary.clone().expect("summary");
    assert_eq!(resumed.run_id, summary.run_id);
    assert!(resumed.steps > stopped_at);
}

/// The device chosen in the model picker is where the Train panel trains, with live curves as on
/// the CPU: the CPU here, a GPU with `LABLENS_TEST_DEVICE=cuda:0`, where the picker also shows
/// the GPU and the status line its memory in use while the run goes.
#[test]
fn training_runs_on_the_device_chosen_in_the_model_picker() {
    let device = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = train_panel_over(small_project(dir.path()));
    h.get_by_label("device").click();
    h.run();
    h.get_all_by_label(&device)
        .find(|n| n.accesskit_node().role() != egui::accesskit::Role::Label)
        .unwrap_or_else(|| panic!("no {device} entry in the device list"))
        .click();
    wait_until(&mut h, "the model on the chosen device", |app| {
        !app.engine.is_busy() && app.model.loaded().is_some_and(|m| m.device == device)
    });
    let gpu = device.starts_with("cuda");
    h.run();
    assert_eq!(h.query_by_label("GPU memory").is_some(), gpu);
    let form = &mut h.state_mut().train.form;
    for (label, text) in [
        ("max sequence length", "96"),
        ("micro-batch", "2"),
        ("max steps", "100000"),
        ("validate every", "3"),
        ("validation records", "4"),
        ("checkpoint every", "0"),
    ] {
        form.set_text(label, text);
    }
    h.run();
    h.get_by_label("Start").click();
    wait_until(&mut h, "four steps", |app| live_steps(app) >= 4);
    h.step();
    let status_texts: Vec<String> = h
        .query_all_by_label_contains(" MiB")
        .filter_map(|n| shown_text(&n))
        .collect();
    let memory_in_use = status_texts
        .iter()
        .any(|t| t.starts_with("GPU ") && t.contains(" / "));
    assert_eq!(
        memory_in_use, gpu,
        "the status line's GPU memory: {status_texts:?}"
    );
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the run stopped", |app| !app.train.is_training());
    let summary = h.state().train.summary.clone().expect("summary");
    assert_eq!(summary.status, RunStatus::Stopped);
    let live = h.state().train.live.as_ref().expect("live run");
    assert!(live.curves.loss.len() >= 4 && live.curves.val_loss.len() >= 2);
    let config = std::fs::read_to_string(summary.run_dir.join("config.ron")).expect("config");
    assert!(
        config.contains(&format!("device: \"{device}\"")),
        "{config}"
    );
}

#[test]
fn a_failed_run_is_explained_in_the_panel_and_the_window_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = train_panel_over(small_project(dir.path()));
    std::fs::remove_file(dir.path().join("discharge.jsonl")).expect("remove the data");
    h.get_by_label("Start").click();
    wait_until(&mut h, "the job ended", |app| !app.train.is_training());
    h.run();
    let error = h.state().train.error.clone().expect("an error");
    assert!(error.contains("discharge.jsonl"), "{error}");
    assert!(
        h.query_by_label(&format!("Training failed: {error}"))
            .is_some()
    );
    assert!(
        h.state().train.runs.rows.is_empty(),
        "no run folder was left"
    );
    // The status line has a Dismiss of its own, drawn before the panel.
    h.get_all_by_label("Dismiss")
        .last()
        .expect("the panel's Dismiss")
        .click();
    h.run();
    assert!(h.query_by_label_contains("Training failed").is_none());
    assert!(!start_disabled(&h));
}

/// A finished run with a straight loss line from `start` down by `slope` a step.
fn fake_run(project: &Path, lr: f64, start: f64, slope: f64) -> String {
    let cfg = crate::train::TrainConfig {
        lr,
        ..Default::default()
    };
    let run = RunDir::create(project, &cfg.to_ron()).expect("run");
    for step in 1..=50usize {
        let line = serde_json::json!({"step": step, "loss": start - slope * step as f64,
            "lr": lr, "grad_norm": 1.0, "tokens": 100, "tokens_per_s": 900.0, "elapsed_s": step});
        run.append_line(METRICS_FILE, &line).expect("metrics");
    }
    run.write_status(&StatusFile {
        status: RunStatus::Finished,
        pid: std::process::id(),
        message: String::new(),
        step: 50,
        total_steps: 50,
        best_step: None,
        best_val_loss: None,
        elapsed_s: 50.0,
    })
    .expect("status");
    run.id
}

#[test]
fn ticking_two_runs_overlays_two_series_and_the_comparison_marks_differences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = small_project(dir.path());
    let a = fake_run(&project, 0.005, 3.0, 0.02);
    let b = fake_run(&project, 0.002, 3.2, 0.01);
    let mut h = train_panel_over(project);
    h.state_mut().train.state.tab = TrainTab::Runs;
    h.run();
    h.get_by_label(&a).click();
    h.run();
    h.get_by_label(&b).click();
    wait_until(&mut h, "both curves loaded", |app| {
        app.train.runs.curves_ready()
    });
    h.run();
    assert_eq!(h.state().train.runs.drawn, 2);

    h.state_mut().train.runs.compare = [Some(a), Some(b)];
    h.run();
    assert!(h.query_by_label("≠ lr").is_some());
    assert!(h.query_by_label("≠ seed").is_none());
    assert!(h.query_by_label("1 of 26 fields differ").is_some());
}

#[test]
fn frames_keep_coming_while_the_engine_is_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = train_panel_over(small_project(dir.path()));
    let (release, wait) = crossbeam_channel::bounded::<()>(1);
    h.state().engine.submit(Command::Custom {
        name: "slow job".into(),
        work: Box::new(move |_, _| {
            wait.recv().ok();
            Ok(String::new())
        }),
    });
    let started = Instant::now();
    for _ in 0..30 {
        let frame = Instant::now();
        h.step();
        assert!(
            frame.elapsed() < Duration::from_millis(500),
            "a frame waited"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(h.state().engine.is_busy(), "the job was still running");
    assert!(start_disabled(&h));
    release.send(()).expect("release");
    wait_until(&mut h, "the job ended", |app| !app.engine.is_busy());
}

#[test]
fn the_playground_streams_the_base_and_the_adapter_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = small_project(dir.path());
    let run =
        RunDir::create(&project, &crate::train::TrainConfig::default().to_ron()).expect("run");
    crate::engine::tests::tiny_adapter(&run.dir.join(crate::train::run::ADAPTER_DIR));
    let mut h = train_panel_over(project);
    h.state_mut().train.state.tab = TrainTab::Playground;
    h.run();
    let adapter_label = format!("{} (final)", run.id);
    assert_eq!(
        h.get_by_label("adapter").value().as_deref(),
        Some(adapter_label.as_str())
    );
    assert!(h.query_by_label_contains("validation records").is_some());
    h.get_by_label("Generate").click();
    wait_until(&mut h, "both outputs", |app| {
        !app.train.playground.is_generating() && !app.engine.is_busy()
    });
    h.run();
    let outputs = &h.state().train.playground.outputs;
    assert_eq!(outputs.len(), 2);
    for o in outputs {
        let result = o.result.as_ref().expect("a finished output");
        assert!(result.new_tokens > 0);
        assert_eq!(o.text, result.text);
    }
    assert!(h.query_by_label("Base model").is_some());
    assert!(
        h.query_by_label(&format!("With adapter {adapter_label}"))
            .is_some()
    );
    assert!(h.state().train.playground.error.is_none());
}

/// A loss that falls with noise on it, as a long run logs it.
fn synthetic_step(step: usize, rng: &mut crate::data::rng::SeededRng) -> TrainEvent {
    let s = step as f64;
    TrainEvent::Step(crate::train::StepMetrics {
        step,
        loss: 0.6 + 2.4 * (-s / 30_000.0).exp() + 0.25 * (rng.f64() - 0.5),
        lr: 2e-4 * (1.0 - s / 250_000.0),
        grad_norm: 1.0,
        tokens: 3_000,
        tokens_per_s: 900.0 + 100.0 * rng.f64(),
        elapsed_s: s * 3.3,
    })
}

/// A panel whose live run has logged `steps` steps, with a validation loss every 100.
fn panel_with_steps(steps: usize, rng: &mut crate::data::rng::SeededRng) -> TrainPanel {
    let mut panel = TrainPanel::new(TrainUiState::default());
    panel.record(&TrainEvent::Started {
        run_id: "bench".into(),
        run_dir: PathBuf::new(),
        total_steps: 250_000,
        resumed_from: None,
        notes: Vec::new(),
    });
    for step in 1..=steps {
        panel.record(&synthetic_step(step, rng));
        if step % 100 == 0 {
            let val_loss = 0.7 + 2.3 * (-(step as f64) / 30_000.0).exp();
            panel.record(&TrainEvent::Eval {
                step,
                val_loss,
                best: true,
            });
        }
    }
    panel
}

/// Build and build-plus-tessellation times of `frames` frames of the panel on a 1600×1000
/// window, a new step logged before each and the pointer over the loss plot (whose hover label
/// searches the nearest point); the first 20 frames, which lay out fonts, are left out.
fn frame_times(
    panel: &mut TrainPanel,
    rng: &mut crate::data::rng::SeededRng,
    frames: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let engine = crate::engine::Engine::start(crate::engine::NoNotifier);
    let train_ctx = PanelContext {
        engine: &engine,
        project: None,
        model: None,
        dataset: None,
    };
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1600.0, 1000.0));
    let first = panel.live.as_ref().map_or(0, |l| l.step()) + 1;
    let (mut build, mut with_tessellation) = (Vec::new(), Vec::new());
    for frame in 0..frames + 20 {
        panel.record(&synthetic_step(first + frame, rng));
        let input = egui::RawInput {
            screen_rect: Some(screen),
            time: Some(frame as f64 / 60.0),
            events: vec![egui::Event::PointerMoved(egui::pos2(900.0, 300.0))],
            ..Default::default()
        };
        let started = Instant::now();
        let output = ctx.run_ui(input, |ui| {
            egui::CentralPanel::default().show(ui, |ui| panel.ui(ui, &train_ctx));
        });
        let built = started.elapsed();
        let primitives = ctx.tessellate(output.shapes, output.pixels_per_point);
        let total = started.elapsed();
        assert!(!primitives.is_empty());
        if frame >= 20 {
            build.push(built);
            with_tessellation.push(total);
        }
    }
    (build, with_tessellation)
}

/// Frame build time of the Train panel with 100k logged steps.
#[test]
#[ignore = "a benchmark: scripts/bench-train-panel.sh runs it and prints the numbers"]
fn bench_frame_build_time_with_100k_steps() {
    let mut rng = crate::data::rng::SeededRng::new(3);
    let fill = Instant::now();
    let mut panel = panel_with_steps(100_000, &mut rng);
    let fill = fill.elapsed();
    let (build, with_tessellation) = frame_times(&mut panel, &mut rng, 500);
    let live = panel.live.as_ref().expect("live run");
    assert!(live.curves.loss.len() <= series::CAPACITY);
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "Train panel, 100,000 logged steps ({} loss points kept, filled in {:.0} ms), {} frames:",
        live.curves.loss.len(),
        fill.as_secs_f64() * 1e3,
        build.len()
    );
    for (what, samples) in [
        ("build", &build),
        ("build + tessellate", &with_tessellation),
    ] {
        println!(
            "  frame {what}: p50 {:.2} ms  p95 {:.2} ms",
            ms(crate::app::quantile(samples, 0.5)),
            ms(crate::app::quantile(samples, 0.95))
        );
    }
}
