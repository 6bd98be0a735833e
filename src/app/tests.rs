use super::*;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use status::Notice;

fn wait_until(h: &mut Harness<'_, LabLensApp>, done: impl Fn(&LabLensApp) -> bool) {
    for _ in 0..500 {
        h.step();
        if done(h.state()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not reached within 5 s");
}

#[test]
fn opens_the_demo_project_and_survives_a_failed_job() {
    let demo = default_project_dir();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(|cc| {
            LabLensApp::new(
                &cc.egui_ctx,
                AppState::default(),
                Some(demo),
                default_models_dir(),
            )
        });
    wait_until(&mut h, |app| {
        app.dataset.view().is_some() && !app.model.is_busy()
    });
    h.run();
    assert_eq!(h.state().dataset.rows.len(), 2000);
    assert!(h.query_by_label("discharge.jsonl").is_some());

    h.state_mut()
        .open_dataset(PathBuf::from("/nonexistent/ward-notes.jsonl"));
    wait_until(&mut h, |app| {
        matches!(app.status.notice, Some(Notice::Error(_)))
    });
    h.run();
    let Some(Notice::Error(message)) = &h.state().status.notice else {
        unreachable!("checked by wait_until")
    };
    assert!(message.contains("ward-notes.jsonl"), "{message}");
    assert!(h.query_by_label_contains("ward-notes.jsonl").is_some());
    // The dataset that was open stays open and the engine takes new work.
    assert_eq!(h.state().dataset.rows.len(), 2000);
    assert!(!h.state().engine.is_busy());
}

fn app_over(project: PathBuf, models: PathBuf) -> Harness<'static, LabLensApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            LabLensApp::new(&cc.egui_ctx, AppState::default(), Some(project), models)
        })
}

/// A project with no datasets (so its model loads at once) in `dir`/ward.
fn ward_project(dir: &Path) -> PathBuf {
    let project = dir.join("ward");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(
        project.join(crate::project::PROJECT_FILE),
        "(name: \"ward\", task: discharge)",
    )
    .expect("write");
    project
}

fn loaded_name(app: &LabLensApp) -> Option<&str> {
    app.model.loaded().map(|m| m.name.as_str())
}

#[test]
fn opening_the_demo_project_loads_its_model_after_the_dataset() {
    let mut h = app_over(default_project_dir(), default_models_dir());
    wait_until(&mut h, |app| {
        loaded_name(app).is_some() && !app.model.is_busy()
    });
    h.run();
    let app = h.state();
    assert!(app.dataset.view().is_some());
    assert_eq!(loaded_name(app), Some("tiny-clinical"));
    assert!(!app.unsaved, "the project's own model changes nothing");
    for shown in [
        "tiny-clinical",
        "2.36 M",
        "llama",
        "1024 tokens",
        "6 (2 kv)",
    ] {
        assert!(
            h.query_by_label(shown).is_some(),
            "{shown} not in the sidebar"
        );
    }
    // The weights' format and the precision the model computes in.
    assert_eq!(h.query_all_by_label("f32").count(), 2);
    assert!(h.query_by_label("Model: tiny-clinical on cpu").is_some());
}

#[test]
fn a_corrupt_model_keeps_the_earlier_one_and_a_chosen_model_is_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = ward_project(dir.path());
    let mut h = app_over(project.clone(), dir.path().join("models"));
    wait_until(&mut h, |app| loaded_name(app) == Some("tiny-clinical"));

    let broken = dir.path().join("ward-model.gguf");
    std::fs::write(&broken, b"not a model").expect("write");
    h.state_mut().handle_picked(PickedFile::Model(broken));
    wait_until(&mut h, |app| {
        !app.model.is_busy() && app.model.error.is_some()
    });
    h.run();
    let Some(Notice::Error(message)) = &h.state().status.notice else {
        panic!("no error in the status line")
    };
    assert!(message.contains("ward-model.gguf"), "{message}");
    let shown = h
        .get_by_label_contains("Not loaded:")
        .value()
        .unwrap_or_default();
    assert!(
        shown.contains("ward-model.gguf: not a readable GGUF file"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert_eq!(loaded_name(h.state()), Some("tiny-clinical"));
    assert_eq!(
        h.get_by_label("Model").value().as_deref(),
        Some("Embedded tiny model")
    );
    assert!(!h.state().unsaved);
    assert!(!h.state().engine.is_busy());

    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-hf");
    h.state_mut().handle_picked(PickedFile::Model(folder));
    wait_until(&mut h, |app| loaded_name(app) == Some("tiny-llama-hf"));
    h.run();
    assert!(h.state().model.error.is_none());
    assert!(h.state().unsaved);
    assert!(h.query_by_label("unsaved changes").is_some());
    h.state_mut().save_project();
    h.run();
    assert!(h.query_by_label("unsaved changes").is_none());
    let saved = std::fs::read_to_string(project.join(crate::project::PROJECT_FILE)).expect("read");
    assert!(saved.contains("tests/fixtures/tiny-llama-hf\")"), "{saved}");
}

#[test]
fn the_smollm2_entry_says_how_to_get_it_when_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    let mut h = app_over(ward_project(dir.path()), models.clone());
    wait_until(&mut h, |app| loaded_name(app).is_some());
    h.run();
    h.get_by_label("Model").click();
    h.run();
    let hint = "run: bash scripts/fetch-smollm2.sh";
    assert!(h.query_by_label(hint).is_some());
    let entry = h.get_by_label("SmolLM2-135M-Instruct (Q4_1 GGUF)");
    assert!(entry.accesskit_node().is_disabled());

    let file = models.join(model_picker::SMOLLM2_FILE);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, b"").expect("write");
    h.run();
    assert!(h.query_by_label(hint).is_none());
    let entry = h.get_by_label("SmolLM2-135M-Instruct (Q4_1 GGUF)");
    assert!(!entry.accesskit_node().is_disabled());
}

#[test]
fn a_device_change_reloads_the_model_and_dequantize_waits_for_a_gguf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = app_over(ward_project(dir.path()), dir.path().join("models"));
    wait_until(&mut h, |app| {
        loaded_name(app).is_some() && !app.model.is_busy()
    });
    h.run();
    h.get_by_label("dequantize").click();
    h.run();
    assert!(h.state().model.dequantize);
    assert!(
        !h.state().model.is_busy(),
        "dequantize does not apply to the tiny model"
    );
    assert!(!h.state().unsaved);

    h.get_by_label("device").click();
    h.run();
    h.get_all_by_label("cpu")
        .find(|n| n.accesskit_node().role() != egui::accesskit::Role::Label)
        .expect("a cpu entry in the device list")
        .click();
    wait_until(&mut h, |app| app.unsaved && !app.model.is_busy());
    let saved = &h.state().project.as_ref().expect("project").project.model;
    assert_eq!(saved.device, crate::model::loading::DeviceChoice::Cpu);
    assert!(saved.dequantize);
    assert_eq!(loaded_name(h.state()), Some("tiny-clinical"));
}

#[test]
fn f12_toggles_the_frame_time_readout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = app_over(ward_project(dir.path()), dir.path().join("models"));
    wait_until(&mut h, |app| loaded_name(app).is_some());
    h.run();
    assert!(h.query_by_label_contains("frame build").is_none());
    h.key_press(egui::Key::F12);
    h.run();
    let shown = h
        .get_by_label_contains("frame build")
        .value()
        .unwrap_or_default();
    assert!(shown.contains("p50") && shown.contains("p95"), "{shown}");
    assert!(h.state().frame_times.p50_p95().is_some());
    h.get_by_label("Frame time").click();
    h.run();
    assert!(h.query_by_label_contains("frame build").is_none());
}

#[test]
fn a_precision_change_reloads_the_model_in_bf16_and_the_project_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = app_over(ward_project(dir.path()), dir.path().join("models"));
    wait_until(&mut h, |app| {
        loaded_name(app).is_some() && !app.model.is_busy()
    });
    h.run();
    assert_eq!(
        h.state().model.loaded().map(|m| m.dtype.as_str()),
        Some("f32")
    );
    h.get_by_label("precision").click();
    h.run();
    h.get_all_by_label("bf16")
        .find(|n| n.accesskit_node().role() != egui::accesskit::Role::Label)
        .expect("a bf16 entry in the precision list")
        .click();
    wait_until(&mut h, |app| {
        app.unsaved && !app.model.is_busy() && app.model.loaded().is_some_and(|m| m.dtype == "bf16")
    });
    h.run();
    let saved = &h.state().project.as_ref().expect("project").project.model;
    assert_eq!(saved.dtype, crate::model::loading::Precision::Bf16);
    // The precision list's choice and the model's Precision row.
    assert_eq!(h.query_all_by_label("bf16").count(), 2);
}

/// The Dataset panel's three tabs on the demo project, at the default window size and at
/// 1024 × 768: no two rows of text over each other, none cut, no glyph the fonts lack
/// (`legibility::problems`; the other panels are checked on every `lablens screenshots`).
#[test]
fn the_dataset_panel_is_legible_at_the_default_size_and_at_1024_by_768() {
    for size in [DEFAULT_SIZE, [1024.0, 768.0]] {
        let mut h = Harness::builder()
            .with_size(egui::vec2(size[0], size[1]))
            .build_eframe(|cc| {
                LabLensApp::new(
                    &cc.egui_ctx,
                    AppState::default(),
                    Some(default_project_dir()),
                    default_models_dir(),
                )
            });
        wait_until(&mut h, |app| {
            app.dataset.view().is_some() && app.model.loaded().is_some()
        });
        for tab in [
            DatasetTab::Records,
            DatasetTab::Validation,
            DatasetTab::Distributions,
        ] {
            h.state_mut().dataset.state.tab = tab;
            h.run_steps(8);
            let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(size[0], size[1]));
            let shapes = h.output().shapes.clone();
            let ctx = h.ctx.clone();
            let found = ctx.fonts_mut(|fonts| {
                legibility::problems(&shapes, screen, |font, c| fonts.has_glyph(font, c))
            });
            assert!(
                found.is_empty(),
                "{tab:?} at {size:?}: {} problems, first: {:#?}",
                found.len(),
                &found[..found.len().min(12)]
            );
        }
    }
}

/// Review mode hides what would unblind a reviewer: the sidebar (its model) and the status
/// line (the model and the jobs that made the outputs); leaving it brings both back.
#[test]
fn review_mode_hides_the_sidebar_and_the_status_line() {
    let mut h = app_over(default_project_dir(), default_models_dir());
    wait_until(&mut h, |app| {
        app.dataset.view().is_some() && app.model.loaded().is_some()
    });
    h.run_steps(4);
    assert!(h.query_by_label_contains("Model: ").is_some());
    assert!(h.query_by_label("Datasets").is_some());
    h.state_mut().state.panel = PanelKind::Compare;
    h.state_mut().compare.state.review_mode = true;
    h.run_steps(4);
    assert!(h.query_by_label_contains("Model: ").is_none());
    assert!(h.query_by_label("Datasets").is_none());
    h.state_mut().compare.state.review_mode = false;
    h.run_steps(4);
    assert!(h.query_by_label_contains("Model: ").is_some());
    assert!(h.query_by_label("Datasets").is_some());
}
