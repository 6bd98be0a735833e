use super::*;
use crate::test_support::{draw_alone, submitted_jobs};

/// The slice the panel asked Compare to show.
fn compare_slice(panel: &mut BiasPanel) -> Option<(String, RowFilters)> {
    panel.take_requests().into_iter().find_map(|r| match r {
        Request::CompareSlice { source, key } => Some((source, filters_of(&key))),
        _ => None,
    })
}

/// The audit the panel asked the engine to run.
fn bias_job(panel: &mut BiasPanel) -> Option<BiasRequest> {
    submitted_jobs(panel).into_iter().find_map(|c| match c {
        Command::Bias(request) => Some(*request),
        _ => None,
    })
}
use crate::project::predictions::tests::sample_project;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const RUN: &str = "20260101-000000";

/// The panel over the sample project of 80 records: the run is perfect on even records (F) and
/// worse on odd ones (M), so gender M is the group to flag; the base has no group effect.
fn harness(dir: &std::path::Path, state: BiasUiState) -> Harness<'static, BiasPanel> {
    let project = sample_project(dir, 80);
    let mut panel = BiasPanel::new(state);
    panel.set_project(&project);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, panel: &mut BiasPanel| draw_alone(ui, panel), panel);
    wait_for_audits(&mut h);
    h
}

fn wait_for_audits(h: &mut Harness<'static, BiasPanel>) {
    for _ in 0..1000 {
        h.step();
        if h.state().audits().is_some() && !h.state().is_computing() {
            h.run();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the audit did not finish");
}

fn flagged_cells(grid: &Grid) -> Vec<String> {
    grid.cells
        .iter()
        .flatten()
        .flatten()
        .filter(|c| c.slice.flagged)
        .map(|c| format!("{} {}", c.slice.dims.label(), c.metric))
        .collect()
}

#[test]
fn the_worse_group_is_outlined_small_cells_greyed_and_a_click_opens_compare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = BiasUiState {
        rows: Demographic::Gender,
        ..BiasUiState::default()
    };
    let mut h = harness(dir.path(), state);
    assert_eq!(
        h.state().state.source.as_deref(),
        Some(RUN),
        "the newest set"
    );
    let grid = h.state().grid().expect("grid");
    assert_eq!(grid.rows, ["F", "M"]);
    assert_eq!(
        grid.columns,
        [
            "ROUGE-L F1",
            "ROUGE-1 F1",
            "BLEU",
            "reading grade",
            "hallucinated meds"
        ]
    );
    // M does worse on every metric the run is worse on; the reading grade rises with the
    // record number whatever the gender, so it is not a gap of M's.
    let flagged = flagged_cells(&grid);
    assert!(
        flagged.contains(&"M rougeL.fmeasure".to_string()),
        "{flagged:?}"
    );
    assert!(
        flagged.contains(&"M meds.hallucinated".to_string()),
        "{flagged:?}"
    );
    assert!(flagged.iter().all(|f| f.starts_with("M ")), "{flagged:?}");
    assert!(
        h.query_by_label_contains("Flagged: gender M (n = 40)")
            .is_some()
    );
    assert!(h.query_by_label_contains("check the references").is_some());

    h.get_by_label("M × ROUGE-L F1").click();
    h.run();
    let (source, filters) = compare_slice(h.state_mut()).expect("requested");
    assert_eq!(source, RUN);
    assert_eq!(filters.gender.as_deref(), Some("M"));
    assert_eq!((filters.age_group, filters.ethnicity), (None, None));

    // Gender × age group: 8 records a cell, under the minimum size: greyed, never flagged.
    h.state_mut().state.columns = Columns::Dimension(Demographic::AgeGroup);
    h.run();
    let grid = h.state().grid().expect("grid");
    assert_eq!(
        grid.columns,
        ["all", "<18", "18-35", "35-50", "50-65", "65+"]
    );
    let m_old = grid.cells[1][5].as_ref().expect("M × 65+");
    assert!(m_old.slice.small && !m_old.slice.flagged && m_old.slice.n == 8);
    assert_eq!(
        flagged_cells(&grid),
        ["M rougeL.fmeasure"],
        "only the whole group"
    );
    h.get_by_label("M × 65+").click();
    h.run();
    let (_, filters) = compare_slice(h.state_mut()).expect("requested");
    assert_eq!(filters.age_group, Some(AgeGroup::Over65));
    assert_eq!(filters.gender.as_deref(), Some("M"));
}

#[test]
fn the_base_model_has_no_flag_and_a_higher_threshold_clears_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = BiasUiState {
        source: Some(BASE.into()),
        rows: Demographic::Gender,
        ..BiasUiState::default()
    };
    let mut h = harness(dir.path(), state);
    let grid = h.state().grid().expect("grid");
    assert!(
        flagged_cells(&grid).is_empty(),
        "{:?}",
        flagged_cells(&grid)
    );
    assert!(h.query_by_label_contains("No group is flagged").is_some());

    h.state_mut().state.source = Some(RUN.into());
    h.state_mut().state.threshold = 0.5;
    wait_for_audits(&mut h);
    let grid = h.state().grid().expect("grid");
    let rouge: Vec<String> = flagged_cells(&grid)
        .into_iter()
        .filter(|c| c.contains("rougeL"))
        .collect();
    assert!(rouge.is_empty(), "M's ROUGE-L gap is under 50%: {rouge:?}");
}

#[test]
fn write_and_counterfactual_buttons_ask_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(dir.path(), BiasUiState::default());
    h.get_by_label("Write bias.json").click();
    h.run();
    let job = bias_job(h.state_mut()).expect("job");
    assert_eq!(job.target, Target::Run(RUN.into()));
    assert!(job.counterfactual.is_none());
    h.get_by_label("Run counterfactual test").click();
    h.run();
    let job = bias_job(h.state_mut()).expect("job");
    assert_eq!(job.counterfactual.map(|c| c.limit), Some(30));
}

#[test]
fn a_project_without_predictions_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut panel = BiasPanel::new(BiasUiState::default());
    panel.set_project(dir.path());
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_ui_state(|ui, panel: &mut BiasPanel| draw_alone(ui, panel), panel);
    h.run();
    assert!(h.query_by_label("No predictions to audit yet").is_some());
}

/// Steps the window until `done`, at most 10 s.
fn wait_until(
    h: &mut Harness<'_, crate::app::LabLensApp>,
    done: impl Fn(&crate::app::LabLensApp) -> bool,
) {
    for _ in 0..1000 {
        h.step();
        if done(h.state()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not reached within 10 s");
}

#[test]
fn ctrl_4_shows_bias_and_a_cell_opens_compare_on_its_slice() {
    use crate::app::{AppState, LabLensApp, PanelKind, default_models_dir};
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 80);
    let state = AppState {
        bias: BiasUiState {
            rows: Demographic::Gender,
            ..BiasUiState::default()
        },
        ..AppState::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 950.0))
        .build_eframe(move |cc| {
            LabLensApp::new(&cc.egui_ctx, state, Some(project), default_models_dir())
        });
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num4);
    h.step();
    assert_eq!(h.state().state.panel, PanelKind::Bias);
    wait_until(&mut h, |app| {
        app.bias.grid().is_some() && !app.bias.is_computing()
    });
    h.step();
    h.get_by_label("M × ROUGE-L F1").click();
    h.step();
    h.step();
    let app = h.state();
    assert_eq!(app.state.panel, PanelKind::Compare);
    assert_eq!(app.compare.state.a.as_deref(), Some(RUN));
    assert_eq!(app.compare.state.filters.gender.as_deref(), Some("M"));
    wait_until(&mut h, |app| {
        app.compare.compared.is_some() && app.compare.rows.len() == 40
    });
}
