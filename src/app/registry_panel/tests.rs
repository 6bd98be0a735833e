use super::*;
use crate::test_support::draw_alone;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

fn harness(dir: &Path) -> Harness<'static, RegistryPanel> {
    let mut panel = RegistryPanel::new(RegistryUiState::default());
    panel.set_project(dir);
    panel.wait_idle();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, panel: &mut RegistryPanel| draw_alone(ui, panel), panel);
    h.run();
    h
}

/// Lets the panel's thread finish and the panel draw what it sent.
fn settle(h: &mut Harness<'static, RegistryPanel>) {
    h.state_mut().wait_idle();
    h.run();
}

fn production(dir: &Path) -> Option<u32> {
    let model = RegisteredModel::existing(dir, fixture::MODEL).expect("model");
    listing(&model)
        .expect("listing")
        .aliases
        .get("production")
        .copied()
}

#[test]
fn an_empty_registry_says_how_to_fill_it_and_register_waits_for_an_evaluated_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::project(dir.path()).expect("project");
    let h = harness(dir.path());
    assert!(h.query_by_label("No registered model yet").is_some());
    assert!(h.get_by_label("Register…").accesskit_node().is_disabled());
    assert!(h.get_by_label("Promote…").accesskit_node().is_disabled());
}

#[test]
fn versions_show_their_metric_gates_aliases_detail_and_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::demo_registry(dir.path()).expect("registry");
    let h = harness(dir.path());
    let panel = h.state();
    assert_eq!(panel.state.selected, Some(3), "the newest is selected");
    assert_eq!(
        panel.state.compare,
        [Some(2), Some(3)],
        "production against the newest"
    );
    for shown in [
        "v1",
        "v2",
        "v3",
        "Versions of discharge-lora",
        "Version 3",
        "Alias history",
    ] {
        assert!(h.query_all_by_label(shown).count() > 0, "{shown} not shown");
    }
    assert!(
        h.query_all_by_label(" production ").count() > 0,
        " production "
    );
    assert!(h.query_all_by_label(" staging ").count() > 0, " staging ");
    assert!(h.query_all_by_label(" rouge1 pass ").count() >= 2);
    assert!(
        h.query_all_by_label(" hallucinated meds fail ").count() > 0,
        " hallucinated meds fail "
    );
    // Version 3's learning rate against version 2's.
    assert!(h.query_all_by_label("lr").count() > 0, "lr");
    assert!(h.query_all_by_label("0.001").count() > 0, "0.001");
    // The timeline, newest first: the rollback and the moves around it.
    assert!(h.query_all_by_label("v1 to v2").count() > 0, "v1 to v2");
    assert!(h.query_all_by_label("v2 to v1").count() > 0, "v2 to v1");
    assert!(h.query_all_by_label(" rollback ").count() > 0, " rollback ");
    assert!(
        h.query_all_by_label("reading grade complaints").count() > 0,
        "reading grade complaints"
    );
}

#[test]
fn a_promotion_refused_by_a_gate_names_it_and_production_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::demo_registry(dir.path()).expect("registry");
    let mut h = harness(dir.path());
    // The table's row (drawn first; the comparison and the diff name versions too).
    h.get_all_by_label("v3").next().expect("a v3 row").click();
    h.run();
    h.get_by_label("Promote…").click();
    h.run();
    assert!(
        h.query_by_label_contains("Checks the gates: rouge1 >= 0.3")
            .is_some(),
        "the confirmation names the gates"
    );
    assert!(
        h.query_by_label_contains(
            "And the degradation check: rouge1 of version 3 against version 2"
        )
        .is_some()
    );
    h.get_by_label("Confirm: promote").click();
    h.step();
    settle(&mut h);
    assert!(
        h.query_by_label_contains("Refused: production stays at version 2")
            .is_some()
    );
    let gate = h
        .get_by_label_contains("gate meds.hallucinated_per_example")
        .value()
        .unwrap_or_default();
    assert!(gate.contains("<= 0.1: fail"), "{gate}");
    assert_eq!(production(dir.path()), Some(2));
    // Forcing it needs a reason.
    h.get_by_label("force").click();
    h.run();
    assert!(
        h.get_by_label("Confirm: promote")
            .accesskit_node()
            .is_disabled()
    );
    assert!(
        h.query_by_label_contains("forcing needs a reason")
            .is_some()
    );
}

#[test]
fn rollback_moves_production_back_and_register_adds_the_next_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = fixture::demo_registry(dir.path()).expect("registry");
    let mut h = harness(dir.path());
    h.get_by_label("Roll back…").click();
    h.run();
    assert!(
        h.query_by_label_contains("Moves production back from version 2 to version 1")
            .is_some()
    );
    assert!(
        h.get_by_label("Confirm: roll back")
            .accesskit_node()
            .is_disabled(),
        "no reason yet"
    );
    h.state_mut().form = Some(Form::Rollback {
        alias: "production".into(),
        reason: "a complaint".into(),
    });
    h.run();
    h.get_by_label("Confirm: roll back").click();
    h.step();
    settle(&mut h);
    assert_eq!(production(dir.path()), Some(1));
    assert!(
        h.query_by_label("production rolled back: version 2 to version 1.")
            .is_some()
    );

    fixture::run(&project, "20261207-080000", &["Rest at home."], (5e-4, 4)).expect("run");
    h.state_mut().refresh();
    settle(&mut h);
    h.get_by_label("Register…").click();
    h.run();
    h.get_by_label("Confirm: register").click();
    h.step();
    settle(&mut h);
    assert!(
        h.query_by_label_contains("as version 4 of discharge-lora")
            .is_some()
    );
    assert_eq!(h.state().state.selected, Some(4));
    assert!(h.query_by_label("Version 4").is_some());
}

#[test]
fn a_failed_action_shows_its_error_in_the_panel() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::demo_registry(dir.path()).expect("registry");
    let mut h = harness(dir.path());
    h.state_mut().perform(Action::Promote {
        name: fixture::MODEL.into(),
        version: 9,
        alias: "production".into(),
        reason: String::new(),
        force: false,
    });
    settle(&mut h);
    let shown = h
        .get_by_label_contains("Failed:")
        .value()
        .unwrap_or_default();
    assert!(shown.contains("has no version 9"), "{shown}");
}

#[test]
fn the_config_diff_lists_only_the_settings_that_differ() {
    let a = serde_json::json!({"lr": 0.001, "lora": {"r": 8, "alpha": 16}, "seed": 1});
    let b = serde_json::json!({"lr": 0.002, "lora": {"r": 8, "alpha": 32}, "seed": 1});
    let diff = detail::config_diff(&a, &b);
    assert_eq!(
        diff,
        [
            ("lora.alpha".to_string(), "16".to_string(), "32".to_string()),
            ("lr".to_string(), "0.001".to_string(), "0.002".to_string()),
        ]
    );
}

/// The panel with the fixture registry, the refusal shown and the promote form open, in the
/// centre of a window at the default size and at 1024 × 768: no text over other text, none cut,
/// no missing glyph.
#[test]
fn the_panel_is_legible_in_the_default_window_and_at_1024_by_768() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::demo_registry(dir.path()).expect("registry");
    // The centre pane beside the sidebar, below the top bar and above the status line.
    for size in [[1130.0, 800.0], [760.0, 690.0]] {
        let mut panel = RegistryPanel::new(RegistryUiState::default());
        panel.set_project(dir.path());
        panel.wait_idle();
        let mut h = Harness::builder()
            .with_size(egui::vec2(size[0], size[1]))
            .build_ui_state(|ui, panel: &mut RegistryPanel| draw_alone(ui, panel), panel);
        h.run();
        h.state_mut().form = Some(Form::promote(3));
        h.state_mut().perform(Action::Promote {
            name: fixture::MODEL.into(),
            version: 3,
            alias: "production".into(),
            reason: String::new(),
            force: false,
        });
        settle(&mut h);
        h.run_steps(4);
        let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(size[0], size[1]));
        let shapes = h.output().shapes.clone();
        let ctx = h.ctx.clone();
        let found = ctx.fonts_mut(|fonts| {
            crate::app::legibility::problems(&shapes, screen, |font, c| fonts.has_glyph(font, c))
        });
        assert!(
            found.is_empty(),
            "at {size:?}: {} problems, first: {:#?}",
            found.len(),
            &found[..found.len().min(12)]
        );
    }
}

/// `Ctrl+6` shows the Registry panel, over the registry of the project the window opened.
#[test]
fn ctrl_6_opens_the_registry_panel_of_the_open_project() {
    use crate::app::{AppState, LabLensApp, PanelKind};
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::demo_registry(dir.path()).expect("registry");
    let (project, models) = (dir.path().to_path_buf(), dir.path().join("models"));
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            LabLensApp::new(&cc.egui_ctx, AppState::default(), Some(project), models)
        });
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num6);
    for _ in 0..500 {
        h.step();
        let app = h.state();
        if app.state.panel == PanelKind::Registry && app.registry.current().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    h.run_steps(4);
    assert_eq!(h.state().state.panel, PanelKind::Registry);
    assert!(h.query_by_label("Versions of discharge-lora").is_some());
}
